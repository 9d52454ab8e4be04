"""Soak with faults: steady load for a long time while parts of the system fail, then
proof that nothing was lost or duplicated and that nothing grows.

The app runs with PolicyInference as its own deployment (serve_config.gpu.yaml's
composition: the CPU config runs the policy inside the ingress, and then there is no
PolicyInference replica to kill), two replicas each of Ingress and PolicyInference, the
decision cache in Redis, and the decision log on PostgreSQL. Load: open loop (requests
are sent on a clock, whatever the answers do, so a stall shows as latency rather than
as a slower sender) at ``load_share`` (70 %) of the maximum single-state throughput
measured at the start on the same app, plus one batch request a second. In the middle:

- a PolicyInference replica is SIGKILLed;
- an Ingress replica is SIGKILLed;
- Redis (a redis-server of our own on a free port) is killed and restarted;
- PostgreSQL is cut for ``pg_cut_s``: the app reaches PostgreSQL through a loopback TCP
  proxy of ours (``benchmarks.faults.TcpProxy``) and the proxy is cut, never the shared
  server.

Invariants (``SoakReport.violations``): every failed request was in flight when a replica
was killed; every decision id answered with a 200 is in the database exactly once; no
replica's RSS grows by 5 % or more after warm-up.

The client retries a request once when its connection closed without an answer, as
HTTP clients do (RFC 9112 §9.3.1; deciding again is harmless, the first decision may be
logged unanswered). That is what HAProxy leaves to the client when the idle connection
to an ingress replica it reused turns out to belong to a replica that just died: it
closes the client's connection instead of answering. The report counts those retries,
inside and outside a kill, and names each one outside.

    python -m benchmarks.soak [--minutes 15]
Writes benchmarks/results/soak.{md,json,png}. ``tests/serve/test_soak.py`` runs the same
code for about a minute and asserts the same invariants.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.faults import RedisServer, TcpProxy, kill_replica, replica_processes
from benchmarks.load import run_load

RESULTS = Path(__file__).parent / "results"
JSON_HEADERS = {"content-type": "application/json"}
DEPLOYMENTS = ("Ingress", "PolicyInference")
#: RSS growth after warm-up that fails the soak.
MAX_RSS_GROWTH = 0.05


@dataclass(frozen=True)
class SoakPlan:
    """How long, how hard, and when each fault happens (as shares of the duration)."""

    duration_s: float
    calibrate_s: float = 20.0
    load_share: float = 0.7
    batch_states: int = 64
    bucket_s: float = 10.0
    rss_every_s: float = 5.0
    pg_cut_s: float = 30.0
    warmup_share: float = 0.2
    kill_inference_at: float = 0.3
    kill_ingress_at: float = 0.4
    redis_restart_at: float = 0.5
    pg_cut_at: float = 0.6

    @classmethod
    def for_duration(cls, duration_s: float) -> SoakPlan:
        """The full plan at 15 minutes; shorter runs scale the buckets, the sampling, the
        calibration and the outage down with it."""
        return cls(duration_s=duration_s,
                   calibrate_s=min(20.0, max(10.0, duration_s / 45)),
                   bucket_s=min(10.0, max(2.0, duration_s / 90)),
                   rss_every_s=min(5.0, max(1.0, duration_s / 180)),
                   pg_cut_s=min(30.0, max(5.0, duration_s / 8)))


@dataclass
class FaultEvent:
    name: str
    start_s: float
    end_s: float
    detail: str = ""


@dataclass
class Faults:
    """What the soak may break: the app's name (its replicas are found among this
    process's descendants), our Redis, and the proxy in front of PostgreSQL."""

    app: str
    redis: RedisServer
    pg_proxy: TcpProxy

    def schedule(self, plan: SoakPlan) -> list[tuple[float, str, Callable[[], str]]]:
        def pg_cut() -> str:
            self.pg_proxy.cut()
            time.sleep(plan.pg_cut_s)
            self.pg_proxy.resume()
            return f"proxy port {self.pg_proxy.port} cut for {plan.pg_cut_s:.0f} s"

        def restart_redis() -> str:
            self.redis.restart()
            return f"redis-server on port {self.redis.port} SIGKILLed and started again"

        d = plan.duration_s
        return [
            (plan.kill_inference_at * d, "kill PolicyInference replica",
             lambda: f"pid {kill_replica(self.app, 'PolicyInference')} SIGKILLed"),
            (plan.kill_ingress_at * d, "kill Ingress replica",
             lambda: f"pid {kill_replica(self.app, 'Ingress')} SIGKILLed"),
            (plan.redis_restart_at * d, "restart Redis", restart_redis),
            (plan.pg_cut_at * d, "cut PostgreSQL", pg_cut),
        ]


