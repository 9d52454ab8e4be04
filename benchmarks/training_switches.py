"""What each behaviour-cloning switch costs and buys: wall time, peak memory and the
decision quality of the result, every run in a fresh process on the same demonstrations.
Then gradient checkpointing's memory at N = 1,000 (GCN and GAT layers).

    python -m benchmarks.training_switches            # ~10 min on 2 cores
    python -m benchmarks.training_switches --device cuda   # on a GPU machine

Peak memory: on CPU the training process's peak RSS above what it held before training
(Linux VmHWM, reset first; DataLoader and Ray workers are other processes and not in
it), on CUDA ``torch.cuda.max_memory_allocated``. Quality: mean episode reward
on the pipeline's validation seeds (synthetic 10-50 and Melbourne), higher is better.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "training"

SWITCHES: dict[str, dict[str, Any]] = {
    "baseline (fp32, collate in process)": {},
    "DataLoader 2 workers, persistent, prefetch 4": {"num_workers": 2, "prefetch_factor": 4},
    "+ pin_memory": {"num_workers": 2, "prefetch_factor": 4, "pin_memory": True},
    "bf16 autocast": {"precision": "bf16"},
    "fp16 autocast + GradScaler": {"precision": "fp16"},
    "gradient accumulation x4 (batch 32)": {"grad_accum": 4, "batch_size": 32},
    "gradient checkpointing": {"grad_checkpointing": True},
    "Ray Train, 2 DDP workers": {"ray_workers": 2},
}


def _reset_peak_rss() -> float:
    """Linux: reset this process's high-water mark (VmHWM) to its current RSS and return
    that, so the next peak measures only what follows."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def one_run(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in its own process: train the hybrid on the saved demonstrations."""
    import torch

    from edge_allocator.policies import build_policy
    from edge_allocator.train.bc import BCConfig, train_bc
    from edge_allocator.train.finetune import validation_reward

    torch.set_num_threads(1)
    demos = pickle.loads(Path(spec["demos"]).read_bytes())
    opts = dict(spec["options"])
    ray_workers = opts.pop("ray_workers", 0)
    cfg = BCConfig(epochs=spec["epochs"], device=spec["device"], **opts)
    torch.manual_seed(0)
    module = build_policy("hybrid")
    cuda = spec["device"].startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = _reset_peak_rss()
    t0 = time.perf_counter()
    if ray_workers:
        import ray

        from edge_allocator.train.distributed import DistributedConfig, train_bc_distributed

        ray.init(address="local", num_cpus=ray_workers, include_dashboard=False,
                 _temp_dir=tempfile.mkdtemp(prefix="ea-bench-", dir="/tmp"), log_to_driver=False)
        t0 = time.perf_counter()  # Ray's start-up is not training
        curve = train_bc_distributed(module, "hybrid", demos, cfg, DistributedConfig(
            num_workers=ray_workers, use_gpu=cuda, storage_path=Path(spec["tmp"]),
            name="bench"))
        wall = time.perf_counter() - t0
        peak = float("nan")  # spread over worker processes; not comparable
        ray.shutdown()
    else:
        curve = train_bc(module, "hybrid", demos, cfg, progress=False)
        wall = time.perf_counter() - t0
        peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
                else _status_mb("VmHWM") - before)
    reward = validation_reward(module, "hybrid", spec["validation_episodes"])
    return {"wall_s": wall, "peak_mb": peak, "final_loss": curve[-1], "reward": reward}


