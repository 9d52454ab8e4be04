"""The decision log at batch rate: CPU per logged decision on the request path, and how
fast the background writer stores decisions in SQLite and PostgreSQL.

Request path: build the ``DecisionRecord`` of each of 256 decisions of 20 nodes and hand
it to ``DecisionLog.record()``, repeated; CPU (``time.process_time``, the writer thread
held idle so it is the caller's alone) and wall time per decision, median of repeats.
Before packed node states the caller built one dict per node from the request's node
objects (what ``AllocatorApi._record`` did); now it passes the state's rows of the
batch's node matrix, which the columnar path already holds.

Background: 5,000 decisions of 20 nodes recorded at once, timed until ``flush()`` returns
(all committed), batches of 500: once beside an idle caller, once with a busy caller that
runs 60 µs of Python per decision between batches of 256 (what an ingress spends on a
decision besides the log, so the writer must win the GIL back from it after every
release); decisions/s over the whole (the busy caller alone would do 16,667), CPU of
the writer thread per decision (psutil's per-thread times) and bytes stored per decision
(SQLite: the whole file; PostgreSQL: the decision tables with their indexes and TOAST).

    python -m benchmarks.log_bench [--before /tmp/before]

``--before`` names a checkout of the code before packed node states (e.g.
``git worktree add /tmp/before 76c65e2~1``); the same measurements run there too, in a
subprocess that imports that tree's ``edge_allocator``. PostgreSQL: a scratch database
on the server at ``EDGE_ALLOCATOR_TEST_PG_URL`` (default: local trust auth), dropped
afterwards; skipped when none answers. Writes benchmarks/results/log_bench.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get(
    "EDGE_ALLOCATOR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FIELDS = ("cpu_util", "mem_util", "energy", "latency", "bandwidth", "queue_len", "node_type")


# ------------------------------------------------------------- measured in a child


def _states(decisions: int, nodes: int, seed: int = 0) -> tuple[list[dict[str, Any]],
                                                                 np.ndarray]:
    """Request states as a client sends them, and their [decisions * nodes, 7] float64
    matrix (what the columnar decoder produces)."""
    rng = np.random.default_rng(seed)
    values = np.column_stack([
        rng.random((decisions * nodes, 2)), rng.random(decisions * nodes) * 5,
        rng.random(decisions * nodes) * 50, rng.random(decisions * nodes) * 1000,
        rng.integers(0, 20, decisions * nodes), rng.integers(0, 3, decisions * nodes),
    ]).astype(np.float64)
    states = []
    for i in range(decisions):
        rows = values[i * nodes:(i + 1) * nodes].tolist()
        states.append({"nodes": [
            {"node_id": f"node-{j}", **dict(zip(FIELDS[:-1], row[:-1])),
             "node_type": int(row[-1])} for j, row in enumerate(rows)]})
    return states, values


def _fixed(nodes: int) -> dict[str, Any]:
    """The record's fields other than the node states (the decision made them); the
    decision id as the service under test makes it (time-ordered since UUIDv7 ids)."""
    from edge_allocator.store import new_decision_id

    return {
        "decision_id": new_decision_id(), "model_name": "hybrid", "model_version": "1",
        "backend": "onnx", "node_id": "node-1", "node_index": 1, "confidence": 0.5,
        "scores": {f"node-{j}": 1.0 / nodes for j in range(nodes)}, "latency_ms": 2.0,
        "request_hash": uuid.uuid4().hex, "cached": False,
    }


#: Variants named so run with the crash journal off (``DecisionLog(journal=False)``):
#: what the journal costs on the request path is the difference.
NO_JOURNAL = "journal off: "


def _journal_kw(variant: str) -> dict[str, Any]:
    """The journal is on by default; off for the NO_JOURNAL variants."""
    return {"journal": False} if variant.startswith(NO_JOURNAL) else {}


def _open_log(url: str, tmp: Path, **kw: Any) -> Any:
    from edge_allocator.store import DecisionLog

    return DecisionLog(url, spool_path=tmp / f"spool-{uuid.uuid4().hex[:6]}.jsonl", **kw)


def request_path(decisions: int, nodes: int, repeats: int, tmp: Path) -> list[dict[str, Any]]:
    from edge_allocator.schema import NODE_FIELDS, AllocateRequest
    from edge_allocator.store import DecisionRecord as Record
    from edge_allocator.store import utc_now

    DecisionRecord: Any = Record  # either version's: nodes= before, node_values= after

    packed = "node_values" in DecisionRecord.__dataclass_fields__
    states, values64 = _states(decisions, nodes)
    values32 = values64.astype(np.float32)  # once per batch, not per decision
    ids = [[f"node-{j}" for j in range(nodes)] for _ in range(decisions)]
    fixed = [_fixed(nodes) for _ in range(decisions)]
    requests = [AllocateRequest.model_validate(s) for s in states]
    if packed:  # decoded once, as the request decoded it (not a cost of the log)
        from edge_allocator.columnar import decode_batch
        batch, _ = decode_batch({"states": states})

    def old_way() -> None:  # AllocatorApi._record before packed node states
        for f, req in zip(fixed, requests):
            node_dicts = [{"node_id": nid, **{k: getattr(n, k) for k in NODE_FIELDS}}
                          for nid, n in zip(req.node_ids(), req.nodes)]
            log.record(DecisionRecord(**f, created_at=utc_now(), nodes=node_dicts))

    def arrays(values: np.ndarray, many: bool = False) -> Any:
        def run() -> None:  # many: one record_many per batch request (the batch path)
            recs = [DecisionRecord(**f, created_at=utc_now(), node_ids=ids[i],
                                   node_values=values[i * nodes:(i + 1) * nodes])
                    for i, f in enumerate(fixed)]
            put = log.record_many if many else (lambda rs: [log.record(r) for r in rs])
            put(recs)
        return run

    def old_way_hashed() -> None:  # ... and the request's hash, as the row path keyed it
        from edge_allocator.cache import request_key
        for f, req, state in zip(fixed, requests, states):
            f["request_hash"] = request_key(state, "hybrid", "1")
            node_dicts = [{"node_id": nid, **{k: getattr(n, k) for k in NODE_FIELDS}}
                          for nid, n in zip(req.node_ids(), req.nodes)]
            log.record(DecisionRecord(**f, created_at=utc_now(), nodes=node_dicts))

    def arrays_hashed() -> None:  # ... and the state's hash from the columnar arrays
        values = batch.values.astype(np.float32)  # once per batch
        for i, f in enumerate(fixed):
            f["request_hash"] = batch.key(i, "hybrid", "1")
            log.record(DecisionRecord(**f, created_at=utc_now(), node_ids=batch.node_ids[i],
                                      node_values=values[i * nodes:(i + 1) * nodes]))

    def from_request() -> None:  # the interim: node_matrix of the pydantic request
        from edge_allocator.graph import node_matrix
        for f, req in zip(fixed, requests):
            log.record(DecisionRecord(**f, created_at=utc_now(), node_ids=req.node_ids(),
                                      node_values=node_matrix(req)))

    variants = ([("packed: float32 rows of the batch matrix", arrays(values32)),
                 (f"{NO_JOURNAL}packed: float32 rows of the batch matrix", arrays(values32)),
                 ("packed: float32 rows, one record_many per batch (the batch path)",
                  arrays(values32, many=True)),
                 (f"{NO_JOURNAL}packed: float32 rows, one record_many per batch",
                  arrays(values32, many=True)),
                 ("packed: float64 rows (converted per record)", arrays(values64)),
                 ("packed: node_matrix(pydantic request)", from_request),
                 ("packed: float32 rows + StateBatch.key(i) hash (astype(float32) of "
                  "the batch included)", arrays_hashed)]
                if packed else
                [("one dict per node (AllocatorApi._record)", old_way),
                 ("one dict per node + request_key(payload) hash", old_way_hashed)])
    out = []
    url = f"sqlite:///{tmp / 'request_path.db'}"
    for name, fn in variants:
        # The writer never runs while measuring: CPU is the caller's alone.
        log = _open_log(url, tmp, flush_interval_s=3600.0, batch_size=10**9,
                        **_journal_kw(name))
        fn()  # warm-up
        cpu, wall = [], []
        for _ in range(repeats):
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu.append((time.process_time() - c0) / decisions * 1e6)
            wall.append((time.perf_counter() - w0) / decisions * 1e6)
        log._queue.clear()  # noqa: SLF001 - not written: only the request side is measured
        log._settled = log._accepted  # noqa: SLF001
        log.close()
        out.append({"variant": name, "cpu_us": statistics.median(cpu),
                    "wall_us": statistics.median(wall)})
    return out


def _records(count: int, nodes: int) -> list[Any]:
    from edge_allocator.store import DecisionRecord as Record
    from edge_allocator.store import utc_now

    DecisionRecord: Any = Record  # either version's
    states, values64 = _states(count, nodes, seed=1)
    if "node_values" in DecisionRecord.__dataclass_fields__:
        values = values64.astype(np.float32)
        return [DecisionRecord(**_fixed(nodes), created_at=utc_now(),
                               node_ids=[n["node_id"] for n in s["nodes"]],
                               node_values=values[i * nodes:(i + 1) * nodes])
                for i, s in enumerate(states)]
    return [DecisionRecord(**_fixed(nodes), created_at=utc_now(), nodes=s["nodes"])
            for i, s in enumerate(states)]


def _pg_scratch() -> tuple[Any, str] | None:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    admin = sa.create_engine(make_url(PG_URL).set(database="postgres"),
                             isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 2})
    name = f"log_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        admin.dispose()
        return None
    return admin, make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def _stored_bytes(engine: Any) -> int:
    import sqlalchemy as sa

    tables = [t for t in ("predictions", "network_metrics")
              if sa.inspect(engine).has_table(t)]
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            return sum(int(conn.scalar(sa.text(f"SELECT pg_total_relation_size('{t}')")))
                       for t in tables)
        # The whole file (page_size x page_count) once the WAL is checkpointed into it.
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        page = int(conn.exec_driver_sql("PRAGMA page_size").scalar() or 0)
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
        return page * pages


def _thread_cpu_s(native_id: int) -> float:
    """CPU seconds (user + system) of one thread of this process, by its native id."""
    import psutil

    for t in psutil.Process().threads():
        if t.id == native_id:
            return float(t.user_time + t.system_time)
    raise RuntimeError(f"no thread {native_id} in this process")


#: Pure-Python work per decision of the busy caller: about what an ingress spends on a
#: decision of a 256-state batch besides the log (benchmarks.batch_path).
BUSY_WORK_US = 60.0


def _spin(seconds: float) -> None:
    """Run Python (no GIL release) for ``seconds``: a request's parsing and assembly."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        for _ in range(200):
            n += 1


