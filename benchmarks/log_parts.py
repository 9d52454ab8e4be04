"""Two parts of the decision log's cost, each alone: the state keys a batch request's
records carry (``StateBatch.keys``, on the request path) and the writer's SQLite insert
(``store.inserts.insert_records``) in a file of 4 KiB pages (SQLite's default, what a log
made before ``store.engine.SQLITE_PAGE_SIZE`` has) and of 64 KiB pages.

Keys: one 256-state batch of 20 nodes (``benchmarks.load.sample_bodies``), best of 7
repeats of 50 calls, µs per state. Insert: 40 batches of 256 decisions of 20 nodes into
a fresh file, one transaction per 4,096 records as the service's writer takes them, CPU
(``time.process_time``) per decision. In a tree that has packed scores (migration
0005), the same decisions are also inserted, at 64 KiB pages, and written as journal
lines (``store.journal.encode_batch``, 256 decisions a line), once with their scores as
JSON maps and once packed, side by side in the same round: the model's float32 scores
of the state's feasible nodes (``graph_batch.feasibility``), NaN elsewhere. With
``--before DIR`` the same script runs in another checkout too, trees alternating round
by round (``benchmarks.trees``):

    python -m benchmarks.log_parts [--rounds 5] [--before DIR]

Writes benchmarks/results/log_parts.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
STATES, NODES, BATCHES = 256, 20, 40
PAGE_SIZES = (4096, 65536)


def _batch() -> Any:
    import orjson

    from benchmarks.load import sample_bodies
    from edge_allocator.columnar import decode_batch

    batch, _ = decode_batch(orjson.loads(sample_bodies(1, nodes=NODES, seed=1,
                                                       batch=STATES)[0]))
    return batch


def _records(batch: Any, packed: bool = False) -> list[Any]:
    """BATCHES x STATES records of the batch's states, as a replica logs them; scores
    packed too if ``packed`` (a tree without them takes only the maps)."""
    import numpy as np

    from edge_allocator.store.records import RecordBatch, new_decision_ids, utc_now

    keys = batch.keys("hybrid", "2")
    ids = [batch.ids_of(i) for i in range(len(batch))]
    extra: dict[str, Any] = {}
    if "score_values" in RecordBatch.__dataclass_fields__:
        from edge_allocator.graph_batch import feasibility
        from edge_allocator.store.records import scores_map

        values = np.random.default_rng(0).normal(size=len(batch.values32)).astype(np.float32)
        values[~feasibility(batch)] = np.nan
        bounds = batch.offsets.tolist()
        scores = [scores_map(values[lo:hi], i) for lo, hi, i in zip(bounds, bounds[1:], ids)]
        extra = {"score_values": values} if packed else {}
    else:  # as before packed scores, for --before
        scores = [dict(zip(s, np.linspace(-1, 1, len(s)).tolist())) for s in ids]
    out: list[Any] = []
    for _ in range(BATCHES):
        out += RecordBatch(
            decision_ids=new_decision_ids(STATES), request_hashes=keys,
            created_at=utc_now(), model_name="hybrid", model_version="2", backend="onnx",
            node_ids=[s[0] for s in ids], node_index=[0] * STATES,
            confidence=[0.5] * STATES, scores=scores, latency_ms=1.0,
            state_node_ids=batch.node_ids, node_values=batch.values32,
            offsets=batch.offsets.tolist(), expected_ms=[3.0] * STATES,
            transfer_ms=[1.0] * STATES, **extra).records()
    return out


def _journal_us(records: list[Any]) -> float:
    """µs a decision to encode the records as journal lines, one per 256 (a request)."""
    from edge_allocator.store.journal import encode_batch

    chunks = [records[i:i + STATES] for i in range(0, len(records), STATES)]
    best = min(timeit.repeat(lambda: [encode_batch(c) for c in chunks], number=1, repeat=5))
    return best / len(records) * 1e6


def _insert_cpu_us(records: list[Any], page_size: int) -> float:
    from edge_allocator.store.engine import create_schema, make_engine
    from edge_allocator.store.inserts import insert_records

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.db"
        raw = sqlite3.connect(path)  # the page size is fixed once the file is written
        raw.execute(f"PRAGMA page_size={page_size}")
        raw.execute("VACUUM")
        raw.close()
        engine = make_engine(f"sqlite:///{path}")
        create_schema(engine)
        t0 = time.process_time()
        for start in range(0, len(records), 4096):
            with engine.begin() as conn:
                insert_records(conn, records[start:start + 4096])
        cpu = time.process_time() - t0
        with engine.connect() as conn:
            got = conn.exec_driver_sql("PRAGMA page_size").scalar()
        engine.dispose()
    if got != page_size:
        raise RuntimeError(f"the file has {got}-byte pages, not {page_size}")
    return cpu / len(records) * 1e6


def child() -> None:
    import edge_allocator

    batch = _batch()
    keys = min(timeit.repeat(lambda: batch.keys("hybrid", "2"), number=50, repeat=7))
    out = {"state keys, µs a state": keys / 50 / STATES * 1e6}
    records = _records(batch)
    for size in PAGE_SIZES:
        out[f"SQLite insert, {size // 1024} KiB pages, µs a decision"] = \
            _insert_cpu_us(records, size)
    from edge_allocator.store.records import RecordBatch

    if "score_values" in RecordBatch.__dataclass_fields__:
        packed = _records(batch, packed=True)
        for label, recs in (("scores as JSON maps", records), ("scores packed", packed)):
            out[f"SQLite insert, 64 KiB pages, {label}, µs a decision"] = \
                _insert_cpu_us(recs, 65536)
            out[f"journal line, {label}, µs a decision"] = _journal_us(recs)
    print(json.dumps({"code": str(Path(edge_allocator.__file__).parent.parent),
                      "cpu_us": out}))


def markdown(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    trees = list(runs)
    keys = list(dict.fromkeys(k for t in trees for k in runs[t][0]))  # a tree may lack some
    lines = [f"Median (lowest) of {args.rounds} rounds"
             + (", trees alternating" if len(trees) > 1 else "")
             + f"; {STATES} states of {NODES} nodes; inserts: {BATCHES * STATES:,} decisions "
             "into a fresh file", "",
             "| part | " + " | ".join(trees) + " |", "|---|" + "--:|" * len(trees)]
    for k in keys:
        cells = [f"{statistics.median(r[k] for r in runs[t]):.2f} "
                 f"({min(r[k] for r in runs[t]):.2f})" if k in runs[t][0] else "n/a"
                 for t in trees]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--before", help="a checkout to measure beside this one")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child()
        return
    from benchmarks import trees

    runs = trees.alternate(args.before, REPO, args.rounds,
                           lambda tree: trees.run_in(tree, __file__, [])["cpu_us"])
    text = markdown(runs, args)
    print(text)
    trees.write_results(RESULTS, "log_parts", text, runs, args)


if __name__ == "__main__":
    main()
