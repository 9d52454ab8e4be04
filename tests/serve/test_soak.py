"""The soak with faults (``benchmarks.soak``), short: 30 s of open-loop load at 70 % of
the measured maximum while a PolicyInference replica and an Ingress replica are killed,
Redis is restarted and PostgreSQL is cut; the 15-minute benchmark's invariants: all four
faults happened, only requests in flight at a kill failed, and every decision answered
with a 200 is in the database exactly once.

RSS is sampled and reported but not judged here: in 30 s a replica is still warming up,
and one that took over a killed sibling's traffic and replayed the outage's spool is
still at that high-water mark (6.7 % over its 15-s warm-up in one run). The benchmark
judges growth over 15 minutes."""

from __future__ import annotations

import pytest

from benchmarks.faults import RedisServer, TcpProxy
from benchmarks.load import sample_bodies
from benchmarks.soak import Faults, SoakPlan, judge, markdown, soak
from tests.conftest import missing
from tests.serve.conftest import deploy

pytestmark = [pytest.mark.cluster, pytest.mark.exclusive]

SECONDS = 30


def test_soak_with_faults(ray_cluster, test_models, tmp_path, postgres_db):
    try:
        redis = RedisServer()
    except FileNotFoundError as exc:
        missing("redis-server", str(exc))
    redis.start()
    proxy = TcpProxy(5432)
    proxy.start()
    from ray import serve

    try:
        deploy("soak", "/soak", test_models, tmp_path / "unused.db", mode="hop", replicas=2,
               ingress={"cache": "redis", "redis_url": redis.url,
                        "database_url": f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}"
                                        f"/{postgres_db}",
                        "spool_path": str(tmp_path / "spool" / "d.jsonl")})
        plan = SoakPlan.for_duration(SECONDS)
        bodies = sample_bodies(6000, nodes=20)  # > TTL x rate each: no cache hits
        batch = sample_bodies(5, nodes=20, seed=1, batch=plan.batch_states)
        run = soak(f"http://127.0.0.1:{ray_cluster['port']}/soak", Faults("soak", redis, proxy),
                   plan, bodies[:2500], batch, bodies[2500:])
        report = judge(run, f"postgresql://postgres@127.0.0.1:5432/{postgres_db}",
                       judge_rss=False)
        # the open loop kept its planned rate (70 % of the maximum just measured, which
        # is low when the other test worker loads the machine: 39 req/s once) and the
        # calibration measured a working service
        single = report.requests - report.batch_requests
        assert single >= 0.9 * report.rate_rps * plan.duration_s, (single, report.rate_rps)
        assert report.max_rps >= 20 and report.decisions_ok > 0, report.max_rps
        assert not report.violations, markdown(report, "(test)")
    finally:
        serve.delete("soak")
        proxy.cut()
        redis.stop()
