"""Turn a trained module into a versioned artifact: weights, ONNX, manifest.

The ONNX graph has dynamic batch and node axes for the hybrid model (any N) and a
dynamic batch axis for the flat models (N fixed at ``max_nodes``). Export is verified
against PyTorch on random graphs of several sizes before the manifest is written.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from edge_allocator.graph import FEATURE_NAMES, LOG_FEATURES, NODE_TYPE_COLUMN, NUM_FEATURES
from edge_allocator.runtime.artifacts import ONNX, WEIGHTS, next_version, write_manifest

if TYPE_CHECKING:
    from edge_allocator.policies.normalizer import FeatureNormalizer

ONNX_OPSET = 17
PARITY_RTOL = 1e-4
PARITY_ATOL = 1e-3


def _example(module: nn.Module, n: int, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, n, NUM_FEATURES, generator=g) * 50.0
    x[..., NODE_TYPE_COLUMN] = torch.randint(0, 3, (batch, n), generator=g).float()
    adj = torch.rand(batch, n, n, generator=g) * (torch.rand(batch, n, n, generator=g) < 0.2)
    adj = (adj + adj.transpose(1, 2)) / 2 + torch.eye(n)
    mask = torch.rand(batch, n, generator=g) < 0.8
    mask[:, 0] = True
    return x, adj, mask


def export_onnx(module: nn.Module, path: Path) -> None:
    module = module.eval()
    fixed = (getattr(module.config, "max_nodes", None)
             if module.__class__.__name__ != "HybridGNNPolicy" else None)
    n = fixed or 8
    dyn_nodes = fixed is None
    axes: dict[str, dict[int, str]] = {
        "x": {0: "batch"}, "adj": {0: "batch"}, "mask": {0: "batch"}, "scores": {0: "batch"},
    }
    if dyn_nodes:
        axes = {
            "x": {0: "batch", 1: "nodes"}, "adj": {0: "batch", 1: "nodes", 2: "nodes"},
            "mask": {0: "batch", 1: "nodes"}, "scores": {0: "batch", 1: "nodes"},
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, _example(module, n, 2, 0), str(path),
            input_names=["x", "adj", "mask"], output_names=["scores"],
            dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False,
        )


def check_onnx_parity(module: nn.Module, path: Path, sizes: tuple[int, ...]) -> float:
    """Largest |onnx - torch| over feasible nodes of random graphs; raises on mismatch."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for k, n in enumerate(sizes):
        x, adj, mask = _example(module, n, 3, 100 + k)
        with torch.inference_mode():
            ref = module(x, adj, mask).numpy()
        feed = {"x": x.numpy(), "adj": adj.numpy(), "mask": mask.numpy()}
        out = sess.run(None, {i.name: feed[i.name] for i in sess.get_inputs()})[0]
        m = mask.numpy()
        if not np.allclose(out[m], ref[m], rtol=PARITY_RTOL, atol=PARITY_ATOL):
            raise AssertionError(f"ONNX export differs from PyTorch at N={n}")
        worst = max(worst, float(np.abs(out[m] - ref[m]).max()))
    return worst


def save_artifact(
    module: nn.Module,
    kind: str,
    architecture: dict[str, Any],
    models_dir: Path,
    name: str | None = None,
    training: dict[str, Any] | None = None,
    evaluation: Any = None,
) -> Path:
    """Write ``models/<name>/<next version>/`` and return its path."""
    name = name or kind
    version = next_version(models_dir, name)
    path = models_dir / name / version
    path.mkdir(parents=True, exist_ok=False)
    torch.save(module.state_dict(), path / WEIGHTS)
    export_onnx(module, path / ONNX)
    fixed = architecture.get("max_nodes") if kind != "hybrid" else None
    parity = check_onnx_parity(module, path / ONNX, (fixed,) if fixed else (1, 7, 20, 100, 300))
    norm = cast("FeatureNormalizer", module.normalizer)
    n_dim = fixed if fixed else -1
    write_manifest(path, {
        "name": name,
        "version": version,
        "kind": kind,
        "architecture": architecture,
        "inputs": [
            {"name": "x", "dtype": "float32", "shape": [-1, n_dim, NUM_FEATURES]},
            *([] if fixed else [{"name": "adj", "dtype": "float32", "shape": [-1, n_dim, n_dim]}]),
            {"name": "mask", "dtype": "bool", "shape": [-1, n_dim]},
        ],
        "outputs": [{"name": "scores", "dtype": "float32", "shape": [-1, n_dim],
                     "meaning": "Q-values (reward units)" if kind == "dqn" else "logits"}],
        "features": {"names": list(FEATURE_NAMES), "log1p": list(LOG_FEATURES)},
        "normalization": {"mean": norm.mean.tolist(), "std": norm.std.tolist()},
        "onnx": {"opset": ONNX_OPSET, "max_abs_diff_vs_torch": parity},
        "training": training or {},
        "evaluation": evaluation or [],
    })
    return path
