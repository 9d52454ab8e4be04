"""Failure behaviour against a real cluster: overload, lost replicas, Redis and
PostgreSQL going away, a tampered model."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time

import httpx
import orjson
import pytest

from benchmarks.faults import RedisServer, TcpProxy
from tests.conftest import missing
from tests.serve.conftest import deploy

pytestmark = pytest.mark.cluster


def _state(i: int, n: int = 8) -> dict:
    return {"nodes": [{"cpu_util": (i % 9) / 10, "mem_util": 0.2, "energy": 5, "latency": 3 + k,
                       "bandwidth": 100, "queue_len": k % 3, "node_type": k % 3}
                      for k in range(n)],
            "task": {"compute_gcycles": 1 + (i % 997) / 100}}


async def _burst(url: str, n: int, start: int = 0) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as c:
        return await asyncio.gather(*[c.post(f"{url}/v1/allocate", json=_state(start + i))
                                      for i in range(n)])


def test_overload_is_503_with_retry_after(ray_cluster, test_models, tmp_path):
    port = ray_cluster["port"]
    from ray import serve

    from deployments.app import build_app
    from tests.serve.conftest import app_options

    args, options = app_options(test_models, tmp_path / "d.db",
                                ingress={"cache": "none", "database_url": None},
                                inference={"batch_wait_timeout_s": 0.05, "max_batch_size": 2})
    options["Ingress"].update(max_ongoing_requests=2, max_queued_requests=2)
    options["PolicyInference"].update(max_ongoing_requests=2, max_queued_requests=2)
    serve.run(build_app(args, options), name="tiny", route_prefix="/tiny")
    while serve.status().applications["tiny"].status != "RUNNING":
        time.sleep(0.5)
    url = f"http://127.0.0.1:{port}/tiny"
    rs = asyncio.run(_burst(url, 120))
    codes = [r.status_code for r in rs]
    assert set(codes) <= {200, 503}, set(codes)
    assert codes.count(503) > 0 and codes.count(200) > 0
    assert all(r.headers.get("retry-after") for r in rs if r.status_code == 503)
    assert httpx.get(f"{url}/healthz").status_code == 200
    serve.delete("tiny")


def test_killed_inference_replica_recovers(ray_cluster, test_models, tmp_path):
    import ray

    port = ray_cluster["port"]
    deploy("killme", "/killme", test_models, tmp_path / "k.db", mode="hop",
           ingress={"cache": "none", "database_url": None})
    url = f"http://127.0.0.1:{port}/killme"
    codes: list[int] = []
    stop = threading.Event()

    def load() -> None:
        i = 0
        with httpx.Client(timeout=60) as c:
            while not stop.is_set():
                codes.append(c.post(f"{url}/v1/allocate", json=_state(i)).status_code)
                i += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    actors = [a for a in ray.util.list_named_actors(all_namespaces=True)
              if "killme" in a["name"] and "PolicyInference" in a["name"]]
    assert actors, "no PolicyInference replica found"
    ray.kill(ray.get_actor(actors[0]["name"], namespace=actors[0]["namespace"]), no_restart=True)
    killed_at = len(codes)
    deadline = time.time() + 90
    while time.time() < deadline and (len(codes) < killed_at + 50 or codes[-1] != 200):
        time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert set(codes) <= {200, 503}, set(codes)  # in-flight losses are 503, never 500
    assert codes[-20:] == [200] * 20  # recovered by itself
    from ray import serve

    serve.delete("killme")


def test_a_call_lost_with_its_inference_replica_is_sent_to_another(ray_cluster, test_models,
                                                                    tmp_path):
    """Two PolicyInference replicas, one SIGKILLed (a crash) under load: the calls that
    were on it are sent again to the other (scoring has no side effects), so no client
    sees the loss, not even the requests in flight at the kill."""
    from ray import serve

    from benchmarks.faults import kill_replica

    port = ray_cluster["port"]
    deploy("killtwo", "/killtwo", test_models, tmp_path / "k.db", mode="hop", replicas=2,
           ingress={"cache": "none", "database_url": None})
    url = f"http://127.0.0.1:{port}/killtwo"
    codes: list[tuple[int, str]] = []
    stop = threading.Event()

    def load(worker: int) -> None:
        i = worker * 100_000
        with httpx.Client(timeout=60) as c:
            while not stop.is_set():
                r = c.post(f"{url}/v1/allocate", json=_state(i))
                codes.append((r.status_code, r.text[:200] if r.status_code != 200 else ""))
                i += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        kill_replica("killtwo", "PolicyInference")
        killed_at = len(codes)
        time.sleep(3.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
        serve.delete("killtwo")
    assert len(codes) > killed_at + 20
    assert [c for c in codes if c[0] != 200] == []


@pytest.fixture
def private_redis():
    try:
        server = RedisServer()
    except FileNotFoundError as exc:
        missing("redis-server", str(exc))
    server.start()
    yield server
    server.stop()


def test_redis_stopped_mid_run_keeps_answering(ray_cluster, test_models, tmp_path, private_redis):
    port = ray_cluster["port"]
    deploy("redis", "/redis", test_models, tmp_path / "r.db",
           ingress={"cache": "redis", "redis_url": private_redis.url,
                    "database_url": None})
    url = f"http://127.0.0.1:{port}/redis"
    with httpx.Client(timeout=30) as c:
        first = c.post(f"{url}/v1/allocate", json=_state(1)).json()
        again = c.post(f"{url}/v1/allocate", json=_state(1)).json()
        assert (first["cached"], again["cached"]) == (False, True)  # Redis really used
        private_redis.stop()
        after = [c.post(f"{url}/v1/allocate", json=_state(100 + i)) for i in range(20)]
    assert [r.status_code for r in after] == [200] * 20
    from ray import serve

    serve.delete("redis")


def _spooled(spool_dir) -> set[str]:
    """Decision ids in the replicas' spool files now (``<stem>.<replica>.jsonl``)."""
    ids = set()
    for path in spool_dir.glob("*.jsonl"):
        for line in path.read_bytes().splitlines():
            if line.strip():
                ids.add(orjson.loads(line)["decision_id"])
    return ids


