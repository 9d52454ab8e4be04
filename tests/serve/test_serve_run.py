"""The README's run command itself: `serve run serve_config.yaml` starts, answers the
README's curl examples, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import re
import subprocess
import time

import httpx
import pytest

from edge_allocator.constants import PROJECT_ROOT
from edge_allocator.runtime.raylocal import alive
from edge_allocator.runtime.serverun import ServeRun

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.exclusive]


def readme_curls() -> list[str]:
    text = (PROJECT_ROOT / "README.md").read_text()
    block = re.search(r"<!-- curl-examples -->\n```bash\n(.*?)```", text, re.S)
    assert block, "README has no curl-examples block"
    return [c.strip() for c in block.group(1).split("\n\n") if c.strip().startswith("curl")]


def test_serve_run_starts_answers_and_stops():
    run = ServeRun()
    try:
        run.start()
        procs = run.tree()
        for cmd in readme_curls():
            cmd = cmd.replace("127.0.0.1:8000", f"127.0.0.1:{run.port}")
            out = subprocess.run(["bash", "-c", cmd + " -sS --fail-with-body"], capture_output=True,
                                 text=True, timeout=60, cwd=PROJECT_ROOT)
            assert out.returncode == 0, (cmd, out.stdout, out.stderr)
        assert httpx.get(f"{run.url}/healthz").json() == {"status": "ok"}
    finally:
        run.stop()
    assert procs and not [p for p in procs if alive(p)]  # everything it started is gone


def test_make_run_hands_over_and_stops_gracefully(tmp_path):
    """Once ready, ``make run``'s process is the small supervisor (same PID), the
    service answers, and Ctrl-C shuts Serve down gracefully: the decision just made is
    in the log (flushed by the replica's close, not lost with its process)."""
    import psutil
    import sqlalchemy as sa
    import yaml

    raw = yaml.safe_load((PROJECT_ROOT / "serve_config.yaml").read_text())
    db = tmp_path / "log.db"
    for d in raw["applications"][0]["deployments"]:
        if d["name"] == "Ingress":
            d["user_config"]["database_url"] = f"sqlite:///{db}"
    cfg = tmp_path / "serve_config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    run = ServeRun(cfg, command="launch")
    try:
        run.start()
        supervisor = ["-S", str(PROJECT_ROOT / "deployments" / "supervise.py")]
        deadline = time.monotonic() + 30  # /readyz can answer before launch sees RUNNING
        while (cmdline := psutil.Process(run.proc.pid).cmdline())[1:3] != supervisor \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert cmdline[1:3] == supervisor, cmdline
        body = {"nodes": [{"cpu_util": 0.2, "mem_util": 0.3, "energy": 1.0, "latency": 5.0,
                           "bandwidth": 50.0, "queue_len": 0, "node_type": 1}] * 3}
        r = httpx.post(f"{run.url}/v1/allocate", json=body, timeout=30)
        assert r.status_code == 200, r.text
        decision_id = r.json()["decision_id"]
        procs = run.tree()
    finally:
        run.stop()
    assert procs and not [p for p in procs if alive(p)]
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT count(*) FROM predictions WHERE decision_id = :d"),
                             {"d": decision_id}).scalar_one()
    engine.dispose()
    assert found == 1