@dataclass
class Requests:
    """Every request of the soak: kind (0 single, 1 batch), scheduled send and end time
    (seconds since the start), status (0: no HTTP answer), and the decision ids of 200s."""

    kind: list[int] = field(default_factory=list)
    t0: list[float] = field(default_factory=list)
    t1: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    bad_bodies: int = 0  # 200s whose body carried no decision id
    #: the first few bodies of each failing status, to say what failed
    error_samples: dict[int, list[str]] = field(default_factory=dict)
    #: request index -> what came back, for every failed request (they are few)
    failures: dict[int, str] = field(default_factory=dict)
    #: request index -> why its first try got no answer, for every retried request
    retried: dict[int, str] = field(default_factory=dict)

    def add(self, kind: int, t0: float, t1: float, status: int, body: bytes | None,
            retried: str | None = None) -> None:
        if retried is not None:
            self.retried[len(self.status)] = retried
        self.kind.append(kind)
        self.t0.append(t0)
        self.t1.append(t1)
        self.status.append(status)
        if status != 200:
            self.failures[len(self.status) - 1] = (body or b"")[:200].decode(errors="replace")
            seen = self.error_samples.setdefault(status, [])
            if len(seen) < 3:
                seen.append(f"{t0:.1f} s: {(body or b'')[:300].decode(errors='replace')}")
        if status == 200 and body is not None:
            try:
                obj = orjson.loads(body)
                self.ids += ([d["decision_id"] for d in obj["decisions"]] if kind
                             else [obj["decision_id"]])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self.bad_bodies += 1


@dataclass
class RssSample:
    t_s: float
    deployment: str
    pid: int
    rss_mib: float


def sample_rss(app: str, t_origin: float, every_s: float, stop: threading.Event,
               out: list[RssSample], load: list[tuple[float, float]]) -> None:
    """RSS of every replica of ``app``, and the machine's load average, every
    ``every_s`` (a thread)."""
    import os

    while not stop.is_set():
        now = time.perf_counter() - t_origin
        load.append((now, os.getloadavg()[0]))
        for dep in DEPLOYMENTS:
            for p in replica_processes(app, dep):
                try:
                    out.append(RssSample(now, dep, p.pid, p.memory_info().rss / 2**20))
                except Exception:  # gone between the listing and the read
                    continue
        stop.wait(every_s)


async def drive(url: str, bodies: Sequence[bytes], batch_bodies: Sequence[bytes], rate: float,
                duration_s: float, t_origin: float, out: Requests) -> None:
    """Open-loop load: single states at ``rate``/s and one batch a second, each sent at
    its scheduled time whatever the earlier ones are doing."""
    import aiohttp

    # A pool as a client fleet keeps one: at most 64 connections (twice the calibration's
    # concurrency). Requests beyond it wait in the client, and that wait counts in their
    # latency (measured from the scheduled send), so overload still shows; unbounded
    # connections instead spiral (each new one costs the server an accept and a handshake).
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=30)) as s:
        async def one(path: str, body: bytes, kind: int, t0: float) -> None:
            status, raw, retried = 0, None, None
            for attempt in (1, 2):
                try:
                    async with s.post(url + path, data=body, headers=JSON_HEADERS) as r:
                        raw = await r.read()
                        status = r.status
                except aiohttp.ServerDisconnectedError as exc:  # closed, no answer
                    raw = repr(exc).encode()
                    if attempt == 1:
                        retried = f"{time.perf_counter() - t_origin:.2f} s: {exc!r}"
                        continue
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    raw = repr(exc).encode()  # status 0: no HTTP answer; say why
                break
            out.add(kind, t0, time.perf_counter() - t_origin, status, raw, retried)

        tasks: set[asyncio.Task[None]] = set()

        def launch(path: str, body: bytes, kind: int, t0: float) -> None:
            task = asyncio.create_task(one(path, body, kind, t0))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        i = b = 0
        while True:
            t_single, t_batch = i / rate, float(b)
            t_next = min(t_single, t_batch)
            if t_next >= duration_s:
                break
            delay = t_next - (time.perf_counter() - t_origin)
            if delay > 0:
                await asyncio.sleep(delay)
            if t_batch <= t_single:
                launch("/v1/allocate/batch", batch_bodies[b % len(batch_bodies)], 1, t_batch)
                b += 1
            else:
                launch("/v1/allocate", bodies[i % len(bodies)], 0, t_single)
                i += 1
        if tasks:
            await asyncio.gather(*tasks)


