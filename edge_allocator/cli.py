"""``edge-allocator``: train, evaluate, sample, predict, report.

There is no separate export step: ``train`` writes each model it trains as a versioned
artifact (PyTorch weights, ONNX graph, manifest)."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edge_allocator.constants import DATABASE_URL, MODELS_DIR


def _train(args: argparse.Namespace) -> None:
    from edge_allocator.train.bc import BCConfig
    from edge_allocator.train.pipeline import RayScale, TrainConfig, train

    kinds = ["dqn", "ppo", "hybrid"] if args.model == "all" else [args.model]
    scale = None
    if args.pipeline:
        scale = RayScale(workers=args.workers, strategy=args.strategy, use_gpu=args.gpu,
                         cpus_per_worker=args.cpus_per_worker, sweep_seeds=args.sweep_seeds,
                         sweep_lrs=args.sweep_lrs, sweep_ent_coefs=args.sweep_ent_coefs)
    with _ray(args) if args.pipeline else _nothing():
        for kind in kinds:
            arch: dict[str, object] = {}
            if kind == "hybrid":
                arch = {k: v for k, v in (("conv", args.conv), ("hidden", args.hidden),
                                          ("layers", args.layers)) if v is not None}
            cfg = TrainConfig(
                kind=kind, name=args.name if args.model != "all" else None, seed=args.seed,
                architecture=arch, demo_episodes=args.demo_episodes,
                dagger_episodes=args.dagger_episodes, expert=args.expert,
                bc=BCConfig(epochs=args.bc_epochs, grad_accum=args.grad_accum,
                            precision=args.precision, device=args.device,
                            num_workers=args.loader_workers, pin_memory=args.pin_memory,
                            prefetch_factor=args.prefetch,
                            grad_checkpointing=args.grad_checkpointing,
                            imitation_weight=args.imitation_weight,
                            distill_weight=args.distill_weight if args.distill_from else 0.0,
                            distill_temperature=args.distill_temperature),
                distill_from=Path(args.distill_from) if args.distill_from else None,
                resumable=args.resumable, observed_speed=args.observed_speed,
                cold_share=args.cold_share, candidate=args.candidate,
                rl_steps=args.rl_steps, eval_episodes=args.eval_episodes,
                validation_episodes=(TrainConfig.validation_episodes
                                     if args.validation_episodes is None
                                     else args.validation_episodes),
                models_dir=Path(args.models_dir), out_dir=Path(args.out_dir),
            )
            train(cfg, scale=scale)


@contextlib.contextmanager
def _ray(args: argparse.Namespace) -> Iterator[None]:
    """Join the cluster at ``--ray-address``, or start a private local Ray (own temp
    dir, ``--num-cpus``) and stop exactly that one afterwards."""
    import ray

    if args.ray_address != "local":
        ray.init(address=args.ray_address)
        try:
            yield
        finally:
            ray.shutdown()
        return
    temp_dir = tempfile.mkdtemp(prefix="ea-train-", dir="/tmp")  # short: socket paths
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False,
             _temp_dir=temp_dir, log_to_driver=True)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def _evaluate(args: argparse.Namespace) -> None:
    import torch

    from edge_allocator.runtime.artifacts import load_artifact, model_names
    from edge_allocator.runtime.torch_backend import load_module
    from edge_allocator.train.agents import baseline_agents, model_agents
    from edge_allocator.train.evaluate import default_scenarios, evaluate, write_report

    torch.set_num_threads(1)
    models_dir = Path(args.models_dir)
    modules = {}
    for name in args.models or model_names(models_dir):
        art = load_artifact(models_dir, name)
        modules[f"{name}-v{art.version}"] = (load_module(art), art.kind)
    agents = {**baseline_agents(), **model_agents(modules)}
    scenarios = [s for s in default_scenarios(args.tasks, observed_speed=args.observed_speed)
                 if not args.scenarios or s.name in args.scenarios]
    results = evaluate(agents, scenarios, episodes=args.episodes)
    write_report(results, Path(args.out_dir))
    print((Path(args.out_dir) / "evaluation.md").read_text())
    print(f"wrote {args.out_dir}/evaluation.md, evaluation.json, evaluation.png")


def _sample(args: argparse.Namespace) -> None:
    from edge_allocator.sim.env import EdgeAllocationEnv, EnvConfig

    env = EdgeAllocationEnv(EnvConfig(args.scenario, min_nodes=args.nodes, max_nodes=args.nodes))
    env.reset(seed=args.seed)
    json.dump(env.request_json(), sys.stdout)
    print()


def _predict(args: argparse.Namespace) -> None:
    from edge_allocator.config import InferenceConfig, ServiceConfig
    from edge_allocator.service import AllocatorService

    payload = json.loads(Path(args.file).read_text() if args.file != "-" else sys.stdin.read())
    svc = AllocatorService(ServiceConfig(  # a one-off answer: no cache, not logged
        models_dir=Path(args.models_dir), inference=InferenceConfig(backend=args.backend),
        cache="none", database_url=None))
    print(json.dumps(svc.allocate_one(payload, args.model).to_dict(), indent=2))


def _report(args: argparse.Namespace) -> None:
    from edge_allocator.store import DecisionLog, format_report, format_shadow_report

    # its own spool: the running service holds the lock on the service's one
    log = DecisionLog(args.db, spool_path=Path(tempfile.mkdtemp()) / "report.jsonl")
    try:
        if args.shadow:
            print(format_shadow_report(log.shadow_report()))
        else:
            print(format_report(log.report()))
    finally:
        log.close()


def _simulate_devices(args: argparse.Namespace) -> None:
    from edge_allocator.config import MqttConfig
    from edge_allocator.live.devices import DeviceFleet, publish_fleet
    from edge_allocator.live.mqtt import Publisher
    from edge_allocator.live.telemetry import Topics

    url = args.broker if "://" in args.broker else f"mqtt://{args.broker}"
    cfg = MqttConfig(url=url, device_prefix=args.prefix, topology_topic=args.topology_topic)
    fleet = DeviceFleet(args.devices, seed=args.seed, tasks_per_tick=args.tasks_per_tick)
    publisher = Publisher(cfg)
    print(f"publishing {fleet.n} devices every {args.interval:g} s to {cfg.url} "
          f"({args.prefix}/<id>, {args.prefix}/batch, topology on {args.topology_topic})",
          file=sys.stderr)
    try:
        sent = publish_fleet(fleet, publisher, Topics(args.prefix, args.topology_topic),
                             args.interval, ticks=args.ticks or None, mode=args.mode,
                             qos=args.qos)
        print(f"published {sent} messages", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="edge-allocator", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="reproduce a shipped model from a seed")
    t.add_argument("--model", choices=["dqn", "ppo", "hybrid", "all"], default="hybrid")
    t.add_argument("--conv", choices=["gcn", "sage", "gat"], default=None)
    t.add_argument("--hidden", type=int, default=None, help="hybrid: embedding width (64)")
    t.add_argument("--layers", type=int, default=None, help="hybrid: graph layers (2)")
    t.add_argument("--name", default=None,
                   help="artifact name under --models-dir (default: the model kind), "
                        "e.g. hybrid_gat")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--demo-episodes", type=int, default=120)
    t.add_argument("--dagger-episodes", type=int, default=40)
    t.add_argument("--bc-epochs", type=int, default=8)
    t.add_argument("--rl-steps", type=int, default=8192)
    t.add_argument("--grad-accum", type=int, default=1, help="mini-batches per optimiser step")
    t.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="behaviour cloning: bf16 autocast, or fp16 autocast + GradScaler (CUDA)")
    t.add_argument("--device", default="cpu", help="where behaviour cloning trains (cpu, cuda)")
    t.add_argument("--loader-workers", type=int, default=0,
                   help="DataLoader processes that collate batches (persistent)")
    t.add_argument("--pin-memory", action="store_true", help="page-locked batches (CUDA)")
    t.add_argument("--prefetch", type=int, default=2, help="batches prepared ahead per worker")
    t.add_argument("--grad-checkpointing", action="store_true",
                   help="recompute GNN layers in backward (less memory on large graphs)")
    t.add_argument("--resumable", action="store_true",
                   help="checkpoint every epoch; rerunning resumes a killed run")
    t.add_argument("--expert", choices=["oracle", "lookahead"], default="oracle",
                   help="who labels demonstrations (lookahead: the planner, ~37 ms/decision)")
    t.add_argument("--imitation-weight", type=float, default=0.0,
                   help="weight of the expert's own choice in the behaviour-cloning target")
    t.add_argument("--distill-from", default=None, metavar="ARTIFACT",
                   help="knowledge distillation from a shipped model (e.g. models/hybrid/1): "
                        "its logits label the demonstrations")
    t.add_argument("--distill-weight", type=float, default=0.7,
                   help="with --distill-from: weight of KL to the teacher (rest: CE to the "
                        "expert's choice)")
    t.add_argument("--distill-temperature", type=float, default=1.0,
                   help="with --distill-from: softening of both softmaxes in the KL term")
    t.add_argument("--observed-speed", action="store_true",
                   help="closed loop: train, validate and evaluate with each node's speed "
                        "learned from earlier completions in the features (as "
                        "/v1/feedback does in service)")
    t.add_argument("--cold-share", type=float, default=0.0,
                   help="with --observed-speed: share of the demonstration and DAgger "
                        "episodes collected without feedback (the cold start)")
    t.add_argument("--candidate", action="store_true",
                   help="ship the new version as a candidate: served when pinned or in "
                        "shadow, never the model's default (the newest non-candidate)")
    t.add_argument("--eval-episodes", type=int, default=10)
    t.add_argument("--validation-episodes", type=int, default=None,
                   help="episodes per validation scenario, for choosing cloned or fine-tuned "
                        "weights and scoring each RL trial (default: TrainConfig's, 6)")
    ray_opts = t.add_argument_group("--pipeline: every stage on Ray")
    ray_opts.add_argument("--pipeline", action="store_true",
                          help="demonstrations as Ray tasks, cloning on Ray Train, RL as a "
                               "Ray Tune sweep; progress bars, curves and tables in --out-dir")
    ray_opts.add_argument("--ray-address", default="local",
                          help="'local' starts a private Ray; else a cluster address")
    ray_opts.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray")
    ray_opts.add_argument("--workers", type=int, default=2,
                          help="Ray Train workers and demonstration tasks")
    ray_opts.add_argument("--strategy", choices=["ddp", "fsdp"], default="ddp")
    ray_opts.add_argument("--gpu", action="store_true", help="one GPU per Ray Train worker")
    ray_opts.add_argument("--cpus-per-worker", type=float, default=1.0)
    ray_opts.add_argument("--sweep-seeds", type=int, nargs="+", default=[0, 1])
    ray_opts.add_argument("--sweep-lrs", type=float, nargs="+", default=[3e-5, 1e-4])
    ray_opts.add_argument("--sweep-ent-coefs", type=float, nargs="+", default=None,
                          help="PPO/hybrid: entropy coefficients, a third grid axis "
                               "(default: RLConfig's one; DQN takes one value)")
    t.add_argument("--models-dir", default=str(MODELS_DIR))
    t.add_argument("--out-dir", default="runs")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="every model and heuristic on held-out seeds")
    e.add_argument("--models", nargs="*", default=None)
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--tasks", type=int, default=200, help="decisions per episode")
    e.add_argument("--scenarios", nargs="*", default=None)
    e.add_argument("--observed-speed", action="store_true",
                   help="closed loop: every agent sees speeds learned from earlier "
                        "completions (same seeds, so paired with a run without)")
    e.add_argument("--models-dir", default=str(MODELS_DIR))
    e.add_argument("--out-dir", default="results")
    e.set_defaults(func=_evaluate)

    s = sub.add_parser("sample", help="print a realistic /v1/allocate request body")
    s.add_argument("--scenario", choices=["synthetic", "melbourne"], default="synthetic")
    s.add_argument("--nodes", type=int, default=20)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_sample)

    pr = sub.add_parser("predict", help="one decision from a JSON file, without a server")
    pr.add_argument("file", help="request body (JSON), or - for stdin")
    pr.add_argument("--model", default=None)
    pr.add_argument("--backend", default="onnx")
    pr.add_argument("--models-dir", default=str(MODELS_DIR))
    pr.set_defaults(func=_predict)

    r = sub.add_parser("report", help="realised outcomes per model version (decision log)")
    r.add_argument("--db", default=DATABASE_URL, help="decision log URL (default: the service's)")
    r.add_argument("--shadow", action="store_true",
                   help="live against shadow per version: agreement, score gaps, and the "
                        "live choice's realised outcome where feedback came back")
    r.set_defaults(func=_report)

    d = sub.add_parser("simulate-devices",
                       help="publish IoT telemetry from the simulator over MQTT")
    d.add_argument("--broker", default="mqtt://127.0.0.1:1883",
                   help="mqtt://host:port (or host:port)")
    d.add_argument("--devices", type=int, default=10, help="devices (nodes), at least 5")
    d.add_argument("--interval", type=float, default=5.0, help="seconds between reports")
    d.add_argument("--ticks", type=int, default=0, help="reports to send; 0: until Ctrl-C")
    d.add_argument("--mode", choices=["both", "device", "batch"], default="both",
                   help="per-device topics, the batch topic, or both (as the original)")
    d.add_argument("--prefix", default="iot/devices")
    d.add_argument("--topology-topic", default="edge-allocator/topology")
    d.add_argument("--qos", type=int, choices=[0, 1, 2], default=1)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--tasks-per-tick", type=int, default=5,
                   help="tasks placed on the simulated network between two reports")
    d.set_defaults(func=_simulate_devices)

    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