def memory_at_scale(spec: dict[str, Any]) -> dict[str, Any]:
    """One forward+backward of the hybrid on ``batch`` graphs of N nodes."""
    import torch

    from edge_allocator.policies import build_policy

    torch.set_num_threads(1)
    torch.manual_seed(0)
    dev = torch.device(spec["device"])
    m = build_policy("hybrid", {"conv": spec["conv"]}).to(dev).train()
    m.gradient_checkpointing = spec["checkpointing"]

    def inputs(b: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = torch.randn(b, n, m.config.num_features, device=dev)
        adj = (torch.rand(b, n, n, device=dev) < 8 / n).float() + torch.eye(n, device=dev)
        adj = adj / adj.sum(-1, keepdim=True)
        return x, adj, torch.ones(b, n, dtype=torch.bool, device=dev)

    m(*inputs(1, 20)).sum().backward()  # warm-up: lazy imports and first-call set-up
    m.zero_grad()
    x, adj, mask = inputs(spec["batch"], spec["nodes"])
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    before = _reset_peak_rss()
    t0 = time.perf_counter()
    m(x, adj, mask).sum().backward()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = _status_mb("VmHWM") - before
    return {"peak_mb": peak, "step_s": time.perf_counter() - t0}


def _in_subprocess(fn: str, spec: dict[str, Any]) -> dict[str, Any]:
    # a fixed mmap threshold: glibc otherwise raises it after frees and keeps large
    # freed blocks in the heap, so RSS would stop tracking live tensors
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-m", "benchmarks.training_switches", "--one", fn,
                          json.dumps(spec)], capture_output=True, text=True, timeout=1800,
                         env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{fn} {spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--episodes", type=int, default=60, help="demonstration episodes")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--validation-episodes", type=int, default=3)
    p.add_argument("--only", nargs="*", default=None, help="switch names to run")
    args = p.parse_args()
    if args.one:
        fn = {"train": one_run, "memory": memory_at_scale}[args.one[0]]
        print(json.dumps(fn(json.loads(args.one[1]))))
        return

    from edge_allocator.train.demos import collect
    from edge_allocator.train.finetune import env_config

    tmp = Path(tempfile.mkdtemp(prefix="ea-switches-"))
    demos = collect(env_config("hybrid"), args.episodes, seed=123_000)
    (tmp / "demos.pkl").write_bytes(pickle.dumps(demos))
    rows = []
    for name, options in SWITCHES.items():
        if args.only and name not in args.only:
            continue
        if options.get("pin_memory") and not args.device.startswith("cuda"):
            rows.append({"switch": name, "skipped": "pin_memory only matters with CUDA"})
            continue
        spec = {"demos": str(tmp / "demos.pkl"), "options": options, "epochs": args.epochs,
                "device": args.device, "validation_episodes": args.validation_episodes,
                "tmp": str(tmp / name.replace(" ", "_"))}
        r = _in_subprocess("train", spec)
        rows.append({"switch": name, **r})
        print(rows[-1], flush=True)
    mem = []
    for conv in ("gcn", "gat"):
        for ckpt in (False, True):
            spec = {"conv": conv, "checkpointing": ckpt, "batch": 4, "nodes": 1000,
                    "device": args.device}
            mem.append({**spec, **_in_subprocess("memory", spec)})
            print(mem[-1], flush=True)
    report(rows, mem, args, len(demos))


def report(rows: list[dict[str, Any]], mem: list[dict[str, Any]], args: argparse.Namespace,
           decisions: int) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.device == "cpu" else f"_{args.device.replace(':', '')}"
    base = next(r for r in rows if "wall_s" in r)
    lines = [f"Behaviour cloning of the hybrid policy: {decisions} decisions, {args.epochs} "
             f"epochs, device {args.device}; one fresh process per row.", "",
             "| switch | wall s | vs baseline | peak MB | final loss | validation reward |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['switch']} | skipped: {r['skipped']} | | | | |")
            continue
        peak = "n/a (in the workers)" if r["peak_mb"] != r["peak_mb"] else f"{r['peak_mb']:.0f}"
        lines.append(f"| {r['switch']} | {r['wall_s']:.1f} | {r['wall_s'] / base['wall_s']:.2f}x | "
                     f"{peak} | {r['final_loss']:.4f} | {r['reward']:.1f} |")
    lines += ["", "Gradient checkpointing, one forward+backward of 4 graphs x 1,000 nodes:", "",
              "| layer | checkpointing | peak MB | step s |", "|---|---|---|---|"]
    for m in mem:
        lines.append(f"| {m['conv']} | {'on' if m['checkpointing'] else 'off'} | "
                     f"{m['peak_mb']:.0f} | {m['step_s']:.2f} |")
    text = "\n".join(lines) + "\n"
    (RESULTS / f"switches{suffix}.md").write_text(text)
    (RESULTS / f"switches{suffix}.json").write_text(json.dumps({"rows": rows, "memory": mem},
                                                               indent=2))
    _plot(rows, mem, RESULTS / f"switches{suffix}.png")
    print(text)


def _plot(rows: list[dict[str, Any]], mem: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if "wall_s" in r]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    names = [r["switch"] for r in done]
    axes[0].barh(names, [r["wall_s"] for r in done])
    axes[0].set_xlabel("wall seconds (lower is better)")
    axes[1].barh(names, [r["reward"] for r in done])
    axes[1].set_xlabel("validation episode reward (higher is better)")
    axes[1].set_yticks([])
    labels = [f"{m['conv']} {'ckpt' if m['checkpointing'] else 'plain'}" for m in mem]
    axes[2].bar(labels, [m["peak_mb"] for m in mem])
    axes[2].set_ylabel("peak MB, fwd+bwd, 4 x 1,000 nodes")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