def test_postgres_outage_loses_no_decision(ray_cluster, test_models, tmp_path, postgres_db):
    import psycopg

    proxy = TcpProxy(5432)
    proxy.start()
    port = ray_cluster["port"]
    db_url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/{postgres_db}"
    deploy("pg", "/pg", test_models, tmp_path / "unused.db",
           ingress={"cache": "none", "database_url": db_url,
                    "spool_path": str(tmp_path / "spool" / "d.jsonl")})
    url = f"http://127.0.0.1:{port}/pg"
    spool_dir = tmp_path / "spool"
    with httpx.Client(timeout=30) as c:
        before = [c.post(f"{url}/v1/allocate", json=_state(i)) for i in range(10)]
        time.sleep(1.5)  # written
        assert not _spooled(spool_dir)  # the database was up: nothing waited in the spool
        proxy.cut()
        during = [c.post(f"{url}/v1/allocate", json=_state(100 + i)) for i in range(30)]
    assert all(r.status_code == 200 for r in before + during)
    # the outage really happened: the decisions made during it wait in the spool
    during_ids = {r.json()["decision_id"] for r in during}
    deadline = time.time() + 30
    while not during_ids <= _spooled(spool_dir) and time.time() < deadline:
        time.sleep(0.5)
    assert during_ids <= _spooled(spool_dir), \
        f"{len(during_ids - _spooled(spool_dir))} of 30 decisions made during the outage " \
        "never reached the spool"
    proxy.resume()  # the database returns on the same address
    ids = {r.json()["decision_id"] for r in before + during}
    deadline = time.time() + 60
    found: set[str] = set()
    while time.time() < deadline:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{postgres_db}") as conn:
            found = {row[0] for row in conn.execute("SELECT decision_id FROM predictions")}
        if ids <= found:
            break
        time.sleep(1)
    assert ids <= found, f"{len(ids - found)} decisions missing after the outage"
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{postgres_db}") as conn:
        dupes = conn.execute(
            "SELECT count(*) - count(DISTINCT decision_id) FROM predictions"
        ).fetchone()
    assert dupes[0] == 0
    deadline = time.time() + 30  # replayed: the spool is emptied once the rows are in
    while _spooled(spool_dir) and time.time() < deadline:
        time.sleep(0.5)
    assert not _spooled(spool_dir)
    from ray import serve

    serve.delete("pg")
    proxy.cut()


def test_tampered_model_is_refused_and_readyz_says_why(ray_cluster, test_models, tmp_path):
    bad = tmp_path / "models"
    shutil.copytree(test_models, bad)
    onnx = bad / "hybrid" / "2" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"tampered")
    deploy("tampered", "/tampered", bad, tmp_path / "t.db",
           ingress={"database_url": None})
    url = f"http://127.0.0.1:{ray_cluster['port']}/tampered"
    r = httpx.get(f"{url}/readyz")
    assert r.status_code == 503
    assert "model.onnx: sha256 mismatch" in r.json()["reason"]
    hybrid = httpx.post(f"{url}/v1/allocate", json={**_state(1), "model": "hybrid"})
    assert hybrid.status_code == 503 and "sha256 mismatch" in hybrid.json()["error"]
    dqn = httpx.post(f"{url}/v1/allocate", json={**_state(1), "model": "dqn"})
    assert dqn.status_code == 200  # the intact models keep serving
    health = httpx.get(f"{url}/health").json()  # the original API's: what really loaded
    assert health["status"] == "degraded"
    assert {"hybrid", "dqn", "ppo"} <= set(health["models_loaded"])
    assert [m for m, ok in health["models_loaded"].items() if not ok] == ["hybrid"]
    from ray import serve

    serve.delete("tampered")