def throughput(count: int, nodes: int, tmp: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    targets: list[tuple[str, str, Any]] = [("sqlite", f"sqlite:///{tmp / 'bg-{}.db'}", None)]
    pg = _pg_scratch()
    if pg is not None:
        targets.append(("postgresql", pg[1], pg[0]))
    else:
        out.append({"database": "postgresql", "skipped": f"no server at {PG_URL}"})
    try:
        for name, url, _ in targets:
            for k, beside in enumerate(("idle caller", "busy caller")):
                records = _records(count, nodes)
                # SQLite: a file per run; PostgreSQL: one database, emptied after each run
                log = _open_log(url.format(k) if name == "sqlite" else url, tmp,
                                batch_size=500, flush_interval_s=0.05)
                log.flush(30)  # the schema is made before timing starts
                writer = log._thread.native_id
                c0, w0 = _thread_cpu_s(writer), time.perf_counter()
                for start in range(0, count, 256):  # one batch request at a time
                    if beside == "busy caller":
                        _spin(BUSY_WORK_US * 1e-6 * len(records[start:start + 256]))
                    for rec in records[start:start + 256]:
                        log.record(rec)
                ok = log.flush(300)
                wall, cpu = time.perf_counter() - w0, _thread_cpu_s(writer) - c0
                assert ok and log.pending().total == 0, "not everything was written"
                size = _stored_bytes(log.engine)
                if name == "postgresql":  # TRUNCATE frees the space (DELETE would not)
                    with log.engine.begin() as conn:
                        conn.exec_driver_sql("TRUNCATE predictions")
                log.close()
                out.append({"database": name, "beside": beside, "decisions": count,
                            "decisions_per_s": count / wall, "cpu_us": cpu / count * 1e6,
                            "bytes_per_decision": size / count})
    finally:
        if pg is not None:
            import sqlalchemy as sa
            with pg[0].connect() as conn:
                dbname = pg[1].rsplit("/", 1)[1]
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
            pg[0].dispose()
    return out


def child(args: argparse.Namespace) -> None:
    import edge_allocator

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        result = {
            "code": str(Path(edge_allocator.__file__).parent.parent),
            "request_path": request_path(args.decisions, args.nodes, args.repeats, tmp),
            "background": throughput(args.writes, args.nodes, tmp),
        }
    print(json.dumps(result))


# ------------------------------------------------------------------------ parent


def run_in(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import trees  # the parent's only: older trees lack it

    return trees.run_in(tree, __file__, [
        "--decisions", str(args.decisions), "--nodes", str(args.nodes),
        "--repeats", str(args.repeats), "--writes", str(args.writes)], timeout_s=300)


def markdown(runs: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"Decision log cost, {args.decisions} decisions of {args.nodes} nodes "
        f"(median of {args.repeats} repeats; `python -m benchmarks.log_bench"
        f"{' --before ' + args.before if args.before else ''}`)",
        "",
        "Request path: build the DecisionRecord + `DecisionLog.record()`, µs per decision",
        "",
        "| code | node states passed as | CPU µs | wall µs |",
        "|---|---|--:|--:|",
    ]
    for label, run in runs.items():
        for r in run["request_path"]:
            lines.append(f"| {label} | {r['variant']} | {r['cpu_us']:.1f} | {r['wall_us']:.1f} |")
    lines += [
        "",
        f"Background writer: {args.writes:,} decisions recorded at once, until flush() "
        "returns (batches of 500); an idle caller, or a busy one that runs 60 µs of Python "
        "per decision between batches of 256 (an ingress under load: alone it would do "
        "16,667 decisions/s); CPU of the writer thread alone",
        "",
        "| code | database | caller | decisions/s | writer CPU µs per decision "
        "| bytes stored per decision |",
        "|---|---|---|--:|--:|--:|",
    ]
    for label, run in runs.items():
        for r in run["background"]:
            if "skipped" in r:
                lines.append(f"| {label} | {r['database']} | | skipped: {r['skipped']} | | |")
                continue
            lines.append(f"| {label} | {r['database']} | {r.get('beside', 'idle caller')} | "
                         f"{r['decisions_per_s']:,.0f} | {r['cpu_us']:.1f} | "
                         f"{r['bytes_per_decision']:,.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", help="checkout of the code before packed node states")
    p.add_argument("--decisions", type=int, default=256)
    p.add_argument("--nodes", type=int, default=20)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--writes", type=int, default=5000)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    runs: dict[str, dict[str, Any]] = {}
    if args.before:
        runs["before"] = run_in(Path(args.before), args)
    runs["after"] = run_in(REPO, args)
    text = markdown(runs, args)
    print(text)
    from benchmarks import trees

    trees.write_results(RESULTS, "log_bench", text, runs, args)


if __name__ == "__main__":
    main()
