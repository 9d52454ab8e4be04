"""Giving the C heap's free memory back to the system in a serving process.

A replica's load comes in bursts: a sibling dies and its traffic arrives here, a backlog
of requests piles up behind a slow second, a database outage ends and its spool is
replayed. Each burst holds many request bodies, parsed states and record batches at
once; when it is over they are freed, but glibc keeps the pages: it trims only the top
of the heap, and only above a threshold that it raises each time a large block (a
numpy array, a body over 128 KiB) is freed. So RSS rises in steps at every burst and
never comes down, which is what the 15-minute soak measured (an Ingress replica +7.1 %
after its faults, flat after them). ``malloc_trim(0)`` walks every arena and returns
free pages, also from the middle of the heap; it costs about a millisecond here, so a
replica calls it every ``HEAP_TRIM_EVERY_S`` seconds from a daemon thread.

Not glibc (musl, macOS): nothing to call, and :func:`trim_heap` says so by returning
False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: How often a replica gives free heap pages back (s): often enough that a burst's
#: memory is returned before the next, rare enough to cost nothing (~1 ms a call).
HEAP_TRIM_EVERY_S = 15.0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


_TRIM = _malloc_trim()
_started: threading.Thread | None = None
_start_lock = threading.Lock()


def trim_heap() -> bool:
    """Return the C heap's free pages to the system now; False where libc cannot."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


def _trim_forever(every_s: float, stop: threading.Event) -> None:
    while not stop.wait(every_s):
        trim_heap()


def start_heap_trimmer(every_s: float = HEAP_TRIM_EVERY_S) -> threading.Event | None:
    """Trim every ``every_s`` seconds from a daemon thread, once per process (later calls
    are no-ops and return None). Returns the event that stops it."""
    global _started
    with _start_lock:
        if _started is not None:
            return None
        if _TRIM is None:
            log.info("no malloc_trim in this libc: the heap is not trimmed")
            return None
        stop = threading.Event()
        _started = threading.Thread(target=_trim_forever, args=(every_s, stop),
                                    name="heap-trimmer", daemon=True)
        _started.start()
        return stop
