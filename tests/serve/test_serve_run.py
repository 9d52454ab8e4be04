"""The README's run command itself: `serve run serve_config.yaml` starts, answers the
README's curl examples, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import re
import subprocess

import httpx
import pytest

from edge_allocator.constants import PROJECT_ROOT
from edge_allocator.runtime.raylocal import alive
from edge_allocator.runtime.serverun import ServeRun

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


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
