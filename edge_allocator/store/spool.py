"""The local spool: where decisions wait, durably, while the database is unavailable.

An append-only JSON-lines file, one :class:`DecisionRecord` per line, fsync'd on every
append so an accepted batch survives a crash of the process. Replay reads it back in
order; the file is emptied only after the database has committed everything in it, and
since rows already present are skipped on insert, a replay cut short is simply repeated.
Lines that cannot be parsed (a write torn by a crash) go to a ``.rejected`` file beside
it rather than blocking the replay forever.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from edge_allocator.store.records import DecisionRecord

log = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    # Makes a newly created file's directory entry durable (POSIX; a no-op elsewhere).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Spool:
    """Append-only JSON-lines file of records. Used by one writer thread at a time.

    Args:
        path: the spool file; its directory is created on first append.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rejected_path = self.path.with_name(self.path.name + ".rejected")
        #: Records in the file now (the writer thread keeps it current; others only read).
        self.count = 0
        self._needs_newline = False
        if self.path.exists():
            with open(self.path, "rb") as f:
                data = f.read()
            self.count = sum(1 for line in data.splitlines() if line.strip())
            self._needs_newline = bool(data) and not data.endswith(b"\n")

    def append(self, records: list[DecisionRecord]) -> None:
        """Write ``records`` at the end and fsync; raises ``OSError`` if that fails."""
        if not records:
            return
        data = b"".join(r.to_json() + b"\n" for r in records)
        if self._needs_newline:
            data = b"\n" + data  # never glue a record onto a torn line
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.path, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            self._needs_newline = True  # a partial write may have happened
            raise
        self._needs_newline = False
        if created:
            _fsync_dir(self.path.parent)
        self.count += len(records)

    def read_batches(self, batch_size: int) -> Iterator[list[DecisionRecord]]:
        """Records in file order, ``batch_size`` at a time; bad lines go to the reject file."""
        if not self.path.exists():
            return
        batch: list[DecisionRecord] = []
        with open(self.path, "rb") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    batch.append(DecisionRecord.from_json(line))
                except ValueError as err:
                    log.error("spool %s line %d unreadable (%s); moved to %s",
                              self.path, lineno, err, self.rejected_path)
                    self.reject_lines([line.rstrip(b"\n")])
                    continue
                if len(batch) >= batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def reject(self, records: list[DecisionRecord]) -> None:
        """Set aside records the database refuses as data (kept, never silently dropped)."""
        self.reject_lines([r.to_json() for r in records])

    def reject_lines(self, lines: list[bytes]) -> None:
        self.rejected_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.rejected_path, "ab") as f:
            f.write(b"".join(line + b"\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())

    def clear(self) -> None:
        """Empty the file; call only once the database has committed all it held."""
        if self.path.exists():
            with open(self.path, "r+b") as f:
                f.truncate(0)
                f.flush()
                os.fsync(f.fileno())
        self.count = 0
        self._needs_newline = False
