"""The heap watch (runtime/heap_watch.py) and its report (benchmarks/heap_diff.py): a
process that keeps allocating must show that growth, at the line that allocates."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from benchmarks.heap_diff import report

GROWER = textwrap.dedent("""
    import time
    from edge_allocator.runtime import heap_watch
    assert heap_watch.start_from_env("grower", every_s=0.3)
    kept = []
    for _ in range(12):
        kept.append(bytearray(512 * 1024))  # THE GROWING LINE
        time.sleep(0.1)
    time.sleep(0.5)
""")


def test_heap_watch_names_the_line_that_grows(tmp_path: Path) -> None:
    script = tmp_path / "grower.py"
    script.write_text(GROWER)
    out = tmp_path / "heap"
    env = {"EDGE_ALLOCATOR_HEAP_SNAPSHOTS": str(out), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=60)
    series = list(out.glob("grower-*.jsonl"))
    assert len(series) == 1
    lines = series[0].read_text().splitlines()
    assert len(lines) >= 3 and len(list(out.glob("grower-*.snap"))) == len(lines)
    text = report(out, from_s=0.0, to_s=1e9, top=3)
    # the largest growth is ours: several MiB, attributed to the allocating line
    first = text.split("```")[1]
    assert f"{script}:7" in first.splitlines()[2], text
    assert float(first.split()[0].lstrip("+")) >= 2.0, text


def test_heap_watch_is_off_without_its_variable(tmp_path: Path) -> None:
    code = ("from edge_allocator.runtime import heap_watch; import tracemalloc; "
            "assert not heap_watch.start_from_env('x'); assert not tracemalloc.is_tracing()")
    subprocess.run([sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin"}, check=True,
                   timeout=60)
