"""The heap trimmer returns a burst's freed memory (runtime.heap): measured on a heap with
holes, in a fresh process each, since RSS is a whole-process figure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge_allocator.runtime import heap

# ~200 MB of malloc'd blocks (bytes over 512 B bypass pymalloc), one in 64 kept: the heap
# is all holes, which glibc keeps mapped until told to trim
_BURST = """
import json, sys, time, psutil
from edge_allocator.runtime.heap import start_heap_trimmer, trim_heap
p = psutil.Process()
rss = lambda: p.memory_info().rss / 2**20
blocks = [bytes(2000) for _ in range(100_000)]
keep = blocks[::64]
del blocks
before = rss()
how = sys.argv[1]
if how == "now":
    trim_heap()
elif how == "thread":
    assert start_heap_trimmer(0.05) is not None
    assert start_heap_trimmer(0.05) is None  # once per process
    deadline = time.monotonic() + 5
    while rss() > before / 2 and time.monotonic() < deadline:
        time.sleep(0.05)
print(json.dumps({"before": before, "after": rss()}))
"""

pytestmark = pytest.mark.skipif(heap._TRIM is None, reason="no malloc_trim in this libc")


def _burst(how: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _BURST, how], capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_freed_heap_stays_mapped_without_a_trim():
    r = _burst("none")
    assert r["after"] > 150 and r["after"] >= r["before"] * 0.95


@pytest.mark.parametrize("how", ["now", "thread"])
def test_a_trim_gives_the_freed_heap_back(how):
    r = _burst(how)
    assert r["before"] > 150, r  # the burst did hold ~200 MB
    assert r["after"] < r["before"] / 3, r
