"""Where Ray Serve's per-request CPU goes: CPU seconds per request of every process on the
machine (proxy, replicas, HAProxy, controller, GCS...) for an echo deployment and for
the shipped app, on Serve's standard path and on the fast path. This is the profile
behind the throughput numbers in serve_bench.

    python -m benchmarks.overhead
Writes benchmarks/results/overhead.md.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psutil
from ray import serve
from starlette.requests import Request

from benchmarks.cluster import deploy, ray_serve, shipped_options
from benchmarks.load import sample_bodies
from edge_allocator.runtime.raylocal import FAST_PATH_ENV

RESULTS = Path(__file__).parent / "results"
REQUESTS = 300


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Echo:
    async def __call__(self, request: Request) -> dict[str, bool]:
        return {"ok": True}


def _cpu() -> dict[int, tuple[str, float]]:
    out = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            t = p.cpu_times()
            out[p.pid] = (" ".join(p.info["cmdline"] or [])[:60], t.user + t.system)
        except psutil.Error:
            pass
    return out


def profile(url: str, bodies: list[bytes] | None) -> tuple[float, list[tuple[float, str]]]:
    with httpx.Client(timeout=30) as c:
        def send(i: int) -> None:
            if bodies is None:
                c.get(url)
            else:
                c.post(url, content=bodies[i % len(bodies)],
                       headers={"content-type": "application/json"})
        for i in range(20):
            send(i)
        before, t0 = _cpu(), time.perf_counter()
        for i in range(REQUESTS):
            send(20 + i)
        wall, after = time.perf_counter() - t0, _cpu()
    rows = sorted(((t - before[pid][1]) / REQUESTS * 1000, name)
                  for pid, (name, t) in after.items() if pid in before)
    return wall / REQUESTS * 1000, [r for r in reversed(rows) if r[0] >= 0.1][:6]


def main() -> None:
    bodies = sample_bodies(400, nodes=20)
    lines = []
    for label, env in (("standard path", {}), ("fast path", FAST_PATH_ENV)):
        with ray_serve(2, env) as port:
            base = f"http://127.0.0.1:{port}"
            serve.run(Echo.bind(), name="echo", route_prefix="/echo")
            cases = [("echo", f"{base}/echo", None)]
            args, options = shipped_options(cache="none")
            deploy("app", "/", args, options)
            cases.append(("shipped app /v1/allocate", f"{base}/v1/allocate", bodies))
            for name, url, b in cases:
                wall, rows = profile(url, b)
                lines.append(f"### {name}, {label}: {wall:.2f} ms wall per request "
                             "(concurrency 1)\n")
                lines.append("| CPU ms / request | process |\n|---|---|")
                lines += [f"| {ms:.2f} | `{proc.strip()}` |" for ms, proc in rows]
                lines.append("")
    md = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "overhead.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
