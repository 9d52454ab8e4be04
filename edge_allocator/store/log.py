"""The decision log: every decision written to a database without slowing the request.

``record()`` only appends to an in-memory list; one background thread writes what has
gathered in bulk every ``flush_interval_s`` (or as soon as ``batch_size`` records wait).
When the database fails, batches go to the fsync'd spool file instead and the thread
retries with exponential backoff; once the database answers again the spool is replayed
in order, exactly once, before anything newer is written. A record accepted by
``record()`` is therefore always in one of three places: the queue, the spool, or the
database (or, if the database rejects its data outright, the spool's ``.rejected`` file).
While it is in the queue it is also in the journal (``store.journal``), so a process
killed outright loses nothing it accepted: a DecisionLog started later beside it (the
replacement replica, or a sibling with ``adopt_glob``) writes what it left.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from edge_allocator.constants import DATABASE_URL, SPOOL_PATH
from edge_allocator.store.browse import DecisionRow, recent_decisions
from edge_allocator.store.engine import (
    DATA_ERRORS,
    create_schema,
    describe_error,
    make_engine,
    safe_url,
)
from edge_allocator.store.inserts import LogItem, decisions_in, insert_items, item_key
from edge_allocator.store.journal import Journal, journal_files, read_journal
from edge_allocator.store.records import (
    HEX_ID_CHARS,
    DecisionRecord,
    decision_id_time,
    utc_now,
)
from edge_allocator.store.report import ReportRow, build_report
from edge_allocator.store.runs import (
    DecisionRun,
    chunked,
    is_run_decision,
    split_run_decision,
    unpack_run_choice,
)
from edge_allocator.store.shadow_report import ShadowRow, build_shadow_report
from edge_allocator.store.spool import Spool
from edge_allocator.store.tables import decision_runs, feedback, predictions

log = logging.getLogger(__name__)


class FeedbackStored(NamedTuple):
    """A stored feedback row and what its decision predicted for the chosen node (None
    for decisions logged before migration 0003)."""

    feedback_id: int
    node_id: str
    expected_ms: float | None
    transfer_ms: float | None

#: The service's defaults (``constants``, overridable by environment), not a second set.
DEFAULT_DB_URL = DATABASE_URL
DEFAULT_SPOOL_PATH = SPOOL_PATH
#: How long flush() waits by default for the queue to reach the database or the spool.
FLUSH_TIMEOUT_S = 10.0
#: How long close() waits for the final flush before giving up (and saying how many
#: records it could not place).
CLOSE_TIMEOUT_S = 30.0
#: First wait before retrying an unavailable database; doubles up to RETRY_MAX_S.
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0
#: How often the writer looks for journals and spools of dead DecisionLogs to adopt.
ADOPT_EVERY_S = 30.0


class UnknownDecision(KeyError):
    """Feedback names a decision id that the log has never stored."""

    def __init__(self, decision_id: str, retry_until: float | None = None) -> None:
        super().__init__(decision_id)
        self.decision_id = decision_id
        self.retry_until = retry_until
        """With ``record_outcome(wait_for_peers=False)``: the id is young enough that
        another replica's writer may still write it, up to this time (epoch seconds);
        the caller may look again until then. None: it will not appear."""

    def __str__(self) -> str:
        return f"unknown decision id {self.decision_id!r}"


class StoreUnavailable(RuntimeError):
    """A synchronous operation (feedback, report) could not reach the database.

    The message names the database with its password masked.
    """


class Pending(NamedTuple):
    """Records accepted but not yet in the database."""

    queued: int
    """In memory: waiting for the writer thread or being written now."""
    spooled: int
    """In the spool file, waiting for the database to come back."""

    @property
    def total(self) -> int:
        return self.queued + self.spooled


def _is_data_error(err: BaseException) -> bool:
    # A StatementError that is not a DBAPIError failed while binding parameters (wrong
    # type, naive datetime): bad data too, not an outage.
    return isinstance(err, DATA_ERRORS) or (
        isinstance(err, exc.StatementError) and not isinstance(err, exc.DBAPIError)
    )


def _drop_tracebacks(err: BaseException) -> None:
    """Cut a handled failure's tracebacks (its own and its causes'). Driver errors wrapped
    by SQLAlchemy form reference cycles through their frames, which hold the batch being
    written; with the replicas' deferred collector (``runtime.gc_tuning``) such a cycle
    would keep that batch alive long after the retry."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = None
        todo += [e.__cause__, e.__context__]


