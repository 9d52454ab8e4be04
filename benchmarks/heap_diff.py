"""What grew in a replica's heap between two moments of a run with the heap watch on
(``edge_allocator.runtime.heap_watch``; the soak turns it on with ``--heap-snapshots``).

    python -m benchmarks.heap_diff DIR [--from-s 480] [--to-s 900] [--top 25]

Times are seconds since the run's origin, the Unix time in DIR/origin (the soak writes
it), or since the first sample when that file is absent.

For each process in DIR: RSS against what tracemalloc traces over time (if RSS grows and
the traced total does not, the growth is outside Python's allocators), then the
allocation sites whose live size grew most between the snapshot nearest ``--from-s`` and
the one nearest ``--to-s``, grouped by traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import tracemalloc
from pathlib import Path

MIB = 2**20


def snapshots(folder: Path, stem: str) -> dict[float, Path]:
    """Unix time of each snapshot of ``stem`` -> its file."""
    out = {}
    for p in folder.glob(f"{stem}-*.snap"):
        m = re.fullmatch(re.escape(stem) + r"-(\d+\.\d)\.snap", p.name)
        if m:
            out[float(m.group(1))] = p
    return dict(sorted(out.items()))


def nearest(snaps: dict[float, Path], t: float) -> float:
    return min(snaps, key=lambda s: abs(s - t))


def report(folder: Path, from_s: float, to_s: float, top: int) -> str:
    lines: list[str] = []
    for series in sorted(folder.glob("*.jsonl")):
        stem = series.stem
        rows = [json.loads(x) for x in series.read_text().splitlines() if x.strip()]
        if not rows:
            continue
        origin_file = folder / "origin"
        origin = (float(origin_file.read_text()) if origin_file.exists() else rows[0]["t"])
        lines += [f"## {stem}", "", "| t s | RSS MiB | traced MiB | traced peak MiB | "
                  "gc-tracked objects |", "|---|---|---|---|---|"]
        lines += [f"| {r['t'] - origin:.0f} | {r['rss'] / MIB:.1f} | {r['traced'] / MIB:.1f} | "
                  f"{r['traced_peak'] / MIB:.1f} | {r['gc_tracked']:,} |" for r in rows]
        snaps = snapshots(folder, stem)
        if len(snaps) < 2:
            lines += ["", "(fewer than two snapshots)", ""]
            continue
        a, b = nearest(snaps, origin + from_s), nearest(snaps, origin + to_s)
        old = tracemalloc.Snapshot.load(str(snaps[a]))
        new = tracemalloc.Snapshot.load(str(snaps[b]))
        diff = new.compare_to(old, "traceback")
        total = sum(d.size_diff for d in diff)
        lines += ["", f"Snapshot {a - origin:.0f} s -> {b - origin:.0f} s: traced "
                  f"{total / MIB:+.2f} MiB in all; largest growth by allocation site:",
                  "", "```"]
        for d in diff[:top]:
            lines.append(f"{d.size_diff / MIB:+8.3f} MiB {d.count_diff:+9,d} blocks "
                         f"(now {d.size / MIB:.2f} MiB)")
            lines += [f"      {fr.filename}:{fr.lineno}" for fr in d.traceback]
        lines += ["```", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("folder", type=Path)
    p.add_argument("--from-s", type=float, default=480.0)
    p.add_argument("--to-s", type=float, default=900.0)
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()
    print(report(a.folder, a.from_s, a.to_s, a.top))


if __name__ == "__main__":
    main()
