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

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from edge_allocator.store.records import DecisionRecord

log = logging.getLogger(__name__)

SUFFIX = ".journal."


def journal_files(spool_path: Path) -> list[Path]:
    """The journal files that belong to the spool at ``spool_path``, oldest first."""
    prefix = spool_path.name + SUFFIX
    found = [p for p in spool_path.parent.glob(prefix + "*") if p.name[len(prefix):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(prefix):]))


def read_journal(path: Path, unreadable: list[bytes]) -> Iterator[DecisionRecord]:
    """Records of one journal file; lines that do not parse go to ``unreadable``."""
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
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

    def append(self, records: list[DecisionRecord]) -> None:
        """One ``write`` of the records' JSON lines: in the page cache when it returns."""
        data = memoryview(b"".join(r.to_json() + b"\n" for r in records))
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