async def run_faults(faults: Faults, plan: SoakPlan, t_origin: float,
                     out: list[FaultEvent]) -> None:
    for at_s, name, action in faults.schedule(plan):
        delay = at_s - (time.perf_counter() - t_origin)
        if delay > 0:
            await asyncio.sleep(delay)
        start = time.perf_counter() - t_origin
        detail = await asyncio.to_thread(action)
        out.append(FaultEvent(name, start, time.perf_counter() - t_origin, detail))


@dataclass
class SoakRun:
    """What one soak observed, before it is judged."""

    plan: SoakPlan
    max_rps: float
    rate_rps: float
    requests: Requests
    faults: list[FaultEvent]
    rss: list[RssSample]
    load_avg: list[tuple[float, float]]


def soak(url: str, faults: Faults, plan: SoakPlan, bodies: Sequence[bytes],
         batch_bodies: Sequence[bytes], calib_bodies: Sequence[bytes],
         origin_file: Path | None = None) -> SoakRun:
    """Calibrate on ``url`` (closed loop, concurrency 32, after as long a warm-up), then
    run the open-loop load with the faults on their schedule. ``calib_bodies`` are other
    states than ``bodies``, so the soak does not start on the calibration's cache hits;
    give each more states than the cache TTL (5 s) times the rate, or the decision cache
    answers repeats and the measured maximum is not the model path's. ``origin_file``
    receives the Unix time of the run's second 0 (for ``benchmarks.heap_diff``)."""
    single = f"{url}/v1/allocate"
    asyncio.run(run_load(single, calib_bodies, 32, 10**7, plan.calibrate_s))
    calib = asyncio.run(run_load(single, calib_bodies, 32, 10**7, plan.calibrate_s))
    if calib.errors:
        raise RuntimeError(f"calibration had errors before any fault: {calib.statuses}")
    rate = plan.load_share * calib.throughput_rps
    print(f"soak: max {calib.throughput_rps:.0f} req/s single-state; load {rate:.0f} req/s "
          f"+ 1 batch of {plan.batch_states}/s for {plan.duration_s:.0f} s", flush=True)
    requests = Requests()
    events: list[FaultEvent] = []
    rss: list[RssSample] = []
    load: list[tuple[float, float]] = []
    stop = threading.Event()
    t_origin = time.perf_counter()
    if origin_file is not None:
        origin_file.write_text(f"{time.time():.3f}\n")
    sampler = threading.Thread(target=sample_rss,
                               args=(faults.app, t_origin, plan.rss_every_s, stop, rss, load),
                               daemon=True)
    sampler.start()

    async def both() -> None:
        await asyncio.gather(drive(url, bodies, batch_bodies, rate, plan.duration_s, t_origin,
                                   requests),
                             run_faults(faults, plan, t_origin, events))
    try:
        asyncio.run(both())
    finally:
        stop.set()
        sampler.join()
    return SoakRun(plan, calib.throughput_rps, rate, requests, events, rss, load)


# ------------------------------------------------------------------ judging the run

