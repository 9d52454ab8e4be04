"""Live changes through user_config: batch size, model hot swap, A/B split, auth."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import deploy

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def swap_models(test_models, tmp_path_factory) -> Path:
    """The test models with a real second hybrid: v2 is v1 with its score head negated,
    written by save_artifact (its own weights, ONNX, manifest and sha256s). It ranks nodes
    in reverse, so wherever v1 picks its best node v2 picks v1's worst: a decision shows
    which version made it."""
    import torch

    from edge_allocator.runtime.artifacts import load_artifact
    from edge_allocator.runtime.export import save_artifact
    from edge_allocator.runtime.torch_backend import load_module

    root = tmp_path_factory.mktemp("swap-models")
    for name in ("hybrid", "dqn", "ppo"):
        shutil.copytree(test_models / name / "1", root / name / "1")
    v1 = load_artifact(root, "hybrid", "1")
    module = load_module(v1)
    with torch.no_grad():
        for p in module.score_head[-1].parameters():
            p.neg_()
    path = save_artifact(module, "hybrid", v1.manifest["architecture"], root,
                         training={"note": "test artifact: hybrid v1 with the score head negated"})
    assert path.name == "2" and load_artifact(root, "hybrid", "2").manifest["files"] != \
        v1.manifest["files"]
    return root


@pytest.fixture(scope="module")
def reference(swap_models):
    """version -> the node each hybrid version picks for a list of states, decided in this
    process (the same ONNX artifact, no Ray)."""
    from edge_allocator.config import ModelSpec, ServiceConfig
    from edge_allocator.service.inline import AllocatorService

    services = {v: AllocatorService(ServiceConfig(
        models_dir=swap_models, database_url=None, cache="none",
        models={"hybrid": ModelSpec(version=v)})) for v in ("1", "2")}

    def nodes(version: str, states: list[dict]) -> list[str]:
        return [d.node_id for d in services[version].allocate_many({"states": states})]

    yield nodes
    for s in services.values():
        s.close()


@pytest.fixture(scope="module")
def swap_app(ray_cluster, swap_models, tmp_path_factory):
    db = tmp_path_factory.mktemp("db-swap") / "decisions.db"
    pinned = {"models": {"hybrid": {"version": "1"}, "dqn": {}, "ppo": {}}}

    def redeploy(ingress=None, inference=None):
        ing = {"cache": "none", **pinned, **(ingress or {})}  # every answer from a model
        inf = {**pinned, **(inference or {})}
        deploy("swap", "/swap", swap_models, db, ingress=ing, inference=inf)

    redeploy()
    return f"http://127.0.0.1:{ray_cluster['port']}/swap", redeploy, db


def _logged(db: Path, ids: list[str], timeout_s: float = 30) -> dict[str, tuple[str, str]]:
    """decision_id -> (model_version, node_id) from the decision log (written off the
    request path: waits until every id is there)."""
    deadline, rows = time.time() + timeout_s, {}
    while time.time() < deadline:
        with sqlite3.connect(db) as conn:
            rows = {r[0]: (r[1], r[2]) for r in conn.execute(
                f"SELECT decision_id, model_version, node_id FROM predictions "
                f"WHERE decision_id IN ({','.join('?' * len(ids))})", ids)}
        if len(rows) == len(ids):
            break
        time.sleep(0.3)
    return rows


def _state(i: int) -> dict:
    nodes = [{"cpu_util": (i % 7) / 10, "mem_util": 0.2, "energy": 5, "latency": 3 + k,
              "bandwidth": 100, "queue_len": k % 3, "node_type": k % 3} for k in range(8)]
    return {"nodes": nodes, "task": {"compute_gcycles": 1 + i / 1000}}  # unique: no cache hits


_burst_no = iter(range(10**6))


def _concurrent_batch_sizes(url: str, n: int = 64) -> list[int]:
    base = 10_000 + 1000 * next(_burst_no)  # fresh states each burst: no cache hits

    async def fire():
        async with httpx.AsyncClient(timeout=30) as c:
            rs = await asyncio.gather(*[c.post(f"{url}/v1/allocate", json=_state(base + i))
                                        for i in range(n)])
            failed = [r.text for r in rs if r.status_code != 200]
            assert not failed, failed
            return [r.json()["batch_size"] for r in rs]
    return asyncio.run(fire())


def test_reconfigure_changes_batch_size_live(swap_app):
    url, redeploy, _ = swap_app
    redeploy(inference={"max_batch_size": 4, "batch_wait_timeout_s": 0.02})
    assert httpx.get(f"{url}/v1/batch-config").json()["max_batch_size"] == 4
    small = _concurrent_batch_sizes(url, 96)
    assert max(small) <= 4, small
    redeploy(inference={"max_batch_size": 64, "batch_wait_timeout_s": 0.02})
    assert httpx.get(f"{url}/v1/batch-config").json()["max_batch_size"] == 64
    # batches larger than the old cap form (a busy machine may need a second burst)
    big = [_concurrent_batch_sizes(url, 96) for _ in range(3)]
    assert max(max(b) for b in big) > 4, big


def test_hot_swap_fails_no_request(swap_app, reference):
    """v1 -> v2 under load: no failed request, and every decision is the one the version
    it names makes (v2 is a different model), as the decision log also records."""
    url, redeploy, db = swap_app
    answers: list[tuple[int, int, dict]] = []  # (state index, status, body)
    stop = threading.Event()

    def load():
        with httpx.Client(timeout=30) as c:
            i = 0
            while not stop.is_set():
                try:
                    r = c.post(f"{url}/v1/allocate", json=_state(i))
                    answers.append((i, r.status_code, r.json() if r.status_code == 200 else {}))
                except httpx.HTTPError as exc:  # no HTTP answer: a failed request (status 0)
                    answers.append((i, 0, {"error": f"{type(exc).__name__}: {exc}"}))
                i += 1

    def last_version() -> str | None:
        return answers[-1][2].get("model", {}).get("version") if answers else None

    t = threading.Thread(target=load)
    t.start()
    try:
        redeploy(ingress={"models": {"hybrid": {"version": "2"}, "dqn": {}, "ppo": {}}},
                 inference={"models": {"hybrid": {"version": "2"}, "dqn": {}, "ppo": {}}})
        deadline = time.time() + 30
        while last_version() != "2" and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # a few answers from v2
    finally:
        stop.set()
        t.join()
    assert answers and {s for _, s, _ in answers} == {200}, \
        [(s, b.get("error")) for _, s, b in answers if s != 200][:5]
    versions = [b["model"]["version"] for _, _, b in answers]
    assert versions[0] == "1" and versions[-1] == "2"
    states = [_state(i) for i, _, _ in answers]
    expected = {v: reference(v, states) for v in ("1", "2")}
    assert all(a != b for a, b in zip(expected["1"], expected["2"], strict=True))
    wrong = [(i, b["model"]["version"], b["node_id"]) for k, (i, _, b) in enumerate(answers)
             if b["node_id"] != expected[b["model"]["version"]][k]]
    assert not wrong, f"decisions not made by the version they name: {wrong[:5]}"
    logged = _logged(db, [b["decision_id"] for _, _, b in answers])
    assert logged == {b["decision_id"]: (b["model"]["version"], b["node_id"])
                      for _, _, b in answers}


def test_ab_split_records_the_version(swap_app, reference):
    url, redeploy, db = swap_app
    split = {"models": {"hybrid": {"ab": {"1": 1.0, "2": 1.0}}, "dqn": {}, "ppo": {}}}
    redeploy(ingress=split, inference=split)
    states = [_state(20_000 + i) for i in range(40)]
    with httpx.Client(timeout=30) as c:
        answers = [c.post(f"{url}/v1/allocate", json=s).json() for s in states]
    seen = [a["model"]["version"] for a in answers]
    assert set(seen) == {"1", "2"}
    expected = {v: reference(v, states) for v in ("1", "2")}
    assert [a["node_id"] for a in answers] == [expected[v][k] for k, v in enumerate(seen)]
    assert [a["node_id"] for a in answers] != expected["1"]  # v2 really answered some
    logged = _logged(db, [a["decision_id"] for a in answers])
    assert logged == {a["decision_id"]: (a["model"]["version"], a["node_id"]) for a in answers}


def test_bearer_token_auth(swap_app, tmp_path):
    url, redeploy, _ = swap_app
    secret = tmp_path / "tokens"
    secret.write_text("s3cret-token\n")
    redeploy(ingress={"auth_token_file": str(secret)})
    try:
        r = httpx.post(f"{url}/v1/allocate", json=_state(1))
        assert r.status_code == 401 and "s3cret" not in r.text
        bad = httpx.post(f"{url}/v1/allocate", json=_state(1),
                         headers={"authorization": "Bearer wrong"})
        assert bad.status_code == 401
        ok = httpx.post(f"{url}/v1/allocate", json=_state(1),
                        headers={"authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200
    finally:
        redeploy()


def test_quota_429_and_token_rotation_without_failed_requests(swap_app, tmp_path):
    """Per-token quota over HTTP (429 + Retry-After), then tokens rotated by redeploying
    user_config (reconfigure in place) while a client sends requests: old and new token
    both valid during the overlap, the client switches, the old token is retired; not
    one request fails."""
    url, redeploy, _ = swap_app
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-old\n")
    redeploy(ingress={"auth_token_file": str(tokens),
                      "quota": {"rate_per_s": 0.5, "burst": 3}})
    try:
        old = {"authorization": "Bearer tok-old"}
        codes = [httpx.get(f"{url}/healthz", headers=old).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429], codes
        over = httpx.get(f"{url}/healthz", headers=old)
        # whole seconds until the next token (one per 2 s): 2, or 1 once more than a
        # second has passed since the burst ran out (a loaded machine, once)
        assert over.status_code == 429 and over.headers["retry-after"] in ("1", "2"), \
            over.headers.get("retry-after")

        redeploy(ingress={"auth_token_file": str(tokens), "quota": {"rate_per_s": 1000}})
        replica = httpx.get(f"{url}/v1/stats", headers=old).json()["replica"]
        use = {"token": "tok-old"}
        seen: list[tuple[str, int]] = []
        errors: list[str] = []  # each request with no HTTP answer: what httpx raised
        stop = threading.Event()

        def client() -> None:
            # A request with no HTTP answer (reset, refused, timed out) is a failed request
            # too: counted as status 0, never an exception that would end this thread
            # unseen and leave the check below looking only at what came before.
            with httpx.Client(timeout=30) as c:
                while not stop.is_set():
                    token = use["token"]
                    try:
                        r = c.post(f"{url}/v1/allocate", json=_state(len(seen) % 7),
                                   headers={"authorization": f"Bearer {token}"})
                        seen.append((token, r.status_code))
                    except httpx.HTTPError as exc:
                        seen.append((token, 0))
                        errors.append(f"#{len(seen)} {type(exc).__name__}: {exc}")

        t = threading.Thread(target=client)
        t.start()
        try:
            time.sleep(1.0)
            # each step a new file: a redeploy whose user_config is unchanged is no change
            # to Serve (no reconfigure), whatever the file it names now holds
            both = tmp_path / "tokens-2"
            both.write_text("tok-old\ntok-new\n")
            redeploy(ingress={"auth_token_file": str(both), "quota": {"rate_per_s": 1000}})
            use["token"] = "tok-new"
            time.sleep(1.0)
            only_new = tmp_path / "tokens-3"
            only_new.write_text("tok-new\n")
            redeploy(ingress={"auth_token_file": str(only_new), "quota": {"rate_per_s": 1000}})
            time.sleep(1.0)
        finally:
            stop.set()
            t.join(timeout=60)
        assert not t.is_alive(), "the client thread did not stop"
        failed = [(tok, code) for tok, code in seen if code != 200]
        assert not failed, (f"{len(failed)} of {len(seen)} failed: {failed[:5]}; "
                            f"no HTTP answer: {errors[:5]}")
        # both tokens really sent, and requests right up to the end (the client ran
        # through both deploys rather than stopping early)
        assert {tok for tok, _ in seen} == {"tok-old", "tok-new"} and len(seen) > 20
        # reconfigured in place: the same ingress replica answers (a replaced one drains
        # behind HAProxy while the client's connection moves over)
        new = {"authorization": "Bearer tok-new"}
        assert httpx.get(f"{url}/v1/stats", headers=new).json()["replica"] == replica, \
            "a user_config redeploy replaced the ingress replica instead of reconfiguring it"
        assert sum(tok == "tok-new" for tok, _ in seen) > 10
        assert httpx.get(f"{url}/healthz", headers=old).status_code == 401
        assert httpx.get(f"{url}/healthz", headers=new).status_code == 200
    finally:
        redeploy()


def _metric_values(text: str, name: str, **tags: str) -> list[float]:
    """Values of the series of ``name`` whose labels include ``tags``."""
    out = []
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in tags.items()):
            out.append(float(line.rsplit(" ", 1)[1]))
    return out


def test_shadow_scores_off_the_response_path(swap_app, swap_models, reference, ray_cluster):
    """hybrid v3 (a copy of v2: v1's ranking reversed) shadows pinned v1. The answers are
    the same with and without it; every live decision, single or in a batch, gets a
    shadow row in the log with its id and v3's choice (v2's, decided in process); and no
    live figure counts them: /v1/stats traffic and Prometheus' decision counter know no
    v3, while the shadow counter has every one."""
    url, redeploy, db = swap_app
    if not (swap_models / "hybrid" / "3").exists():  # a version no other test serves
        shutil.copytree(swap_models / "hybrid" / "2", swap_models / "hybrid" / "3")
    singles = [_state(30_000 + i) for i in range(12)]
    batch = [_state(31_000 + i) for i in range(16)]

    def ask(c: httpx.Client) -> list[dict]:
        ones = [c.post(f"{url}/v1/allocate", json=s) for s in singles]
        many = c.post(f"{url}/v1/allocate/batch", json={"states": batch})
        assert all(r.status_code == 200 for r in [*ones, many])
        return [r.json() for r in ones] + many.json()["decisions"]

    def answer(d: dict) -> dict:  # less what differs by request
        return {k: v for k, v in d.items()
                if k not in ("decision_id", "latency_ms", "batch_size")}

    shadow = {"shadow": {"hybrid": {"version": "3"}}}
    try:
        redeploy()
        with httpx.Client(timeout=30) as c:
            without = ask(c)
            redeploy(ingress=shadow, inference=shadow)
            before = c.get(f"{url}/v1/stats").json()
            live = ask(c)
            after = c.get(f"{url}/v1/stats").json()
        assert [answer(d) for d in live] == [answer(d) for d in without]
        assert {d["model"]["version"] for d in live} == {"1"}

        ids = [d["decision_id"] for d in live]
        expected = reference("2", singles + batch)  # v3 is v2
        deadline, rows = time.time() + 30, {}
        while time.time() < deadline and len(rows) < len(ids):
            with sqlite3.connect(db) as conn:
                rows = {r[0]: (r[1], r[2]) for r in conn.execute(
                    f"SELECT shadow_of, model_version, node_id FROM predictions "
                    f"WHERE shadow_of IN ({','.join('?' * len(ids))})", ids)}
            time.sleep(0.3)
        assert rows == {i: ("3", n) for i, n in zip(ids, expected, strict=True)}
        assert all(a != d["node_id"] for a, d in zip(expected, live))  # v3 disagrees

        assert after["decisions_total"] - before["decisions_total"] == len(live)
        assert not [t for t in after["traffic"] if t["version"] == "3"], after["traffic"]
        deadline, text = time.time() + 60, ""
        while time.time() < deadline:
            text = httpx.get(f"http://127.0.0.1:{ray_cluster['metrics_port']}/metrics",
                             timeout=5).text
            if sum(_metric_values(text, "ray_edge_allocator_shadow_decisions_total",
                                  version="3")) >= len(live):
                break
            time.sleep(1)
        assert sum(_metric_values(text, "ray_edge_allocator_shadow_decisions_total",
                                  version="3", outcome="disagree")) == len(live)
        assert _metric_values(text, "ray_edge_allocator_decisions_total", version="3") == []
    finally:
        redeploy()
