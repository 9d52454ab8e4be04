"""Cost per decision by stage of /v1/allocate/batch, in one process (no HTTP, no Ray):
the row path this service used before (pydantic objects, one graph per state, per-state
assembly, one dict per node in the log, CPython's default garbage collector settings)
against the columnar path it uses now (with the replicas' collector settings).

Same 256 states of 20 nodes from the simulator (JSON bytes as a client sends them), the
shipped hybrid model on ONNX Runtime, median of repeats, µs per state:

    python -m benchmarks.batch_path [--states 256] [--nodes 20] [--repeats 15]

Writes benchmarks/results/batch_path.{md,json}.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from edge_allocator.cache import request_key
from edge_allocator.columnar import decode_batch
from edge_allocator.config import ServiceConfig
from edge_allocator.graph import TopologyCache, build_graph
from edge_allocator.graph_batch import TopologyKeys, buckets, node_features
from edge_allocator.responses import BatchDecisions, ModelRef
from edge_allocator.runtime.gc_tuning import tune_gc
from edge_allocator.schema import NODE_FIELDS, BatchAllocateRequest, parse
from edge_allocator.service.columns import assemble_columns
from edge_allocator.service.routing import ModelRouter
from edge_allocator.service.stages import (
    AssembleMeta,
    ModelKey,
    PolicyStage,
    PreparedState,
    ResponseStage,
)
from edge_allocator.sim import EdgeAllocationEnv, EnvConfig
from edge_allocator.store import DecisionLog, DecisionRecord, new_decision_ids, utc_now
from edge_allocator.typed_bodies import _BATCH_JSON, _BATCH_MSGPACK
from edge_allocator.typed_bodies import _columns as typed_columns
from edge_allocator.wire import encode_msgpack

RESULTS = Path(__file__).parent / "results"
STAGES = ("parse", "validate", "features", "model", "assemble", "log", "serialise")


def sample_body(states: int, nodes: int) -> bytes:
    env = EdgeAllocationEnv(EnvConfig(min_nodes=nodes, max_nodes=nodes,
                                      tasks_per_episode=states + 1))
    env.reset(seed=0)
    out = []
    for _ in range(states):
        out.append(env.request_json())
        env.step(int(env.graph().mask.argmax()))
    return orjson.dumps({"states": out})


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def row_path(body: bytes, stage: PolicyStage, key: ModelKey, log: DecisionLog,
             topo: TopologyCache) -> dict[str, float]:
    """The path before columns: pydantic models, per-state graphs and assembly."""
    t: dict[str, float] = {}
    t["parse"], data = timed(lambda: orjson.loads(body))
    t["validate"], req = timed(lambda: parse(BatchAllocateRequest, data))
    t["features"], states = timed(lambda: [
        PreparedState(build_graph(s, s.task, topo), s.node_ids()) for s in req.states])
    t["model"], scores = timed(lambda: stage.run(key, [s.graph for s in states]))
    meta = AssembleMeta(key, len(states), time.perf_counter(),
                        tuple(uuid.uuid4().hex for _ in states))
    t["assemble"], out = timed(lambda: [
        ResponseStage._assemble(s, sc, meta, did, len(states), "onnx", "here")
        for s, sc, did in zip(states, scores, meta.decision_ids)])

    def log_rows() -> None:  # one dict per node and the payload's canonical hash, as before
        for d, s, payload in zip(out, req.states, data["states"]):
            ckey = request_key(payload, key.name, key.version)
            nodes = [{"node_id": nid, **{f: getattr(n, f) for f in NODE_FIELDS}}
                     for nid, n in zip(s.node_ids(), s.nodes)]
            log.record(DecisionRecord(
                decision_id=d.decision_id, created_at=utc_now(), model_name=key.name,
                model_version=key.version, backend="onnx", node_id=d.node_id,
                node_index=d.node_index, confidence=d.confidence, scores=d.scores,
                latency_ms=0.0, request_hash=ckey, node_ids=[n["node_id"] for n in nodes],
                node_values=[[n[f] for f in NODE_FIELDS] for n in nodes]))
    t["log"], _ = timed(log_rows)
    t["serialise"], _ = timed(lambda: orjson.dumps(BatchDecisions(out)))
    return t


def columnar_path(body: bytes, stage: PolicyStage, key: ModelKey, log: DecisionLog,
                  topo: TopologyKeys, fields: tuple[str, ...] | None = None,
                  typed: str | None = None) -> dict[str, float]:
    """``typed``: None decodes to dicts, then the fast checks; "json" or "msgpack"
    decodes ``body`` (in that format) with the typed structs, types checked while
    parsing: that time is under parse, the numpy range checks under validate."""
    t: dict[str, float] = {}
    if typed is None:
        t["parse"], data = timed(lambda: orjson.loads(body))
        t["validate"], (batch, _) = timed(lambda: decode_batch(data))
    else:
        decoder = _BATCH_MSGPACK if typed == "msgpack" else _BATCH_JSON
        t["parse"], req = timed(lambda: decoder.decode(body))
        t["validate"], batch = timed(lambda: typed_columns(req.states))

    def graphs() -> Any:
        x, mask = node_features(batch)
        return buckets(batch, topo, x, mask)
    t["features"], bks = timed(graphs)
    t["model"], scores = timed(lambda: stage.run_batches(key, [b.graphs for b in bks]))
    ids = new_decision_ids(len(batch))

    def assemble() -> Any:
        cols = assemble_columns(batch, bks, scores, ids, ModelRef(key.name, key.version,
                                                                  "onnx"), "here", 0.0)
        return cols, (cols.decisions() if fields is None else cols.rows(fields))
    t["assemble"], (cols, out) = timed(assemble)

    def log_rows() -> None:  # as AllocatorApi.decide_many records a batch
        now = utc_now()
        best, conf = cols.best.tolist(), cols.confidence.tolist()
        log.record_many([DecisionRecord(
            decision_id=ids[i], created_at=now, model_name=key.name,
            model_version=key.version, backend="onnx", node_id=cols.node_id(i),
            node_index=best[i], confidence=conf[i], scores=cols.scores_of(i),
            latency_ms=0.0, request_hash=batch.key(i, key.name, key.version),
            node_ids=batch.node_ids[i], node_values=batch.nodes32_of(i))
            for i in range(len(batch))])
    t["log"], _ = timed(log_rows)
    answer = BatchDecisions(out) if fields is None else {"decisions": out}
    t["serialise"], _ = timed(lambda: encode_msgpack(answer) if typed == "msgpack"
                              else orjson.dumps(answer))
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--states", type=int, default=256)
    p.add_argument("--nodes", type=int, default=20)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    cfg = ServiceConfig(database_url=None, cache="none")
    router = ModelRouter(cfg.models_dir, cfg.models, cfg.default_model)
    key = ModelKey(*router.pick("hybrid"))
    stage = PolicyStage(cfg.models_dir)
    stage.load([key])
    body = sample_body(args.states, args.nodes)
    packed = encode_msgpack(orjson.loads(body))
    tmp = Path(tempfile.mkdtemp(prefix="ea-batch-path-"))
    log = DecisionLog(f"sqlite:///{tmp / 'log.db'}", spool_path=tmp / "spool.jsonl")
    paths: dict[str, Callable[[], dict[str, float]]] = {
        "row (before)": lambda: row_path(body, stage, key, log, TopologyCache()),
        "columnar": lambda: columnar_path(body, stage, key, log, TopologyKeys(TopologyCache())),
        "columnar, fields=node_id,confidence": lambda: columnar_path(
            body, stage, key, log, TopologyKeys(TopologyCache()), ("node_id", "confidence")),
        "typed structs, JSON": lambda: columnar_path(
            body, stage, key, log, TopologyKeys(TopologyCache()), typed="json"),
        "typed structs, msgpack in and out": lambda: columnar_path(
            packed, stage, key, log, TopologyKeys(TopologyCache()), typed="msgpack"),
    }
    results: dict[str, dict[str, float]] = {}
    default_gc = gc.get_threshold()
    for name, run in paths.items():
        if name.startswith("row"):  # as before: CPython's default collector settings
            gc.unfreeze()
            gc.set_threshold(*default_gc)
        else:  # as the replicas run now (runtime/gc_tuning.py)
            tune_gc()
        run()  # warm-up: ONNX Runtime allocations, caches
        samples = [run() for _ in range(args.repeats)]
        log.flush()
        results[name] = {s: statistics.median(x[s] for x in samples) / args.states * 1e6
                         for s in STAGES}
        results[name]["total"] = sum(results[name][s] for s in STAGES)
    log.close()
    lines = [f"Cost per decision by stage, µs (median of {args.repeats}; {args.states} states "
             f"of {args.nodes} nodes, hybrid on ONNX Runtime, one process)", "",
             "| path | " + " | ".join(STAGES) + " | total | decisions/s/core |",
             "|---" * (len(STAGES) + 3) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[s]:.1f}" for s in STAGES)
                     + f" | {r['total']:.1f} | {1e6 / r['total']:,.0f} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch_path.md").write_text(table + "\n")
    (RESULTS / "batch_path.json").write_text(json.dumps(
        {"states": args.states, "nodes": args.nodes, "repeats": args.repeats,
         "us_per_decision": results}, indent=2))


if __name__ == "__main__":
    main()
