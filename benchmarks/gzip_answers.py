"""CPU per decision to gzip a /v1/allocate/batch answer (256 states of 20 nodes, row
JSON, as ``FrontDoor`` answers it): the standard library's zlib against ISA-L's deflate
(``isal.igzip``, what the service uses), both at level 1, both read back by the standard
library's ``gzip.decompress``. Median of ``--rounds``, each timing ``--repeats`` calls.

    python -m benchmarks.gzip_answers [--rounds 7] [--repeats 40]

Writes benchmarks/results/gzip_answers.{md,json,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from isal import igzip

from benchmarks import handler_cost

RESULTS = Path(__file__).parent / "results"


def _answer() -> bytes:
    """One 256-state answer, uncompressed, as the shipped door makes it."""
    bodies, headers = handler_cost._bodies(1)["JSON"]
    door = handler_cost._door(Path(tempfile.mkdtemp()), log=False)

    async def read() -> bytes:
        return bodies[0]

    hdrs = {"content-type": "application/json", **headers, "accept-encoding": "identity"}
    out = asyncio.run(door.handle("POST", "/v1/allocate/batch", hdrs, {}, read))
    door.api.close()
    assert out.status == 200, out.body[:300]
    return bytes(out.body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--repeats", type=int, default=40)
    args = p.parse_args()
    body = _answer()
    ways: dict[str, Callable[[], bytes]] = {
        "zlib (gzip.compress), level 1": lambda: gzip.compress(body, compresslevel=1),
        "ISA-L (isal.igzip.compress), level 1": lambda: igzip.compress(body, compresslevel=1),
    }
    rows = []
    for name, f in ways.items():
        packed = f()
        assert gzip.decompress(packed) == body  # standard gzip, whatever made it
        times = []
        for _ in range(args.rounds):
            t0 = time.process_time()
            for _ in range(args.repeats):
                f()
            times.append((time.process_time() - t0) / args.repeats / handler_cost.STATES * 1e6)
        rows.append({"way": name, "us_per_decision": statistics.median(times),
                     "lowest": min(times), "bytes": len(packed)})
    base = rows[0]["us_per_decision"]
    lines = [f"gzip of one /v1/allocate/batch answer ({handler_cost.STATES} states of "
             f"{handler_cost.NODES} nodes, row JSON, {len(body):,} bytes), CPU µs a "
             f"decision, median (lowest) of {args.rounds} rounds of {args.repeats} calls", "",
             "| way | µs a decision | bytes out | vs zlib |", "|---|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['way']} | {r['us_per_decision']:.2f} ({r['lowest']:.2f}) | "
                     f"{r['bytes']:,} | {base / r['us_per_decision']:.1f}x faster |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "gzip_answers.md").write_text(text)
    (RESULTS / "gzip_answers.json").write_text(json.dumps(
        {"answer_bytes": len(body), "rows": rows}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.barh([r["way"] for r in rows], [r["us_per_decision"] for r in rows])
    ax.set_xlabel("CPU µs a decision to gzip the answer")
    fig.tight_layout()
    fig.savefig(RESULTS / "gzip_answers.png", dpi=120)


if __name__ == "__main__":
    main()