def logged_ids(db_url: str, expected: set[str], timeout_s: float = 150) -> Counter[str]:
    """decision_id -> rows in the database, once every expected id is there or after
    ``timeout_s`` (the spool is replayed when the writer's back-off ends, up to 30 s)."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        with psycopg.connect(db_url) as conn:
            rows = conn.execute("SELECT decision_id FROM predictions").fetchall()
            runs = conn.execute("SELECT run_id, decision_count FROM decision_runs").fetchall()
        counts = Counter(r[0] for r in rows)  # a batch request's decisions: one run row
        counts.update(f"{run_id}{i:04x}" for run_id, n in runs for i in range(n))
        if expected <= counts.keys() or time.monotonic() > deadline:
            return counts
        time.sleep(2)


@dataclass
class Bucket:
    t_s: float
    requests: int
    ok: int
    failed: int
    p50_ms: float
    p99_ms: float
    failed_by_status: dict[str, int]
    load_avg: float  # the machine's 1-minute load average then (it is shared)


@dataclass
class RssGrowth:
    deployment: str
    pid: int
    first_s: float
    last_s: float
    baseline_mib: float
    final_mib: float
    growth: float | None  # None: the process lived too briefly after warm-up to judge


@dataclass
class SoakReport:
    duration_s: float
    max_rps: float
    rate_rps: float
    requests: int
    batch_requests: int
    statuses: dict[str, int]
    failed_in_flight: int
    failed_other: int
    retried_in_flight: int
    retried_other: int
    decisions_ok: int
    duplicate_ids_answered: int
    missing_in_db: int
    duplicated_in_db: int
    extra_in_db: int
    bad_bodies: int
    faults: list[FaultEvent]
    buckets: list[Bucket]
    rss_growth: list[RssGrowth]
    violations: list[str]
    missing_examples: list[str] = field(default_factory=list)
    error_samples: dict[int, list[str]] = field(default_factory=dict)
    #: each request that failed outside a kill: sent and ended when, status, what came back
    failed_other_examples: list[str] = field(default_factory=list)
    #: each request retried outside a kill: sent when, and why its first try failed
    retried_other_examples: list[str] = field(default_factory=list)


def _rss_growth(samples: list[RssSample], plan: SoakPlan) -> list[RssGrowth]:
    """Per process: median RSS over the first tenth of the run after its warm-up (the
    run's first ``warmup_share``, or as long from the process's own start for a
    replacement) against the median over the run's last tenth."""
    window = plan.duration_s / 10
    warm = plan.warmup_share * plan.duration_s
    out = []
    for pid in sorted({s.pid for s in samples}):
        mine = [s for s in samples if s.pid == pid]
        first, last = mine[0].t_s, mine[-1].t_s
        start = max(warm, first + warm) if first > plan.rss_every_s * 2 else warm
        base = [s.rss_mib for s in mine if start <= s.t_s < start + window]
        end = [s.rss_mib for s in mine if s.t_s >= plan.duration_s - window]
        if base and end and start + window <= plan.duration_s - window:
            b, e = statistics.median(base), statistics.median(end)
            out.append(RssGrowth(mine[0].deployment, pid, first, last, b, e, e / b - 1))
        else:
            out.append(RssGrowth(mine[0].deployment, pid, first, last,
                                 statistics.median(base) if base else float("nan"),
                                 statistics.median(end) if end else float("nan"), None))
    return out


