"""The v1 API as a plain class: validation, model routing, the decision cache, the chain
of stages, the decision log and feedback. The Ray Serve ingress routes HTTP requests
here; the CLI and the tests call it in-process with ``DirectPolicy``. Both therefore
behave identically (the golden test holds the served app to it)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_allocator.cache import DecisionCache, make_cache
from edge_allocator.columnar import StateBatch, decode_batch, decode_state
from edge_allocator.config import ServiceConfig
from edge_allocator.graph import NODE_TYPE_COLUMN
from edge_allocator.graph_batch import predicted_times
from edge_allocator.responses import (
    BatchDecisions,
    Decision,
    FeedbackReceipt,
    ModelRef,
    ModelsOverview,
    NodeSpeedInfo,
    NodeSpeedReset,
    Readiness,
)
from edge_allocator.schema import FeedbackRequest, RequestError, parse
from edge_allocator.service.auth import TokenAuth
from edge_allocator.service.chain import Chain
from edge_allocator.service.columns import DecisionColumns
from edge_allocator.service.node_speeds import NodeSpeeds
from edge_allocator.service.observe import (
    NODE_TYPE_NAMES,
    DecisionCounts,
    NullObserver,
    Observer,
)
from edge_allocator.service.quota import TokenBuckets
from edge_allocator.service.routing import ModelRouter
from edge_allocator.service.shadow import ShadowScorer, ShadowWork
from edge_allocator.service.stages import AssembleMeta, ModelKey
from edge_allocator.service.stats import ReplicaStats
from edge_allocator.speeds import applied_speeds, is_applied, observed_ratio
from edge_allocator.store import (
    PEER_POLL_S,
    DecisionLog,
    DecisionRecord,
    UnknownDecision,
    new_decision_id,
    utc_now,
)
from edge_allocator.store.runs import DecisionRun, new_run_ids
from edge_allocator.tracing import carrier, span
from edge_allocator.wire import columnar_batch, is_columnar

log = logging.getLogger(__name__)
#: Longest node id (as schema.Node allows).
MAX_NODE_ID_CHARS = 128
#: How long readiness waits for the policy to describe itself.
READINESS_TIMEOUT_S = 5.0
#: Records that wake a replica's log writer early (it also wakes every 0.5 s). 500, the
#: DecisionLog default, woke it every second batch request of 256 states; 4096 cut the
#: CPU per decision with the log on by 3-7 % in every body format, the log-off control
#: unchanged (``benchmarks/results/handler_cost.writer-batch.md``, medians of 9 rounds).
#: Most of it is the request thread's, which suggests fewer hand-overs of the GIL
#: between it and the writer (inferred).
DECISION_LOG_BATCH = 4096


def _make_cache(cfg: ServiceConfig) -> DecisionCache:
    if cfg.cache == "redis":
        return make_cache("redis", url=cfg.redis_url, ttl_s=cfg.cache_ttl_s)
    if cfg.cache == "local":
        return make_cache("local", max_entries=cfg.cache_entries, ttl_s=cfg.cache_ttl_s)
    return make_cache("none")


def _make_log(cfg: ServiceConfig, replica_tag: str) -> DecisionLog | None:
    if not cfg.database_url:
        return None
    if cfg.database_url.startswith("sqlite:///"):
        Path(cfg.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True,
                                                                       exist_ok=True)
    spool = cfg.spool_path.with_name(
        f"{cfg.spool_path.stem}.{replica_tag}{cfg.spool_path.suffix}")
    # every replica's spool is <stem>.<tag><suffix>: a replica adopts the journals and
    # spools its dead siblings left in that directory
    return DecisionLog(cfg.database_url, pool_size=cfg.db_pool_size, spool_path=spool,
                       batch_size=DECISION_LOG_BATCH, journal=cfg.decision_journal,
                       adopt_glob=f"{cfg.spool_path.stem}.*{cfg.spool_path.suffix}")


class AllocatorApi:
    """Every v1 endpoint; ``chain`` turns validated requests into decisions."""

    def __init__(self, cfg: ServiceConfig, chain: Chain, observer: Observer | None = None,
                 replica_tag: str = "main") -> None:
        self.cfg = cfg
        self.chain = chain
        self.observer: Observer = observer or NullObserver()
        self.started_at = time.time()
        self.auth = TokenAuth(cfg.auth_token_env, cfg.auth_token_file)
        self.quota = TokenBuckets(cfg.quota)
        self.router = ModelRouter(cfg.models_dir, cfg.models, cfg.default_model,
                                  aliases=cfg.aliases, shadow=cfg.shadow)
        self.cache = _make_cache(cfg)
        self.decision_log = _make_log(cfg, replica_tag)
        # a candidate version scoring live states off the response path (user_config shadow)
        self.shadow = ShadowScorer(chain, self.decision_log, self.observer,
                                   lambda name: self.router.shadow_of(name))
        self._shadow_rng = random.Random()
        self.stats = ReplicaStats(replica_tag)  # GET /v1/stats (the explorer's Live view)
        self.speeds = NodeSpeeds(cfg.node_speeds.params(), cfg.redis_url,
                                 refresh_s=cfg.node_speeds.refresh_s)

    def reconfigure(self, cfg: ServiceConfig) -> None:
        """Swap routing (model versions, A/B, shadow) atomically. Cache keys carry the model
        version, so an old version's answers are never served for the new one; the
        cache is cleared to free them. Tokens are read again (rotation: the new set
        applies to the next request) and quotas take the new rates. Store settings need
        a new replica."""
        self.router = ModelRouter(cfg.models_dir, cfg.models, cfg.default_model,
                                  aliases=cfg.aliases, shadow=cfg.shadow)
        auth = TokenAuth(cfg.auth_token_env, cfg.auth_token_file)
        self.auth = auth
        self.quota.reconfigure(cfg.quota)
        self.quota.forget_except(auth.fingerprints())
        self.cfg = cfg
        self.speeds.params = self.speeds.local.params = cfg.node_speeds.params()
        self.speeds.refresh_s = cfg.node_speeds.refresh_s
        self.cache.clear()

    # --- decisions ------------------------------------------------------------------------
    async def allocate(self, data: dict[str, Any]) -> Decision:
        """POST /v1/allocate: one state."""
        return await self.decide(decode_state(data), None, "/v1/allocate")

    async def allocate_batch(self, data: dict[str, Any]) -> BatchDecisions:
        """POST /v1/allocate/batch: every decision in full."""
        return BatchDecisions((await self.allocate_columns(data)).decisions())

    async def allocate_columns(self, data: dict[str, Any]) -> DecisionColumns:
        """POST /v1/allocate/batch (row or columnar shape) as decision columns."""
        batch, model = columnar_batch(data) if is_columnar(data) else decode_batch(data)
        return await self.decide_many(batch, model, "/v1/allocate/batch")

    async def decide(self, state: StateBatch, model: str | None, route: str) -> Decision:
        """The one state of ``state`` (a batch of one), through the cache."""
        with self.shadow.live_request():  # shadow work waits while live requests run
            return await self._decide(state, model, route)

    async def decide_many(self, batch: StateBatch, model: str | None,
                          route: str) -> DecisionColumns:
        """Every state of ``batch`` in one model call per padded bucket."""
        with self.shadow.live_request():
            return await self._decide_many(batch, model, route)

    async def _decide(self, state: StateBatch, model: str | None, route: str) -> Decision:
        t0 = time.perf_counter()
        key = self._route(model or state.models[0], state)
        ckey = state.key(0, key.name, key.version)
        hit = self.cache.get(ckey)
        self.observer.cache_lookup(hit is not None)
        self.stats.cache_lookup(hit is not None)
        if hit is not None:  # a new decision (own id, logged) that reuses the answer
            decision = Decision.from_dict(hit)
            decision.cached = True
            decision.decision_id = new_decision_id()
            decision.batch_size = 0  # no model call was made for it
            decision.latency_ms = (time.perf_counter() - t0) * 1000
        else:
            decision_id = new_decision_id()
            with span("ingress.allocate", decision_id=decision_id, model=key.name,
                      version=key.version):
                meta = AssembleMeta(key, 1, t0, (decision_id,), carrier())
                decision = await self.chain.decide_one(state, meta)
            decision.latency_ms = (time.perf_counter() - t0) * 1000
            self.cache.set(ckey, decision.to_dict())
        if self.decision_log is not None:
            d = decision
            expected, transfer = predicted_times(state, np.array([d.node_index]))
            self.decision_log.record(self._record(
                d.decision_id, d.model, d.node_id, d.node_index, d.confidence, d.scores,
                d.latency_ms, d.cached, state, 0, ckey, None, expected[0], transfer[0]))
        self._observe_one(decision, state, route, t0)
        self._offer_shadow(key, state, (decision.decision_id,),
                           np.array([decision.node_index]))
        return decision

    async def _decide_many(self, batch: StateBatch, model: str | None,
                           route: str) -> DecisionColumns:
        t0 = time.perf_counter()
        key = self._route(model or batch.models[0], batch)
        run_id, ids = new_run_ids(len(batch))
        with span("ingress.allocate_batch", model=key.name, version=key.version,
                  states=len(batch)):
            meta = AssembleMeta(key, len(batch), t0, ids, carrier())
            cols = await self.chain.decide_many(batch, meta)
        cols.latency_ms = (time.perf_counter() - t0) * 1000
        if self.decision_log is not None:  # one run: no per-decision objects at all
            expected, transfer = predicted_times(batch, cols.best)
            m = cols.model
            self.decision_log.record_run(DecisionRun(
                run_id=run_id, request_hashes=batch.key_digests(key.name, key.version),
                created_at=utc_now(),  # the batch's decisions: made together
                model_name=m.name, model_version=m.version, backend=m.backend,
                latency_ms=cols.latency_ms, node_ids=cols.node_ids(), node_index=cols.best,
                confidence=cols.confidence, state_node_ids=batch.node_ids,
                node_values=batch.values32, offsets=batch.offsets,
                score_values=cols.run_scores(), expected_ms=expected,
                transfer_ms=transfer))
        self._observe_many(cols, route, t0)
        self._offer_shadow(key, batch, cols.decision_ids, cols.best)
        return cols

    def _offer_shadow(self, key: ModelKey, batch: StateBatch, ids: Sequence[str],
                      best: np.ndarray) -> None:
        """The live decisions of one request to the model's shadow candidate, if it has
        one and the request is in the sampled share (a batch whole or not at all). After
        the answer is made and logged; the candidate scores later, off this path."""
        target = self.router.shadow_of(key.name)
        if target is None or (target.name, target.version) == key:
            return  # none, or this request's A/B draw is the candidate itself
        if target.share < 1.0 and self._shadow_rng.random() >= target.share:
            return
        self.shadow.offer(ShadowWork(key, ModelKey(target.name, target.version), batch, ids,
                                     best))

    def _route(self, name: str | None, batch: StateBatch) -> ModelKey:
        """The version that answers ``batch``, its learned speeds applied (before the
        cache key is made: a decision cached before a node was learned about is not
        served after). With ``models.<name>.feedback_version``, a batch some node of which
        is known (or declares ``observed_speed``) goes to that version with every
        estimate applied, and the rest (cold starts) to the routed version."""
        key = ModelKey(*self.router.pick(name))
        speed = self._learned_speeds(batch)
        warm = self.router.feedback_version(key.name)
        if warm is not None and (speed is not None or batch.declares_speed()):
            key, beyond = ModelKey(key.name, warm), 1.0
        else:
            beyond = self.cfg.node_speeds.apply_beyond
        if speed is not None:
            speed = applied_speeds(speed, beyond)
            if (speed != 1.0).any():  # else the states stay as sent (and keyed as sent)
                batch.fill_speeds(speed)
        return key

    def _learned_speeds(self, batch: StateBatch) -> np.ndarray | None:
        """[T] what feedback taught about every node of ``batch``, None while no node of
        it is known (or speeds are not applied)."""
        now = time.time()
        if not self.cfg.node_speeds.apply or not self.speeds.any_known(now):
            return None  # the usual case: no id list (5,120 strings for 256 states of 20)
        ids = [nid for i in range(len(batch)) for nid in batch.ids_of(i)]
        return self.speeds.speeds(ids, now)

    def _observe_one(self, d: Decision, state: StateBatch, route: str, t0: float) -> None:
        node_type = NODE_TYPE_NAMES[int(state.values[d.node_index, NODE_TYPE_COLUMN])]
        self.observer.decisions(DecisionCounts(
            {(d.model.name, d.model.version, d.model.backend, node_type, d.cached): 1}))
        elapsed_ms = (time.perf_counter() - t0) * 1000
        self.observer.latency(d.model.name, route, elapsed_ms)
        self.stats.decisions(d.model.name, d.model.version, 1, d.batch_size, elapsed_ms)

    def _observe_many(self, cols: DecisionColumns, route: str, t0: float) -> None:
        rows = cols.batch.offsets[:-1] + cols.best
        types = np.bincount(cols.batch.values[rows, NODE_TYPE_COLUMN].astype(np.int64),
                            minlength=len(NODE_TYPE_NAMES))
        m = cols.model
        self.observer.decisions(DecisionCounts(
            {(m.name, m.version, m.backend, NODE_TYPE_NAMES[t], False): int(n)
             for t, n in enumerate(types.tolist()) if n}))
        elapsed_ms = (time.perf_counter() - t0) * 1000
        self.observer.latency(m.name, route, elapsed_ms)
        self.stats.decisions(m.name, m.version, len(cols.batch), len(cols.batch), elapsed_ms)

    @staticmethod
    def _record(decision_id: str, model: ModelRef, node_id: str, node_index: int,
                confidence: float, scores: dict[str, float], latency_ms: float, cached: bool,
                batch: StateBatch, i: int, ckey: str,
                created_at: datetime | None = None, expected_ms: float | None = None,
                transfer_ms: float | None = None) -> DecisionRecord:
        return DecisionRecord(
            decision_id=decision_id, created_at=created_at or utc_now(),
            model_name=model.name,
            model_version=model.version, backend=model.backend, node_id=node_id,
            node_index=node_index, confidence=confidence, scores=scores,
            latency_ms=latency_ms, request_hash=ckey, cached=cached,
            node_ids=batch.node_ids[i], node_values=batch.nodes32_of(i),
            expected_ms=None if expected_ms is None else float(expected_ms),
            transfer_ms=None if transfer_ms is None else float(transfer_ms))

    # --- feedback -------------------------------------------------------------------------
    async def feedback(self, data: dict[str, Any]) -> FeedbackReceipt:
        """Feedback on a decision another replica made a moment ago may reach this one
        before that replica's writer has written it: look again until it may have, each
        try a short database call in a thread, sleeping between them on the event loop.
        A thread sleeping out the window (as the store's own wait does) let a client
        sending fresh-looking made-up ids hold the default pool (6 threads here) for 3 s
        a request."""
        fb = parse(FeedbackRequest, data)
        again = False
        while True:
            try:
                receipt = await asyncio.to_thread(self._feedback, fb, again)
                break
            except UnknownDecision as exc:
                if exc.retry_until is None or time.time() >= exc.retry_until:
                    raise RequestError(404, f"decision_id {fb.decision_id!r} is unknown",
                                       [{"loc": "decision_id", "msg": "unknown decision"}]
                                       ) from None
                await asyncio.sleep(PEER_POLL_S)
                again = True
        self.observer.feedback(fb.success, fb.completion_ms)
        return receipt

    def _feedback(self, fb: FeedbackRequest, again: bool) -> FeedbackReceipt:
        if self.decision_log is None:
            raise RequestError(503, "feedback needs a decision log (database_url is not set)")
        stored = self.decision_log.record_outcome(fb.decision_id, fb.completion_ms,
                                                  fb.success, fb.energy_j,
                                                  wait_for_peers=False, again=again)
        # learn the node's speed from a successful completion (a failed task's time says
        # nothing about the node's speed); decisions logged before 0003 predicted nothing
        if fb.success and fb.completion_ms is not None and stored.expected_ms is not None:
            ratio = observed_ratio(fb.completion_ms, stored.transfer_ms or 0.0,
                                   stored.expected_ms)
            if ratio is not None:
                self.speeds.observe(stored.node_id, ratio)
        return FeedbackReceipt(fb.decision_id, True)

    # --- node speeds ----------------------------------------------------------------------
    def node_speed(self, node_id: str) -> NodeSpeedInfo:
        """GET /v1/nodes/{node_id}."""
        est = self.speeds.get(_check_node_id(node_id))
        now, params = time.time(), self.speeds.params
        speed = est.speed(now, params) if est else 1.0
        cfg = self.cfg.node_speeds
        return NodeSpeedInfo(
            node_id, speed, est.confidence(now, params) if est else 0.0,
            est.count if est else 0, est.updated_at if est else None,
            cfg.apply and bool(is_applied(speed, cfg.apply_beyond)), self.speeds.source)

    def reset_node_speed(self, node_id: str) -> NodeSpeedReset:
        """DELETE /v1/nodes/{node_id}."""
        reset = self.speeds.reset(_check_node_id(node_id))
        self.cache.clear()  # decisions made with the old estimate must not be served
        return NodeSpeedReset(node_id, reset)

    # --- operations -----------------------------------------------------------------------
    async def models(self) -> ModelsOverview:
        return ModelsOverview(
            self.cfg.default_model,
            {n: self.cfg.models[n].model_dump() for n in self.router.names()},
            await self.chain.policy.describe(),
            {n: spec.model_dump() for n, spec in self.cfg.shadow.items()})

    async def readiness(self) -> Readiness:
        """Ready when every routed version is loaded and none failed to load."""
        try:
            described = await asyncio.wait_for(self.chain.policy.describe(),
                                               READINESS_TIMEOUT_S)
            failures = await asyncio.wait_for(self.chain.policy.failures(),
                                              READINESS_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - readiness says why, whatever it is
            why = exc.message if isinstance(exc, RequestError) else f"{type(exc).__name__}: {exc}"
            return Readiness("not ready", reason=why[:2000])
        loaded = {(d.name, d.version) for d in described}
        live = self.router.versions_in_use()
        missing = [f"{n} v{v}" for n, v in live if (n, v) not in loaded]
        # a shadow candidate that failed to load never makes the replica unready: its
        # failures are counted and logged where it scores (service.shadow)
        served = {f"{n} v{v}" for n, v in live}
        failures = {k: why for k, why in failures.items() if k in served}
        if failures or missing:
            why = "; ".join(f"{k}: {v}" for k, v in failures.items())
            return Readiness("not ready", reason=f"models not loaded: {missing}. {why}"[:2000])
        return Readiness("ready", models=described)

    def close(self) -> None:
        self.shadow.close()
        if self.decision_log is not None:
            self.decision_log.close()
        self.speeds.close()


def _check_node_id(node_id: str) -> str:
    if not 1 <= len(node_id) <= MAX_NODE_ID_CHARS:
        raise RequestError(422, f"node_id: 1 to {MAX_NODE_ID_CHARS} characters, got "
                           f"{len(node_id)}", [{"loc": "node_id", "msg": "bad length"}])
    return node_id
