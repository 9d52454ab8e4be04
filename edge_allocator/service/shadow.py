"""Shadow scoring: a candidate model version decides the same states as the live one, off
the response path, and its decisions go to the decision log marked as shadow.

Why off the path, and bounded: the candidate is being evaluated, so nothing it does may
slow or fail a live answer. ``AllocatorApi`` only *offers* work after the live decision
is made and logged (a sampling draw and a deque append, O(1)); a worker task on the same
event loop scores it later:

* it yields to live traffic: a call starts only once no live request has been in the
  replica (``live_request``) for ``quiet_s``, waiting at most ``max_defer_s``; so a live
  request waits for shadow work only when it arrives during a shadow call (bounded,
  below). Under saturation the candidate gets one call per ``max_defer_s`` and the rest is
  dropped, counted: the live answer comes first;
* work gathers for ``gather_s``, then up to ``batch_states`` states of one candidate go
  through the chain's batch path (``Chain.decide_many``) in one model call per padded
  bucket: single requests are concatenated into one batch, a batch request of up to
  ``batch_states`` states is scored whole, a larger one in slices of that many (one
  call each, yielding between them). The bound is what bounds how long a shadow call
  holds the event loop that live requests also need;
* at most ``max_states`` states wait; work offered beyond that is dropped and counted,
  so a slow or stuck candidate never grows memory;
* a candidate that raises (not loaded, tampered, too many nodes for a flat model) fails
  only its own work: counted, logged at most once a minute per candidate;
* work whose candidate was replaced before it ran (a reconfigure) is dropped, not run
  on a version nobody asked for any more.

Shadow decisions never touch the decision cache, the live metrics (``Observer.decisions``
and ``latency``) or ``/v1/stats``; they are counted by ``Observer.shadow`` only. In the
log each carries its own id, the candidate's name and version, its choice, confidence
and scores, and ``shadow_of``: the live decision's id (node states are in that row).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np

from edge_allocator.columnar import StateBatch
from edge_allocator.constants import (
    SHADOW_BATCH_STATES,
    SHADOW_GATHER_S,
    SHADOW_MAX_DEFER_S,
    SHADOW_QUEUE_STATES,
    SHADOW_QUIET_S,
)
from edge_allocator.explorer_responses import ShadowTraffic
from edge_allocator.graph_batch import predicted_times
from edge_allocator.service.chain import Chain
from edge_allocator.service.columns import DecisionColumns
from edge_allocator.service.observe import Observer
from edge_allocator.service.routing import ShadowTarget
from edge_allocator.service.stages import AssembleMeta, ModelKey
from edge_allocator.store import DecisionLog, DecisionRecord, new_decision_ids, utc_now
from edge_allocator.store.records import empty_node_values

log = logging.getLogger(__name__)
#: A failing candidate is logged at most this often (it is counted every time).
FAILURE_LOG_EVERY_S = 60.0


class ShadowWork(NamedTuple):
    """Live decisions (one request's) waiting for the candidate."""

    live: ModelKey  # the version that answered
    target: ModelKey  # the candidate that is to score them
    batch: StateBatch  # the states as the live model saw them (speeds applied)
    live_ids: Sequence[str]  # the live decisions' ids, state order
    live_best: np.ndarray  # [B] node index each live decision chose


class ShadowCounts(NamedTuple):
    """What became of the work offered since this scorer started, in states."""

    agree: int
    disagree: int
    dropped: int
    failed: int
    queued: int


def concat_states(batches: Sequence[StateBatch]) -> StateBatch:
    """Several validated batches as one (state order kept), so many single requests go
    to the candidate in one model call. Lazily derived columns are remade."""
    if len(batches) == 1:
        return batches[0]
    sizes = np.concatenate([b.sizes for b in batches])
    offsets = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    declared = None
    if any(b.declared is not None for b in batches):
        width = next(b.declared for b in batches if b.declared is not None).shape[1]
        declared = np.concatenate([b.declared if b.declared is not None
                                   else np.full((len(b.values), width), np.nan)
                                   for b in batches])
    return StateBatch(
        values=np.concatenate([b.values for b in batches]), offsets=offsets,
        node_ids=[i for b in batches for i in b.node_ids],
        edges=[e for b in batches for e in b.edges],
        tasks=np.concatenate([b.tasks for b in batches]),
        models=[m for b in batches for m in b.models], declared=declared)


def slice_states(batch: StateBatch, lo: int, hi: int) -> StateBatch:
    """States ``lo:hi`` of ``batch`` (views of its arrays, offsets rebased)."""
    hi = min(hi, len(batch))
    start, end = int(batch.offsets[lo]), int(batch.offsets[hi])
    return StateBatch(
        values=batch.values[start:end], offsets=batch.offsets[lo:hi + 1] - start,
        node_ids=batch.node_ids[lo:hi], edges=batch.edges[lo:hi], tasks=batch.tasks[lo:hi],
        models=batch.models[lo:hi],
        declared=None if batch.declared is None else batch.declared[start:end])


class ShadowScorer:
    """The bounded queue and worker task of one ``AllocatorApi``.

    Args:
        chain: the live chain of stages (the candidate runs on the same policy port).
        decision_log: where shadow decisions go; None: counted only.
        observer: counts outcomes (``Observer.shadow``).
        current: the candidate now configured for a served model name (the router's
            ``shadow_of``), asked before work runs: work for a replaced candidate drops.
    """

    def __init__(self, chain: Chain, decision_log: DecisionLog | None, observer: Observer,
                 current: Callable[[str], ShadowTarget | None],
                 max_states: int = SHADOW_QUEUE_STATES,
                 batch_states: int = SHADOW_BATCH_STATES,
                 gather_s: float = SHADOW_GATHER_S,
                 max_defer_s: float = SHADOW_MAX_DEFER_S,
                 quiet_s: float = SHADOW_QUIET_S) -> None:
        if max_states < 1 or batch_states < 1 or min(gather_s, max_defer_s, quiet_s) < 0:
            raise ValueError(f"ShadowScorer: max_states={max_states} and batch_states="
                             f"{batch_states} must be >= 1, gather_s={gather_s}, "
                             f"max_defer_s={max_defer_s} and quiet_s={quiet_s} >= 0")
        self.chain = chain
        self.decision_log = decision_log
        self.observer = observer
        self.current = current
        self.max_states = max_states
        self.batch_states = batch_states
        self.gather_s = gather_s
        self.max_defer_s = max_defer_s
        self.quiet_s = quiet_s
        self.counts: Counter[str] = Counter()
        #: (model, candidate version, outcome) -> decisions, for /v1/stats
        self.by_version: Counter[tuple[str, str, str]] = Counter()
        self._live = 0  # live requests being decided now
        self._live_ended = 0.0  # time.monotonic() when the last one ended
        self._quiet: asyncio.Event | None = None  # set when _live drops to 0
        self._queue: deque[ShadowWork] = deque()
        self._queued = 0  # states in _queue
        self._running = 0  # states taken by the worker and not yet settled
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._logged_at: dict[ModelKey, float] = {}
        self._closed = False

    # --- the live side: O(1), never raises into the request ---------------------------
    @contextmanager
    def live_request(self) -> Iterator[None]:
        """Around every live request (the Ingress wraps each HTTP request whole, body read
        to answer encoded; ``AllocatorApi`` each decision, whatever its entry point): the
        worker starts no shadow call meanwhile, nor within ``quiet_s`` after."""
        self._live += 1
        try:
            yield
        finally:
            self._live -= 1
            if not self._live:
                self._live_ended = time.monotonic()
                if self._quiet is not None:
                    self._quiet.set()

    def offer(self, work: ShadowWork) -> None:
        """Queue ``work`` for the candidate, or drop it (counted) when the queue is full.
        Called on the event loop that serves requests, after the live answer is made."""
        n = len(work.batch)
        if self._closed or self._queued + self._running + n > self.max_states:
            self._count(work.live.name, work.target, "dropped", n)
            return
        step = self.batch_states
        if n <= step:
            self._queue.append(work)
        else:  # one call per slice: a long call would hold the loop live requests need
            self._queue.extend(ShadowWork(work.live, work.target, slice_states(work.batch, lo,
                                                                              lo + step),
                                          work.live_ids[lo:lo + step],
                                          work.live_best[lo:lo + step])
                               for lo in range(0, n, step))
        self._queued += n
        self._ensure_worker()
        assert self._wake is not None and self._idle is not None
        self._idle.clear()
        self._wake.set()

    def snapshot(self) -> ShadowCounts:
        c = self.counts
        return ShadowCounts(c["agree"], c["disagree"], c["dropped"], c["failed"],
                            self._queued + self._running)

    def traffic(self, targets: Sequence[tuple[str, str, float]]) -> list[ShadowTraffic]:
        """Per candidate: the configured ones (``targets``: model, version, share), and
        any replaced by a reconfigure that still has counts (share 0)."""
        shares = {(m, v): share for m, v, share in targets}
        keys = list(shares) + sorted({(m, v) for m, v, _ in self.by_version} - set(shares))
        out = []
        for m, v in keys:
            agree, disagree = self.by_version[(m, v, "agree")], self.by_version[(m, v, "disagree")]
            scored = agree + disagree
            out.append(ShadowTraffic(m, v, shares.get((m, v), 0.0), scored,
                                     agree / scored if scored else None,
                                     self.by_version[(m, v, "dropped")],
                                     self.by_version[(m, v, "failed")]))
        return out

    async def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything offered so far is settled (tests, benchmarks, shutdown);
        False on timeout."""
        if self._idle is None or self._task is None or self._task.done():
            return not self._queued
        return await _wait_event(self._idle, timeout_s)

    def close(self) -> None:
        """Stop the worker; work still queued is dropped (it is only an evaluation)."""
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop
            self._wake, self._idle, self._quiet = asyncio.Event(), asyncio.Event(), \
                asyncio.Event()
            self._task = loop.create_task(self._run(), name="shadow-scorer")

    # --- the worker ---------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake is not None and self._idle is not None
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()  # offer() appends, then sets it: no wake-up is lost
                await self._wake.wait()
                if self.gather_s:
                    await asyncio.sleep(self.gather_s)  # let a burst gather: fewer calls
                continue
            await self._yield_to_live()
            taken = self._take()
            try:
                await self._score(taken)
            except Exception:  # noqa: BLE001 - never let the worker die; the work is counted
                log.exception("shadow worker failed on %d states", self._running)
                self._count(taken[0].live.name, taken[0].target, "failed", self._running)
            finally:
                self._running = 0
            await asyncio.sleep(0)  # live requests that arrived meanwhile go first

    async def _yield_to_live(self) -> None:
        """Wait until no live request has been decided for ``quiet_s`` (the next request
        of a busy client comes within about a millisecond of the last answer: starting a
        call then would make it wait), at most ``max_defer_s`` in all."""
        deadline = time.monotonic() + self.max_defer_s
        while self._quiet is not None:
            now = time.monotonic()
            if now >= deadline:
                return  # saturated: one call anyway, so the candidate is not starved
            if self._live:
                self._quiet.clear()
                await _wait_event(self._quiet, deadline - now)
                continue
            calm = now - self._live_ended
            if calm >= self.quiet_s:
                return
            await asyncio.sleep(min(self.quiet_s - calm, deadline - now))

    def _take(self) -> list[ShadowWork]:
        """The oldest work of one candidate, up to ``batch_states`` states (``offer``
        sliced larger requests)."""
        first = self._queue.popleft()
        taken, n = [first], len(first.batch)
        while self._queue and self._queue[0].target == first.target \
                and n + len(self._queue[0].batch) <= self.batch_states:
            work = self._queue.popleft()
            taken.append(work)
            n += len(work.batch)
        self._queued -= n
        self._running = n
        return taken

    async def _score(self, taken: list[ShadowWork]) -> None:
        target = taken[0].target
        live_name = taken[0].live.name
        n = sum(len(w.batch) for w in taken)
        now = self.current(live_name)
        if now is None or ModelKey(now.name, now.version) != target:
            self._count(live_name, target, "dropped", n)  # reconfigured since offered
            return
        batch = concat_states([w.batch for w in taken])
        t0 = time.perf_counter()
        meta = AssembleMeta(target, n, t0, new_decision_ids(n), None)
        try:
            cols = await self.chain.decide_many(batch, meta)
        except Exception as exc:  # noqa: BLE001 - a failing candidate fails only itself
            self._count(live_name, target, "failed", n)
            self._log_failure(target, n, exc)
            return
        cols.latency_ms = (time.perf_counter() - t0) * 1000
        await self._yield_to_live()  # the log records are built in a turn of their own
        live_best = np.concatenate([w.live_best for w in taken])
        agree = int((cols.best == live_best).sum())
        self._count(live_name, target, "agree", agree)
        self._count(live_name, target, "disagree", n - agree)
        if self.decision_log is not None:
            live_ids = [i for w in taken for i in w.live_ids]
            self.decision_log.record_many(shadow_records(cols, batch, live_ids))

    def _count(self, model: str, target: ModelKey, outcome: str, n: int) -> None:
        if n:
            self.counts[outcome] += n
            self.by_version[(model, target.version, outcome)] += n
            self.observer.shadow(model, target.version, outcome, n)

    def _log_failure(self, target: ModelKey, n: int, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._logged_at.get(target, -FAILURE_LOG_EVERY_S) >= FAILURE_LOG_EVERY_S:
            self._logged_at[target] = now
            log.warning("shadow candidate %s v%s failed on %d states (%s: %s); live answers "
                        "are unaffected; failures so far: %d (logged at most once a minute)",
                        target.name, target.version, n, type(exc).__name__, exc,
                        self.counts["failed"])


async def _wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """``event.wait()`` for at most ``timeout_s``; whether it was set. Not
    ``asyncio.wait_for``: before Python 3.12 it swallows a cancellation that arrives as the
    event is set, and the worker then outlives ``close()`` (seen: a test hung there)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout_s)
    finally:
        waiter.cancel()
    return bool(done)


def shadow_records(cols: DecisionColumns, batch: StateBatch,
                   live_ids: Sequence[str]) -> list[DecisionRecord]:
    """The candidate's decisions as log records: their own ids, ``shadow_of`` the live
    decisions' ids, no node states (the live rows hold them)."""
    created = utc_now()
    model = cols.model
    keys = batch.keys(model.name, model.version)
    best, conf = cols.best.tolist(), cols.confidence.tolist()
    expected, transfer = predicted_times(batch, cols.best)
    empty = empty_node_values()
    return [DecisionRecord(
        decision_id=cols.decision_ids[i], created_at=created, model_name=model.name,
        model_version=model.version, backend=model.backend, node_id=cols.node_id(i),
        node_index=best[i], confidence=conf[i], scores=cols.scores_of(i),
        latency_ms=cols.latency_ms, request_hash=keys[i], cached=False, node_values=empty,
        expected_ms=float(expected[i]), transfer_ms=float(transfer[i]),
        shadow_of=live_ids[i]) for i in range(len(cols))]