def judge(run: SoakRun, db_url: str, judge_rss: bool = True) -> SoakReport:
    """The report, with what broke an invariant in ``violations``. ``judge_rss``: whether
    RSS growth counts (a run of a minute or two cannot tell warm-up from growth)."""
    req, plan = run.requests, run.plan
    status = np.array(req.status)
    t0, t1 = np.array(req.t0), np.array(req.t1)
    kinds = np.array(req.kind)
    # in flight at a kill: sent before the replica was gone (kill_replica returns once
    # the process has exited) and not answered before the kill call began
    kills = [(e.start_s, e.end_s) for e in run.faults if e.name.startswith("kill")]
    failed = status != 200
    in_flight = np.zeros_like(failed)
    for start, end in kills:
        in_flight |= (t0 <= end) & (t1 >= start)
    retried = np.zeros_like(failed)
    retried[list(req.retried)] = True
    answered = Counter(req.ids)
    counts = logged_ids(db_url, set(answered))
    missing = sorted(set(answered) - counts.keys())
    buckets = []
    lat = (t1 - t0) * 1000
    for start in np.arange(0, plan.duration_s, plan.bucket_s):
        sel = (t0 >= start) & (t0 < start + plan.bucket_s) & (kinds == 0)
        ok = sel & ~failed
        p50, p99 = (np.percentile(lat[ok], [50, 99]) if ok.any() else (np.nan, np.nan))
        bad = Counter(int(c) for c in status[sel & failed])
        loads = [v for t, v in run.load_avg if start <= t < start + plan.bucket_s]
        buckets.append(Bucket(float(start), int(sel.sum()), int(ok.sum()),
                              int((sel & failed).sum()), float(p50), float(p99),
                              {str(k): v for k, v in sorted(bad.items())},
                              float(np.mean(loads)) if loads else float("nan")))
    growth = _rss_growth(run.rss, plan)
    report = SoakReport(
        duration_s=plan.duration_s, max_rps=run.max_rps, rate_rps=run.rate_rps,
        requests=len(status), batch_requests=int(kinds.sum()),
        statuses={str(k): v for k, v in sorted(Counter(req.status).items())},
        failed_in_flight=int((failed & in_flight).sum()),
        failed_other=int((failed & ~in_flight).sum()),
        retried_in_flight=int((retried & in_flight).sum()),
        retried_other=int((retried & ~in_flight).sum()),
        decisions_ok=len(req.ids),
        duplicate_ids_answered=sum(c - 1 for c in answered.values() if c > 1),
        missing_in_db=len(missing), duplicated_in_db=sum(1 for c in counts.values() if c > 1),
        extra_in_db=len(counts.keys() - answered.keys()), bad_bodies=req.bad_bodies,
        faults=run.faults, buckets=buckets, rss_growth=growth, violations=[],
        missing_examples=missing[:10], error_samples=req.error_samples,
        failed_other_examples=[
            f"sent {t0[i]:.2f} s, ended {t1[i]:.2f} s, status {status[i]}: "
            f"{req.failures.get(int(i), '')}" for i in np.flatnonzero(failed & ~in_flight)[:20]],
        retried_other_examples=[f"sent {t0[i]:.2f} s, first try ended {req.retried[int(i)]}"
                                for i in np.flatnonzero(retried & ~in_flight)[:20]])
    report.violations = violations(report, {e.name for e in run.faults}, judge_rss)
    return report


def violations(r: SoakReport, faults_done: set[str], judge_rss: bool = True) -> list[str]:
    """What broke an invariant, in words (empty: the soak passed)."""
    out = []
    expected = {"kill PolicyInference replica", "kill Ingress replica", "restart Redis",
                "cut PostgreSQL"}
    if faults_done != expected:
        out.append(f"faults not all injected: {sorted(expected - faults_done)}")
    if r.failed_other:
        out.append(f"{r.failed_other} requests failed that were not in flight at a replica kill")
    if r.missing_in_db:
        out.append(f"{r.missing_in_db} decisions answered with 200 are not in the database "
                   f"(e.g. {r.missing_examples[:3]})")
    if r.duplicated_in_db or r.duplicate_ids_answered:
        out.append(f"{r.duplicated_in_db} ids stored twice, {r.duplicate_ids_answered} "
                   "answered twice")
    if r.bad_bodies:
        out.append(f"{r.bad_bodies} 200 responses without decision ids")
    judged = [g for g in r.rss_growth if g.growth is not None and judge_rss]
    if judge_rss and not judged:
        out.append("no replica lived long enough after warm-up to judge its RSS")
    for g in judged:
        if g.growth is not None and g.growth >= MAX_RSS_GROWTH:
            out.append(f"{g.deployment} pid {g.pid}: RSS grew {g.growth:.1%} after warm-up "
                       f"({g.baseline_mib:.0f} -> {g.final_mib:.0f} MiB)")
    return out


