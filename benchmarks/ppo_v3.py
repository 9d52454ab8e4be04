"""Issue 12 §3: PPO with a learned value baseline, fine-tuning hybrid v3 (the closed-loop
features, cloned with ``--rl-steps 0``) on the closed-loop simulator, as a Ray Tune sweep
over learning rate and entropy coefficient, with a learning curve per trial.

    python -m benchmarks.ppo_v3 --steps 204800 --lrs 1e-5 3e-5 --ent-coefs 0 0.01

The start is models/hybrid/3's weights; its validation reward (closed loop, the
pipeline's validation seeds and episode count) is measured once and is every trial's
start, so each trial's gain is paired. The value head is the module's own pooled one
(``scores_and_value``), trained by MaskablePPO with the policy. Each trial validates every
``--curve-every`` steps and reports the point to Tune. Writes
``<out>/{sweep.md,sweep.json,curve.json,curve.png,sweep.png}`` and the best trial's
weights to ``runs/ppo-v3/best.pt`` (not shipped: keeping them is the caller's decision,
on the ``decision`` in sweep.json).

Ray: a private local instance, ``num_cpus=1`` (one trial at a time on a shared machine),
its own temp dir; one torch thread per trial.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edge_allocator.constants import MODELS_DIR, PROJECT_ROOT

OUT = Path(__file__).parent / "results" / "training" / "closedloop" / "ppo"
RUNS = Path("runs") / "ppo-v3"


def from_tune(experiment: Path, out: Path, start_reward: float) -> None:
    """Learning curves from Tune's own record of each trial (``progress.csv``: every
    report), for a sweep stopped before it finished: ``<out>/curve_partial.{json,png}``.
    Points are what the trials reported; a trial that did not finish has no final one."""
    import csv

    from edge_allocator.train.finetune import CurvePoint
    from edge_allocator.train.sweep import SweepResult, TrialCurve

    curves, finished = [], []
    for trial in sorted(experiment.glob("_trial*")):
        config = json.loads((trial / "params.json").read_text())
        with open(trial / "progress.csv") as f:
            reports = list(csv.DictReader(f))
        points = [CurvePoint(0, start_reward)] + [
            CurvePoint(int(r["env_steps"]), float(r["validation_reward"])) for r in reports]
        curves.append(TrialCurve(int(config["seed"]), float(config["rl_lr"]),
                                 float(config["ent_coef"]), points))
        finished.append(any(r["final"] == "True" for r in reports))
    res = SweepResult("hybrid", [], None, {}, str(experiment), curves)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    js = [{**c, "finished": f} for c, f in zip(res.curves_json(), finished, strict=True)]
    (out / "curve_partial.json").write_text(json.dumps(
        {"start_reward": start_reward, "source": str(experiment), "curves": js},
        indent=2) + "\n")
    res.plot_curves(out / "curve_partial.png")
    for c, f in zip(js, finished, strict=True):
        print(f"lr {c['rl_lr']:g} ent {c['ent_coef']:g} seed {c['seed']} "
              f"({'finished' if f else 'not finished'}): "
              + ", ".join(f"{n}: {v:.1f}" for n, v in zip(c["env_steps"],
                                                          c["validation_reward"], strict=True)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(MODELS_DIR / "hybrid" / "3"))
    p.add_argument("--steps", type=int, default=204_800, help="RL env steps per trial")
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 3e-5])
    p.add_argument("--ent-coefs", type=float, nargs="+", default=[0.0, 0.01])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--curve-every", type=int, default=25_600,
                   help="validate every so many steps (a multiple of PPO's 1,024-step rollout)")
    p.add_argument("--value-warmup", type=int, default=0,
                   help="the first so many steps of each trial train the value head alone")
    p.add_argument("--validation-episodes", type=int, default=6,
                   help="per validation scenario (the pipeline's 6, as hybrid v3's -231.9)")
    p.add_argument("--ray-temp-dir", default="/tmp/ray-ppo")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--runs", default=str(RUNS))
    p.add_argument("--from-tune", metavar="EXPERIMENT_DIR", default=None,
                   help="run nothing: write curve_partial.{json,png} from a stopped sweep's "
                        "Tune record (its trials' progress.csv), with --start-reward")
    p.add_argument("--start-reward", type=float, default=None)
    args = p.parse_args(argv)
    if args.from_tune:
        if args.start_reward is None:
            raise SystemExit("--from-tune needs --start-reward (the start's validation reward)")
        from_tune(Path(args.from_tune), Path(args.out), args.start_reward)
        return

    import ray
    import torch

    from edge_allocator.train.distill import load_teacher
    from edge_allocator.train.finetune import validation_reward
    from edge_allocator.train.sweep import SweepConfig, run_sweep

    torch.set_num_threads(1)
    model = Path(args.model)
    start_module, art = load_teacher(model)  # checksum-verified
    shown = model.resolve()
    if shown.is_relative_to(PROJECT_ROOT):
        shown = shown.relative_to(PROJECT_ROOT)
    if not art.manifest.get("training", {}).get("observed_speed"):
        raise SystemExit(f"{model}: not trained with observed speeds (closed loop)")
    start_module.eval()
    architecture = art.manifest["architecture"]
    t0 = time.perf_counter()
    start_reward = validation_reward(start_module, "hybrid", args.validation_episodes,
                                     observed_speed=True)
    start_seconds = time.perf_counter() - t0
    print(f"start: {shown} validation reward {start_reward:.2f} "
          f"({args.validation_episodes} episodes per scenario, {start_seconds:.1f} s)",
          flush=True)

    out, runs = Path(args.out), Path(args.runs)
    cfg = SweepConfig(kind="hybrid", seeds=args.seeds, rl_lrs=args.lrs,
                      ent_coefs=args.ent_coefs, rl_steps=args.steps,
                      validation_episodes=args.validation_episodes, observed_speed=True,
                      curve_every=args.curve_every, value_warmup_steps=args.value_warmup,
                      cpus_per_trial=1.0,
                      storage_path=runs / "tune", name="ppo-v3")
    ray.init(address="local", num_cpus=1, include_dashboard=False,
             _temp_dir=args.ray_temp_dir, log_to_driver=False)
    t1 = time.perf_counter()
    try:
        res = run_sweep(start_module.state_dict(), architecture, cfg, start_reward=start_reward)
    finally:
        ray.shutdown()
    wall = time.perf_counter() - t1

    wins = res.best.validation_reward > start_reward
    decision = (f"keep: the best trial (lr {res.best.rl_lr:g}, ent_coef {res.best.ent_coef:g}, "
                f"seed {res.best.seed}) beats the start on validation by "
                f"{res.best.gain:+.2f}" if wins else
                f"ship nothing: no trial beats the start on validation (best gain "
                f"{res.best.gain:+.2f}, lr {res.best.rl_lr:g}, ent_coef {res.best.ent_coef:g})")
    out.mkdir(parents=True, exist_ok=True)
    runs.mkdir(parents=True, exist_ok=True)
    torch.save(res.best_state, runs / "best.pt")
    command = "python -m benchmarks.ppo_v3 " + " ".join(sys.argv[1:] if argv is None else argv)
    md = (f"# PPO fine-tuning of hybrid v3 (closed loop)\n\n`{command}`\n\n"
          f"Start: {shown}, validation reward {start_reward:.2f} (closed loop, "
          f"{args.validation_episodes} episodes per validation scenario, seeds from 500000). "
          f"{len(res.rows)} trials x {args.steps} env steps"
          + (f" (the first {args.value_warmup} train the value head alone)"
             if args.value_warmup else "") + ", one at a time on one core; "
          f"sweep wall time {wall:.0f} s.\n\n" + res.to_markdown()
          + f"\nDecision: {decision}.\n")
    (out / "sweep.md").write_text(md)
    (out / "sweep.json").write_text(json.dumps({
        "command": command, "model": str(shown), "start_reward": start_reward,
        "validation_episodes": args.validation_episodes, "steps_per_trial": args.steps,
        "curve_every": args.curve_every, "value_warmup_steps": args.value_warmup,
        "sweep_wall_seconds": wall, "wins": wins,
        "decision": decision, **res.to_json()}, indent=2) + "\n")
    (out / "curve.json").write_text(json.dumps(
        {"start_reward": start_reward, "curves": res.curves_json()}, indent=2) + "\n")
    res.plot_curves(out / "curve.png")
    res.plot(out / "sweep.png")
    print(md, flush=True)


if __name__ == "__main__":
    main()
