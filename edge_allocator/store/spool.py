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
from edge_allocator.store.runs import (
    RUN_PREFIX,
    DecisionRun,
    chunked,
    decisions_of,
    line_decisions,
)

#: One line of the spool: one decision, or a batch request's run of them.
SpoolItem = DecisionRecord | DecisionRun

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Whether advisory file locks exist here (not on Windows). A flag, because mypy, checking
#: on POSIX where ``fcntl`` always imports, reads ``fcntl is None`` as never true.
_HAVE_FCNTL: bool = fcntl is not None

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
    """Append-only JSON-lines file of records, owned by one DecisionLog (file-locked).

    Args:
        path: the spool file; its directory is created when missing.

    Raises:
        ValueError: another DecisionLog holds this spool.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rejected_path = self.path.with_name(self.path.name + ".rejected")
        #: Records in the file now (the writer thread keeps it current; others only read).
        self.count = 0
        self._needs_newline = False
        self._lock_fd: int | None = None
        self._acquire()
        if self.path.exists():
            last = b""
            with open(self.path, "rb") as f:
                for line in f:
                    self.count += line_decisions(line) if line.strip() else 0
                    last = line
            self._needs_newline = bool(last) and not last.endswith(b"\n")

    def _acquire(self) -> None:
        """Take an exclusive lock on ``<path>.lock``: two writers on one spool would
        interleave and truncate each other's records. Released by :meth:`release`."""
        if not _HAVE_FCNTL:  # pragma: no cover - Windows: no advisory locks, trust config
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ValueError(
                f"spool {self.path} is in use by another DecisionLog; give each process "
                "(each Ray Serve replica) its own spool_path"
            ) from None
        self._lock_fd = fd

    def release(self) -> None:
        """Drop the lock so another DecisionLog may take this spool over."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def append(self, records: list[SpoolItem]) -> None:
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
        self.count += sum(map(decisions_of, records))

    def read_batches(
        self, batch_size: int, unreadable: list[bytes]
    ) -> Iterator[list[SpoolItem]]:
        """Records and runs in file order, about ``batch_size`` decisions at a time (a
        run whole).

        Lines that do not parse are appended to ``unreadable`` for the caller to
        :meth:`reject_lines` once the replay has succeeded (a failed replay reads the
        file again, and must not set them aside twice).
        """
        if not self.path.exists():
            return
        yield from chunked(self._items(unreadable), batch_size)

    def _items(self, unreadable: list[bytes]) -> Iterator[SpoolItem]:
        with open(self.path, "rb") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield (DecisionRun.from_json(line) if line.startswith(RUN_PREFIX)
                           else DecisionRecord.from_json(line))
                except ValueError as err:
                    log.error("spool %s line %d unreadable (%s); setting it aside in %s",
                              self.path, lineno, err, self.rejected_path)
                    unreadable.append(line.rstrip(b"\n"))

    def reject(self, records: list[SpoolItem]) -> None:
        """Set aside records the database refuses as data (kept, never silently dropped)."""
        self.reject_lines([r.to_json() for r in records])

    def reject_lines(self, lines: list[bytes]) -> None:
        """Append raw lines to the reject file (fsync'd)."""
        if not lines:
            return
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