# ------------------------------------------------------------------ writing it up

def markdown(r: SoakReport, setup: str) -> str:
    lines = [f"Soak: {r.duration_s / 60:.1f} min, open loop at {r.rate_rps:.0f} req/s "
             f"(70 % of the {r.max_rps:.0f} req/s measured just before) + one batch "
             f"request a second. {setup}", "",
             f"**Result: {'PASS' if not r.violations else 'FAIL'}**", ""]
    lines += [f"- violation: {v}" for v in r.violations]
    lines += ["", "| requests | of them batch | decisions answered (200) | errors by status | "
              "failed in flight at a kill | failed otherwise | retried (closed unanswered) "
              "in flight at a kill | retried otherwise |", "|---|---|---|---|---|---|---|---|",
              f"| {r.requests:,} | {r.batch_requests:,} | {r.decisions_ok:,} | "
              f"{', '.join(f'{k}: {v:,}' for k, v in r.statuses.items() if k != '200') or 'none'}"
              f" | {r.failed_in_flight} | {r.failed_other} | {r.retried_in_flight} | "
              f"{r.retried_other} |", "",
              "| decision log (PostgreSQL) | count |", "|---|---|",
              f"| 200s' decision ids missing from the database | {r.missing_in_db} |",
              f"| ids stored more than once | {r.duplicated_in_db} |",
              f"| ids answered more than once | {r.duplicate_ids_answered} |",
              f"| rows not answered with a 200 (decided, then the answer was lost) | "
              f"{r.extra_in_db} |", "",
              "| fault | at s | until s | what |", "|---|---|---|---|"]
    lines += [f"| {e.name} | {e.start_s:.1f} | {e.end_s:.1f} | {e.detail} |" for e in r.faults]
    for status, samples in r.error_samples.items():
        lines += [f"- status {status} (first seen): " + "; ".join(f"`{x}`" for x in samples)]
    lines += [f"- failed outside a kill: `{x}`" for x in r.failed_other_examples]
    lines += [f"- retried outside a kill: `{x}`" for x in r.retried_other_examples]
    lines += ["", "RSS per replica (median over the first tenth after warm-up vs the last "
              "tenth of the run; `n/a`: the process did not live through both):", "",
              "| deployment | pid | seen s | after warm-up MiB | at the end MiB | growth |",
              "|---|---|---|---|---|---|"]
    for g in r.rss_growth:
        grow = "n/a" if g.growth is None else f"{g.growth:+.1%}"
        lines.append(f"| {g.deployment} | {g.pid} | {g.first_s:.0f}–{g.last_s:.0f} | "
                     f"{g.baseline_mib:.0f} | {g.final_mib:.0f} | {grow} |")
    lines += ["", "Single-state latency over time (per bucket; failed requests excluded):", "",
              "| from s | requests | failed (by status) | p50 ms | p99 ms | machine load avg |",
              "|---|---|---|---|---|---|"]
    for b in r.buckets:
        why = ", ".join(f"{k}: {v}" for k, v in b.failed_by_status.items())
        lines.append(f"| {b.t_s:.0f} | {b.requests} | {b.failed}{f' ({why})' if why else ''} | "
                     f"{b.p50_ms:.1f} | {b.p99_ms:.1f} | {b.load_avg:.1f} |")
    return "\n".join(lines) + "\n"


