"""The journal: queued decisions, written to the kernel before the answer leaves.

The decision log queues records in memory and writes them in bulk off the request path.
A replica killed outright (SIGKILL, the OOM killer, a crash) would take that queue with
it: decisions already answered with a 200 would never reach the database (the soak
benchmark found exactly that: every decision of the last half second of a killed
ingress replica was lost). So every record is also appended to a journal file as it is
queued, with one ``write`` and no ``fsync``: the page cache survives the death of the
process (not of the machine; the spool's fsync still covers outages).

The writer thread *seals* the current file each time it takes the queue and deletes
sealed files once everything in them is in the database or the spool. Whatever is left
belongs to a process that died: another DecisionLog sharing the spool directory adopts
it (see ``DecisionLog``'s ``adopt_glob``) and writes it, skipping rows already stored.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson

from edge_allocator.store.records import (
    DecisionRecord,
    index_ids,
    pack_node_values,
    pack_scores,
    scores_map,
    unpack_node_values,
    unpack_scores,
)
from edge_allocator.store.runs import RUN_PREFIX, DecisionRun

log = logging.getLogger(__name__)

SUFFIX = ".journal."


def journal_files(spool_path: Path) -> list[Path]:
    """The journal files that belong to the spool at ``spool_path``, oldest first."""
    prefix = spool_path.name + SUFFIX
    found = [p for p in spool_path.parent.glob(prefix + "*") if p.name[len(prefix):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(prefix):]))


#: How a line holding a whole batch begins (``encode_batch``); any other line is one
#: record's ``DecisionRecord.to_json`` (single requests, and journals of earlier versions).
BATCH_PREFIX = b'{"batch":1,'
#: The record fields a batch line keeps per row, in row order (node values go in one
#: base64 blob for the whole batch, ``node_count`` rows each).
_ROW_FIELDS = ("decision_id", "created_at", "model_name", "model_version", "backend",
               "node_id", "node_index", "confidence", "scores", "latency_ms", "request_hash",
               "cached", "node_ids", "expected_ms", "transfer_ms", "shadow_of")
#: Rows of lines written before ``shadow_of`` (migration 0004) lack it: a live decision.
_ROW_FIELDS_BEFORE_SHADOW = len(_ROW_FIELDS) - 1


def encode_batch(records: Sequence[DecisionRecord]) -> bytes:
    """The records of one ``record_many`` call as one JSON line: a row of scalars per
    record and every node matrix in one base64 blob. One orjson call for the batch
    instead of one per record, and one base64 instead of one per record: 2 us a record
    instead of 6.4 at 256 decisions of 20 nodes (``benchmarks.log_bench``). When every
    record carries packed scores (the batch path), they go in one more blob
    (``"scores"``) and each row's map is null: the maps were half the line's encoding.
    No records: no line (``np.concatenate`` of nothing would raise)."""
    if not records:
        return b""
    if len(records) == 1:
        return records[0].to_json() + b"\n"
    packed = all(r.score_values is not None for r in records)
    rows = [(r.decision_id, r.created_at, r.model_name, r.model_version, r.backend,
             r.node_id, r.node_index, r.confidence, None if packed else r.scores,
             r.latency_ms, r.request_hash, r.cached, r.node_ids, r.expected_ms,
             r.transfer_ms, r.shadow_of, r.node_values.shape[0])
            for r in records]
    blob = pack_node_values(np.concatenate([r.node_values for r in records]))
    line = {"rows": rows, "nodes": base64.b64encode(blob).decode("ascii")}
    if packed:
        scores = pack_scores(np.concatenate([r.score_values for r in records
                                             if r.score_values is not None]))
        line["scores"] = base64.b64encode(scores).decode("ascii")
    return BATCH_PREFIX + orjson.dumps(line)[1:] + b"\n"


def decode_batch(line: bytes) -> list[DecisionRecord]:
    """What ``encode_batch`` wrote; ``ValueError`` on anything else."""
    try:
        obj = orjson.loads(line)
        values = unpack_node_values(base64.b64decode(obj["nodes"], validate=True))
        packed = (unpack_scores(base64.b64decode(obj["scores"], validate=True))
                  if "scores" in obj else None)
        if packed is not None and len(packed) != len(values):
            raise ValueError(f"{len(packed)} scores for {len(values)} node rows")
        out, start = [], 0
        for row in obj["rows"]:
            *fields, n = row
            if len(fields) not in (len(_ROW_FIELDS), _ROW_FIELDS_BEFORE_SHADOW) \
                    or not isinstance(n, int) or n < 0:
                raise ValueError(f"a batch row of {len(row)} values")
            rec = dict(zip(_ROW_FIELDS, fields))
            rec["created_at"] = datetime.fromisoformat(rec["created_at"])
            if packed is not None:
                mine = packed[start:start + n].copy()
                rec["scores"] = scores_map(mine, rec["node_ids"] or index_ids(n))
                rec["score_values"] = mine
            out.append(DecisionRecord(**rec, node_values=values[start:start + n].copy()))
            start += n
        if start != len(values):
            raise ValueError(f"{len(values)} node rows for {start} in the batch's rows")
        return out
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"not a journal batch line: {exc}") from exc


def read_journal(path: Path, unreadable: list[bytes]
                 ) -> Iterator[DecisionRecord | DecisionRun]:
    """Records and runs of one journal file; lines that do not parse (a line cut by the
    kill, whole batch lines included) go to ``unreadable``."""
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                if line.startswith(RUN_PREFIX):
                    yield DecisionRun.from_json(line)
                elif line.startswith(BATCH_PREFIX):
                    yield from decode_batch(line)
                else:
                    yield DecisionRecord.from_json(line)
            except ValueError:
                unreadable.append(line.rstrip(b"\n"))


class Journal:
    """Append-only generations ``<spool>.journal.<n>`` of one DecisionLog (which holds
    the spool's lock, so no other process writes them). Not thread-safe: the log calls
    it under its own lock."""

    def __init__(self, spool_path: Path) -> None:
        self.spool_path = spool_path
        older = journal_files(spool_path)
        #: Files left by an earlier process with this spool path: replayed, then deleted.
        self.leftovers = older
        self._gen = int(older[-1].name.rsplit(".", 1)[1]) + 1 if older else 0
        self._fd = self._open()
        self._empty = True

    @property
    def current(self) -> Path:
        return self.spool_path.with_name(f"{self.spool_path.name}{SUFFIX}{self._gen}")

    def _open(self) -> int:
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.current, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, items: Sequence[DecisionRecord | DecisionRun]) -> None:
        """One ``write`` of the items (a line per run, one line for the records,
        ``encode_batch``): in the page cache when it returns."""
        records = [i for i in items if isinstance(i, DecisionRecord)]
        data = memoryview(b"".join(i.to_json() + b"\n" for i in items
                                   if isinstance(i, DecisionRun)) + encode_batch(records))
        if not data:
            return
        while data:
            data = data[os.write(self._fd, data):]
        self._empty = False

    def seal(self) -> Path | None:
        """Close the current generation and start the next; the sealed file (None when
        nothing was written to it since the last seal)."""
        if self._empty:
            return None
        os.close(self._fd)
        sealed = self.current
        self._gen += 1
        self._fd = self._open()
        self._empty = True
        return sealed

    @staticmethod
    def discard(paths: list[Path]) -> None:
        for p in paths:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as err:
                log.error("decision log cannot delete journal %s: %s", p, err)

    def close(self) -> None:
        """Stop writing; the current file is deleted only if nothing was written to it."""
        os.close(self._fd)
        if self._empty:
            self.discard([self.current])
