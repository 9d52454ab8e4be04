"""The cyclic garbage collector, tuned for a serving process.

A 256-state batch body parses into ~5,000 dicts and lists. With CPython's default
threshold (700 allocations) the collector runs several times per request, and each run
walks the replica's whole young heap (Ray, numpy, loaded models): measured here, JSON
parsing costs 47 µs per state with the default and 11 µs with collection deferred
(``benchmarks/batch_path.py``). Serving allocates almost no reference cycles, so:

* ``gc.freeze()`` once start-up is done: what start-up made is never scanned again;
* a generation-0 threshold of ``GC_THRESHOLD`` allocations, so a collection runs once
  per few requests instead of a few times per request.
"""

from __future__ import annotations

import gc

from edge_allocator.constants import GC_THRESHOLD


def tune_gc(threshold: int = GC_THRESHOLD) -> None:
    """Freeze what exists now and defer collections (call after start-up)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(threshold, gen1, gen2)