def plot(r: SoakReport, rss: list[RssSample], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    t = [b.t_s for b in r.buckets]
    w = r.buckets[1].t_s - r.buckets[0].t_s if len(r.buckets) > 1 else 1.0
    a1.plot(t, [b.ok / w for b in r.buckets], label="200/s (single)")
    a1.bar(t, [b.failed / w for b in r.buckets], width=w, color="red", label="failed/s",
           align="edge")
    a1.set(ylabel="requests/s", title="single-state requests (open loop)")
    a2.plot(t, [b.p50_ms for b in r.buckets], label="p50")
    a2.plot(t, [b.p99_ms for b in r.buckets], label="p99")
    a2.set(ylabel="ms", yscale="log", title="latency from scheduled send")
    for pid in sorted({s.pid for s in rss}):
        mine = [s for s in rss if s.pid == pid]
        a3.plot([s.t_s for s in mine], [s.rss_mib for s in mine],
                label=f"{mine[0].deployment} {pid}")
    a3.set(ylabel="RSS MiB", xlabel="seconds", title="RSS per replica")
    for ax in (a1, a2, a3):
        for e in r.faults:
            ax.axvspan(e.start_s, max(e.end_s, e.start_s + w / 4), color="orange", alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    for e in r.faults:
        a1.annotate(e.name, (e.start_s, 0), rotation=90, fontsize=7, va="bottom")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------ the benchmark

def app_options(redis_url: str, db_url: str, spool: Path) -> tuple[Any, dict[str, Any]]:
    """The shipped config with PolicyInference its own deployment, two fixed replicas of
    it and of the Ingress, the cache in Redis, the decision log on PostgreSQL."""
    from benchmarks.cluster import shipped_options

    args, options = shipped_options(separate=False, fixed_replicas=True, cache="redis",
                                    redis_url=redis_url, database_url=db_url,
                                    spool_path=str(spool))
    for name in DEPLOYMENTS:
        options[name]["num_replicas"] = 2
    return args, options


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--minutes", type=float, default=15)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--heap-snapshots", type=Path, default=None, metavar="DIR",
                   help="trace the replicas' heaps (tracemalloc, about a third slower) "
                        "and write snapshots to DIR; compare them with "
                        "python -m benchmarks.heap_diff DIR")
    cli = p.parse_args()
    import tempfile

    from benchmarks.cluster import deploy, ray_serve
    from benchmarks.faults import scratch_database
    from benchmarks.load import sample_bodies
    from edge_allocator.runtime import heap_watch
    from edge_allocator.runtime.raylocal import FAST_PATH_ENV

    plan = SoakPlan.for_duration(cli.minutes * 60)
    # distinct states, more than a cache TTL's worth at either rate (no cache hits: a
    # calibration on hits would overstate the maximum)
    bodies = sample_bodies(8000, nodes=20)
    batch_bodies = sample_bodies(20, nodes=20, seed=1, batch=plan.batch_states)
    redis = RedisServer()
    redis.start()
    proxy = TcpProxy(5432)
    proxy.start()
    spool = Path(tempfile.mkdtemp(prefix="ea-soak-")) / "spool" / "decisions.jsonl"
    try:
        env = dict(FAST_PATH_ENV)
        if cli.heap_snapshots is not None:
            cli.heap_snapshots.mkdir(parents=True, exist_ok=True)
            env[heap_watch.ENV] = str(cli.heap_snapshots.resolve())
        with scratch_database("ea_soak") as db, ray_serve(num_cpus=2, env=env) as port:
            app_url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/{db}"
            args, options = app_options(redis.url, app_url, spool)
            deploy("soak", "/", args, options)
            run = soak(f"http://127.0.0.1:{port}", Faults("soak", redis, proxy), plan,
                       bodies[:3000], batch_bodies, bodies[3000:],
                       cli.heap_snapshots / "origin" if cli.heap_snapshots else None)
            report = judge(run, f"postgresql://postgres@127.0.0.1:5432/{db}")
    finally:
        proxy.cut()
        redis.stop()
    setup = ("Ray Serve on this 2-CPU machine (shared with other engineers' light work), "
             "HAProxy fast path; 2 Ingress + 2 PolicyInference replicas (fixed), cache in "
             "Redis (own redis-server), decision log on PostgreSQL through a TCP proxy we "
             "cut (the shared server is never stopped).")
    md = markdown(report, setup)
    print(md)
    cli.out.mkdir(exist_ok=True)
    (cli.out / "soak.md").write_text(md)
    (cli.out / "soak.json").write_text(json.dumps(asdict(report), indent=1))
    plot(report, run.rss, cli.out / "soak.png")
    if report.violations:
        raise SystemExit("soak FAILED: " + "; ".join(report.violations))


if __name__ == "__main__":
    main()