#: How long after a decision was made feedback on it may still find it unwritten: the
#: writers of the other replicas sharing the database write every ``flush_interval_s``
#: (0.5 s by default) or when a batch fills, so a few seconds cover them under load.
PEER_WRITE_WINDOW_S = 3.0
#: How often feedback on such a decision looks for it again.
PEER_POLL_S = 0.05


def peer_write_deadline(decision_id: str) -> float | None:
    """Until when (epoch seconds) a decision with this id, not found, may still be written
    by another replica; None for an id too old (or not a UUIDv7 of ours) to appear."""
    made, now = decision_id_time(decision_id), time.time()
    if made is None or not now - PEER_WRITE_WINDOW_S <= made <= now + 1.0:
        return None
    return made + PEER_WRITE_WINDOW_S


def _decided(conn: Any, decision_id: str) -> tuple[str, float | None, float | None] | None:
    """(node id, expected ms, transfer ms) of the live decision ``decision_id``, None if
    there is none: a run's by its run's primary key, any other's by its own. A shadow
    decision was never answered, so no feedback can be about it."""
    if is_run_decision(decision_id):
        run_id, index = split_run_decision(decision_id)
        r = decision_runs.c
        row = conn.execute(sa.select(r.decision_count, r.chosen_ids, r.expected_ms,
                                     r.transfer_ms).where(r.run_id == run_id)).first()
        if row is not None and index < row.decision_count:
            return unpack_run_choice(row, index)
    p = predictions.c  # ids of logs written before runs may carry a run's mark
    found = conn.execute(sa.select(p.node_id, p.expected_ms, p.transfer_ms)
                         .where(p.decision_id == decision_id, p.shadow_of.is_(None))).first()
    return None if found is None else (found.node_id, found.expected_ms, found.transfer_ms)


def _check_measure(name: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"record_feedback: {name} must be a finite number >= 0, got {value!r}")


