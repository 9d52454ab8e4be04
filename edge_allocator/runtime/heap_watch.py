"""Heap snapshots of a serving process over time, to find what makes its RSS grow.

The soak (``benchmarks/soak.py``) measures each replica's RSS; when one grows, RSS alone
cannot say whether Python objects are kept (a cache, a queue, reference cycles the
deferred collector has not reached yet) or the C heap is: tracemalloc can. Off unless
``EDGE_ALLOCATOR_HEAP_SNAPSHOTS`` names a folder, because tracing every allocation slows
a replica by about a third. When on, a daemon thread writes, every ``every_s``:

* ``<tag>-<pid>.jsonl``: one line per sample (Unix time, RSS, what tracemalloc traces
  now and at its peak, objects the collector tracks);
* ``<tag>-<pid>-<Unix time>.snap``: a full ``tracemalloc`` snapshot (tracebacks of
  ``FRAMES`` frames), which ``python -m benchmarks.heap_diff`` compares.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
import tracemalloc
from pathlib import Path

ENV = "EDGE_ALLOCATOR_HEAP_SNAPSHOTS"
#: Frames kept per allocation: enough to see who called into a library.
FRAMES = 6
EVERY_S = 60.0

log = logging.getLogger(__name__)


def rss_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def sample() -> dict[str, float | int]:
    """One line of the ``.jsonl`` file."""
    current, peak = tracemalloc.get_traced_memory()
    return {"t": round(time.time(), 1), "rss": rss_bytes(), "traced": current,
            "traced_peak": peak, "gc_tracked": len(gc.get_objects())}


def _watch(folder: Path, tag: str, every_s: float) -> None:
    stem = f"{tag}-{os.getpid()}"
    while True:
        time.sleep(every_s)
        try:
            line = sample()
            with open(folder / f"{stem}.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)])
            snap.dump(str(folder / f"{stem}-{line['t']:.1f}.snap"))
        except Exception:  # a diagnostic never takes the replica down
            log.exception("heap snapshot failed; stopping the heap watch")
            return


def start_from_env(tag: str, every_s: float = EVERY_S) -> bool:
    """Start tracing and the snapshot thread if ``EDGE_ALLOCATOR_HEAP_SNAPSHOTS`` is
    set (True then). Call once, early in a replica's constructor."""
    folder = os.environ.get(ENV)
    if not folder or tracemalloc.is_tracing():
        return False
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    tracemalloc.start(FRAMES)
    threading.Thread(target=_watch, args=(path, tag, every_s), daemon=True,
                     name="heap-watch").start()
    log.warning("heap watch on: tracemalloc snapshots every %g s in %s", every_s, path)
    return True
