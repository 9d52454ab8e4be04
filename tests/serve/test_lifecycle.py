"""Live changes through user_config: batch size, model hot swap, A/B split, auth."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from tests.serve.conftest import deploy

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def swap_app(ray_cluster, test_models, tmp_path_factory):
    db = tmp_path_factory.mktemp("db-swap") / "decisions.db"
    pinned = {"models": {"hybrid": {"version": "1"}, "dqn": {}, "ppo": {}}}

    def redeploy(ingress=None, inference=None):
        ing = {**pinned, **(ingress or {})}
        inf = {**pinned, **(inference or {})}
        deploy("swap", "/swap", test_models, db, ingress=ing, inference=inf)

    redeploy()
    return f"http://127.0.0.1:{ray_cluster['port']}/swap", redeploy


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
    url, redeploy = swap_app
    redeploy(inference={"max_batch_size": 4, "batch_wait_timeout_s": 0.02})
    assert httpx.get(f"{url}/v1/batch-config").json()["max_batch_size"] == 4
    small = _concurrent_batch_sizes(url, 96)
    assert max(small) <= 4, small
    redeploy(inference={"max_batch_size": 64, "batch_wait_timeout_s": 0.02})
    assert httpx.get(f"{url}/v1/batch-config").json()["max_batch_size"] == 64
    # batches larger than the old cap form (a busy machine may need a second burst)
    big = [_concurrent_batch_sizes(url, 96) for _ in range(3)]
    assert max(max(b) for b in big) > 4, big


def test_hot_swap_fails_no_request(swap_app):
    url, redeploy = swap_app
    statuses: list[int] = []
    versions: list[str] = []
    stop = threading.Event()

    def load():
        with httpx.Client(timeout=30) as c:
            i = 0
            while not stop.is_set():
                r = c.post(f"{url}/v1/allocate", json=_state(i))
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.append(r.json()["model"]["version"])
                i += 1

    t = threading.Thread(target=load)
    t.start()
    try:
        redeploy(ingress={"models": {"hybrid": {"version": "2"}, "dqn": {}, "ppo": {}}},
                 inference={"models": {"hybrid": {"version": "2"}, "dqn": {}, "ppo": {}}})
        deadline = __import__("time").time() + 30
        while (not versions or versions[-1] != "2") and __import__("time").time() < deadline:
            __import__("time").sleep(0.2)
    finally:
        stop.set()
        t.join()
    assert statuses and set(statuses) == {200}, {s for s in statuses if s != 200}
    assert versions[0] == "1" and versions[-1] == "2"


def test_ab_split_records_the_version(swap_app):
    url, redeploy = swap_app
    split = {"models": {"hybrid": {"ab": {"1": 1.0, "2": 1.0}}, "dqn": {}, "ppo": {}}}
    redeploy(ingress=split, inference=split)
    with httpx.Client(timeout=30) as c:
        seen = [c.post(f"{url}/v1/allocate", json=_state(20_000 + i)).json()["model"]["version"]
                for i in range(40)]
    assert set(seen) == {"1", "2"}


def test_bearer_token_auth(swap_app, tmp_path):
    url, redeploy = swap_app
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