class DecisionLog:
    """Asynchronous, crash-tolerant log of decisions, plus feedback and reporting.

    Args:
        url: SQLAlchemy URL: ``sqlite:///path.db`` (default) or
            ``postgresql+psycopg://user:pw@host/db``. The schema is migrated on start.
        pool_size: connections kept open (PostgreSQL; SQLite ignores it).
        spool_path: JSON-lines file that holds batches while the database is down.
            Each DecisionLog needs its own (a lock file enforces it; ValueError if
            another holds it).
        batch_size: records per bulk insert; reaching it wakes the writer early.
        flush_interval_s: how often the writer writes what has gathered.
        journal: also append each record to a journal file as it is queued
            (``edge_allocator.store.journal``), so a process killed outright loses
            none of the records it accepted; off, the queue dies with the process.
        adopt_glob: spool files of other DecisionLogs in the same directory
            (e.g. ``decisions.*.jsonl``, one per replica) whose journals and spools this
            one takes over once their owner is gone (its lock released): what a killed
            replica accepted reaches the database through its replacement or a sibling.

    Use as a context manager, or call :meth:`close` on shutdown.
    """

    def __init__(
        self,
        url: str = DEFAULT_DB_URL,
        pool_size: int = 5,
        spool_path: str | Path = DEFAULT_SPOOL_PATH,
        batch_size: int = 500,
        flush_interval_s: float = 0.5,
        journal: bool = True,
        adopt_glob: str | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"DecisionLog pool_size must be >= 1, got {pool_size}")
        if batch_size < 1:
            raise ValueError(f"DecisionLog batch_size must be >= 1, got {batch_size}")
        if not flush_interval_s > 0:
            raise ValueError(f"DecisionLog flush_interval_s must be > 0, got {flush_interval_s}")
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._engine = make_engine(url, pool_size)
        try:
            self._spool = Spool(spool_path)
            self._journal = Journal(self._spool.path) if journal else None
        except BaseException:
            self._engine.dispose()
            raise
        self._sealed: list[Path] = []  # journal files whose records are not all placed
        self._adopt_glob = adopt_glob
        self._next_adopt = 0.0

        self._lock = threading.Lock()
        self._settled_cv = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._queue: list[LogItem] = []
        self._accepted = 0  # decisions ever accepted by record()
        self._queued = 0  # decisions in _queue
        self._settled = 0  # of those, written, spooled or rejected (always a prefix)
        self._flush_requested = 0
        self._flush_served = 0
        self._closed = False
        self._stop = False

        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._retry_s = 0.0
        self._retry_at = 0.0
        self._outage_since: float | None = None
        try:
            self._ensure_schema()
        except Exception as err:  # an outage at start must not stop the service
            self._note_failure(err)

        self._thread = threading.Thread(target=self._run, name="decision-log-writer", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- public API

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return safe_url(self._engine)

    @property
    def spool_path(self) -> Path:
        return self._spool.path

    def record(self, rec: DecisionRecord) -> None:
        """Queue one decision for writing; returns at once (no I/O)."""
        self.record_many([rec])

    def record_run(self, run: DecisionRun) -> None:
        """Queue the decisions of one batch request as one run (``store.runs``): one
        journal line, one row, whatever its size."""
        self.record_many([run])

    def record_many(self, recs: Sequence[LogItem]) -> None:
        """Queue decisions at once: one lock, one wake-up."""
        with self._lock:
            if self._closed:
                raise RuntimeError("DecisionLog is closed; record() after close() is lost")
            if self._journal is not None:
                try:
                    self._journal.append(recs)
                except OSError as err:  # never fail a request over it: the queue holds them
                    log.error("decision log cannot append to journal %s: %s",
                              self._journal.current, err)
            self._queue.extend(recs)
            n = decisions_in(recs)
            self._accepted += n
            self._queued += n
            full = self._queued >= self.batch_size
        if full:
            self._wake.set()

    def pending(self) -> Pending:
        """How many accepted records are not in the database yet, and where they are.

        While a batch is being moved to the spool it may count in both for an instant.
        """
        with self._lock:
            return Pending(queued=self._accepted - self._settled, spooled=self._spool.count)

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
        """Block until every record queued so far is written or spooled.

        Also makes the writer try to replay the spool now rather than after its backoff.
        Returns False if that did not happen within ``timeout_s`` (the spool itself is
        failing, or the database hangs).
        """
        with self._lock:
            target = self._accepted
            self._flush_requested += 1
            ticket = self._flush_requested
        self._wake.set()
        with self._settled_cv:
            return self._settled_cv.wait_for(
                lambda: (self._flush_served >= ticket or not self._thread.is_alive())
                and self._settled >= target,
                timeout=timeout_s,
            )

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Refuse new records, flush, stop the writer and release the connections."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.flush(timeout_s)
        with self._lock:
            self._stop = True
        self._wake.set()
        self._thread.join(timeout_s)
        left = self.pending()
        if left.queued:
            log.error("decision log closed with %d records neither written nor spooled; "
                      "they stay in its journal for the next start", left.queued)
        elif self._journal is not None:
            with self._lock:
                Journal.discard(self._sealed)
                self._journal.close()
        if left.spooled:
            log.warning("decision log closed with %d records in spool %s; they are replayed "
                        "on the next start", left.spooled, self._spool.path)
        self._engine.dispose()
        self._spool.release()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def record_feedback(
        self,
        decision_id: str,
        completion_ms: float | None,
        success: bool,
        energy_j: float | None = None,
    ) -> int:
        """Store the observed outcome of a decision now; returns the feedback row id
        (``record_outcome`` for what the decision predicted, too)."""
        return self.record_outcome(decision_id, completion_ms, success, energy_j).feedback_id

    def record_outcome(
        self,
        decision_id: str,
        completion_ms: float | None,
        success: bool,
        energy_j: float | None = None,
        *,
        wait_for_peers: bool = True,
        again: bool = False,
    ) -> FeedbackStored:
        """Store the observed outcome of a decision now; returns the feedback row id and
        what the decision predicted for its node (what the speed estimate learns from).

        ``wait_for_peers``: for a young id not found, look again in this thread until
        another replica's writer may have written it (:func:`peer_write_deadline`). An
        async caller passes False and looks again itself (``UnknownDecision.retry_until``)
        without holding a thread while it waits, with ``again=True``: its first try
        flushed this log's own queue (ids made since are other decisions), so a later
        look asks only the database and never wakes the writer early.

        Raises:
            UnknownDecision: no decision with this id (after flushing pending records,
                so a decision made a moment ago is found).
            StoreUnavailable: the database cannot be reached.
            ValueError: a negative or non-finite measurement.
        """
        _check_measure("completion_ms", completion_ms)
        _check_measure("energy_j", energy_j)
        if not (isinstance(decision_id, str) and len(decision_id) == HEX_ID_CHARS):
            raise UnknownDecision(decision_id)
        row = {
            "decision_id": decision_id,
            "received_at": utc_now(),
            "completion_ms": completion_ms,
            "success": bool(success),
            "energy_j": energy_j,
        }
        stored = self._insert_feedback(row)
        if stored is None and not again and self.pending().total:
            self.flush()
            stored = self._insert_feedback(row)
        # A decision made a moment ago by another replica sits in that replica's queue
        # until its writer's next write (every 0.5 s by default, sooner when a batch
        # fills): for an id young enough, look again until that write is due. The id
        # says when it was made (UUIDv7), so an old or made-up id is refused at once.
        deadline = peer_write_deadline(decision_id) if stored is None else None
        if deadline is not None and wait_for_peers:
            while stored is None and time.time() < deadline:
                time.sleep(PEER_POLL_S)
                stored = self._insert_feedback(row)
        if stored is None:
            raise UnknownDecision(decision_id, None if wait_for_peers else deadline)
        return stored

    def report(
        self, session: Session | None = None, *, since: datetime | None = None
    ) -> list[ReportRow]:
        """Per-model summary (see :class:`ReportRow`), after flushing pending records.

        Args:
            session: run the queries in this session (e.g. the caller's transaction);
                by default on a connection of the log's own engine.
            since: only decisions at or after this timezone-aware time.
        """
        self.flush()
        try:
            self._ensure_schema()
            if session is not None:
                return build_report(session, since)
            with self._engine.connect() as conn:
                return build_report(conn, since)
        except exc.SQLAlchemyError as err:
            raise StoreUnavailable(f"cannot build report: {describe_error(self._engine, err)}") \
                from None

    def shadow_report(self, *, since: datetime | None = None) -> list[ShadowRow]:
        """Live against shadow per (model, live version, candidate version) (see
        :class:`ShadowRow`), after flushing pending records."""
        self.flush()
        try:
            self._ensure_schema()
            with self._engine.connect() as conn:
                return build_shadow_report(conn, since)
        except exc.SQLAlchemyError as err:
            raise StoreUnavailable(
                f"cannot build shadow report: {describe_error(self._engine, err)}") from None

    def recent(self, limit: int, id_prefix: str | None = None) -> list[DecisionRow]:
        """The latest ``limit`` decisions (those whose id starts with ``id_prefix``, a
        lowercase hex string), newest first, with their feedback; after flushing pending
        records, so a decision made a moment ago is there."""
        self.flush()
        try:
            self._ensure_schema()
            with self._engine.connect() as conn:
                return recent_decisions(conn, limit, id_prefix)
        except exc.SQLAlchemyError as err:
            raise StoreUnavailable(f"cannot read decisions: {describe_error(self._engine, err)}") \
                from None

    # ------------------------------------------------------------- database side

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                create_schema(self._engine)
                self._schema_ready = True

    def _insert_feedback(self, row: dict[str, object]) -> FeedbackStored | None:
        try:
            self._ensure_schema()
            with self._engine.begin() as conn:
                found = _decided(conn, str(row["decision_id"]))
                if found is None:
                    return None
                result = conn.execute(sa.insert(feedback).values(row))
                # Typed Optional; always a Row after a single-row INSERT.
                inserted: Any = result.inserted_primary_key
                return FeedbackStored(int(inserted[0]), *found)
        except exc.SQLAlchemyError as err:
            raise StoreUnavailable(
                f"cannot record feedback: {describe_error(self._engine, err)}"
            ) from None

    def _note_failure(self, err: BaseException) -> None:
        now = time.monotonic()
        self._retry_s = min(RETRY_MAX_S, self._retry_s * 2 if self._retry_s else RETRY_INITIAL_S)
        self._retry_at = now + self._retry_s
        if self._outage_since is None:
            self._outage_since = now
            log.warning("decision log database unavailable (%s); spooling to %s and retrying",
                        describe_error(self._engine, err), self._spool.path)
        else:
            log.debug("decision log database still unavailable (%s); next try in %.1f s",
                      describe_error(self._engine, err), self._retry_s)
        _drop_tracebacks(err)  # the failure is handled: its frames must not hold data

    def _note_success(self) -> None:
        if self._outage_since is not None:
            log.warning("decision log database %s back after %.1f s", self.url,
                        time.monotonic() - self._outage_since)
        self._outage_since = None
        self._retry_s = 0.0
        self._retry_at = 0.0

    def _write(self, batch: list[LogItem]) -> bool:
        """Insert ``batch`` in one transaction; False if the database is unavailable.

        Data the database refuses (a constraint, a value of the wrong type) is isolated
        record by record so that one bad record cannot hold the others back forever.
        """
        try:
            self._ensure_schema()
            with self._engine.begin() as conn:
                insert_items(conn, batch)
        except Exception as err:
            if _is_data_error(err) and len(batch) > 1:
                return self._write_each(batch)
            if _is_data_error(err):
                return self._reject(batch, err)
            self._note_failure(err)
            return False
        self._note_success()
        return True

    def _reachable(self) -> bool:
        """One round trip (``SELECT 1``) before a replay reads the spool back: while the
        database is down, each retry would otherwise parse a batch of spooled records
        only to drop them. In the soak that churn, every retry of a 30-s PostgreSQL cut,
        left each ingress replica ~10 MiB larger for good (freed small objects whose
        allocator arenas stay pinned), though its Python heap came back."""
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as err:
            self._note_failure(err)
            return False
        return True

    def _write_each(self, batch: list[LogItem]) -> bool:
        # After an outage mid-way the whole batch is spooled; the records already written
        # are skipped on replay, so nothing is stored twice.
        return all(self._write([rec]) for rec in batch)

    def _reject(self, batch: list[LogItem], err: BaseException) -> bool:
        try:
            self._spool.reject(batch)
        except OSError as io_err:
            self._note_failure(io_err)
            return False
        log.error("decision log: database refused decision %s (%s); kept in %s",
                  item_key(batch[0]), describe_error(self._engine, err),
                  self._spool.rejected_path)
        return True

    # ------------------------------------------------------------- writer thread

    def _run(self) -> None:
        while True:
            if time.monotonic() >= self._next_adopt and not self._stop:
                try:
                    self._adopt()
                except Exception:
                    log.exception("decision log could not adopt journals; trying later")
                self._next_adopt = time.monotonic() + ADOPT_EVERY_S
            self._wake.wait(self.flush_interval_s)
            with self._lock:
                self._wake.clear()
                batch, self._queue, self._queued = self._queue, [], 0
                ticket, stop = self._flush_requested, self._stop
                if self._journal is not None:
                    sealed = self._journal.seal()
                    if sealed is not None:
                        self._sealed.append(sealed)
            forced = ticket > self._flush_served or stop
            try:
                done = self._cycle(batch, forced)
            except Exception:  # never let the writer die holding records
                log.exception("decision log writer failed; retrying its batch")
                done = 0
            with self._lock:
                if done < len(batch):
                    self._queue[:0] = batch[done:]
                    self._queued += decisions_in(batch[done:])
                else:  # every sealed journal file's records are placed now
                    Journal.discard(self._sealed)
                    self._sealed = []
                self._settled += decisions_in(batch[:done])
                self._flush_served = ticket
                self._settled_cv.notify_all()
            if stop:
                return

    def _adopt(self) -> None:
        """Write what dead DecisionLogs left: this spool's own journal files from an
        earlier process, and the journals and spools of others matching ``adopt_glob``
        whose lock is free. Rows already in the database are skipped on insert."""
        if self._journal is not None and self._journal.leftovers:
            unreadable: list[bytes] = []
            recs = [r for p in self._journal.leftovers for r in read_journal(p, unreadable)]
            self._place(recs, unreadable, str(self._spool.path))
            Journal.discard(self._journal.leftovers)
            self._journal.leftovers = []
        if not self._adopt_glob:
            return
        for lock in sorted(self._spool.path.parent.glob(self._adopt_glob + ".lock")):
            path = lock.with_name(lock.name.removesuffix(".lock"))
            if path == self._spool.path:
                continue
            try:
                other = Spool(path)  # its lock: refused while its owner lives
            except ValueError:
                continue
            try:
                unreadable = []
                journals = journal_files(path)
                recs = [r for p in journals for r in read_journal(p, unreadable)]
                for chunk in other.read_batches(self.batch_size, unreadable):
                    recs += chunk
                self._place(recs, unreadable, str(path))
                Journal.discard(journals)
                other.clear()
                Journal.discard([path])  # a .rejected file beside it stays
            finally:
                other.release()
            Journal.discard([lock])

    def _place(self, recs: list[LogItem], unreadable: list[bytes], source: str) -> None:
        """Adopted records into the database, or this log's own spool while it is down
        (raises OSError if neither takes them: the files are then kept)."""
        unique = list({item_key(r): r for r in recs}.values())  # journal and spool overlap
        for chunk in chunked(unique, self.batch_size):
            if self._spool.count or not self._write(chunk):
                self._spool.append(chunk)
        self._spool.reject_lines(unreadable)
        if unique:
            log.warning("decision log adopted %d decisions left by %s", decisions_in(unique),
                        source)

    def _cycle(self, batch: list[LogItem], forced: bool) -> int:
        """Replay the spool if due, then write or spool ``batch``; returns how many items
        of ``batch`` (a prefix) were placed."""
        if self._spool.count and (forced or time.monotonic() >= self._retry_at):
            self._replay()
        done = 0
        for chunk in chunked(batch, self.batch_size):
            # Straight to the spool while it holds older records: keeps the order.
            may_try = forced or time.monotonic() >= self._retry_at
            if not self._spool.count and may_try:
                if self._write(chunk):
                    done += len(chunk)
                    continue
                forced = False
            try:
                self._spool.append(chunk)
            except OSError as err:
                log.error("decision log cannot spool to %s (%s); keeping %d decisions in "
                          "memory", self._spool.path, err, decisions_in(batch[done:]))
                return done
            done += len(chunk)
        return done

    def _replay(self) -> None:
        if not self._reachable():
            return  # still down: the spool stays whole, replay repeats later
        count = 0
        unreadable: list[bytes] = []
        try:
            for chunk in self._spool.read_batches(self.batch_size, unreadable):
                if not self._write(chunk):
                    return  # still down: the spool stays whole, replay repeats later
                count += decisions_in(chunk)
            self._spool.reject_lines(unreadable)
            with self._lock:
                self._spool.clear()
        except OSError as err:
            log.error("decision log cannot read spool %s: %s", self._spool.path, err)
            return
        log.warning("decision log replayed %d spooled records into %s", count, self.url)
