"""Inference backends behind one interface: numpy in, numpy scores out.

* ``onnx``: ONNX Runtime on the exported graph; the CPU default. Never imports torch,
  so a replica serving it saves the memory and start-up time of torch.
* ``onnx-int8``: the same graph with dynamic int8 quantisation of its MatMul weights
  (onnxruntime.quantization), built once and cached beside nothing in the artifact (a
  temp dir), so artifacts stay immutable.
* ``torch``: eager PyTorch under ``inference_mode`` on the selected device.
* ``torchscript``: the module traced with ``torch.jit.trace`` (any N: the graph is
  traced with symbolic shapes by using dynamic inputs of two sizes and checking).
* ``torch-pruned``: eager PyTorch with 50% of each Linear weight magnitude-pruned.

Shapes: x [B, N, F] float32, adj [B, N, N] float32, mask [B, N] bool -> [B, N] float32.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np

from edge_allocator.runtime.artifacts import ONNX, Artifact

if TYPE_CHECKING:
    from edge_allocator.policies.normalizer import FeatureNormalizer

BACKENDS = ("onnx", "onnx-int8", "torch", "torchscript", "torch-pruned")
PRUNE_AMOUNT = 0.5


class Backend(Protocol):
    name: str

    def run(self, x: np.ndarray, adj: np.ndarray, mask: np.ndarray) -> np.ndarray: ...


class OnnxBackend:
    name = "onnx"

    def __init__(self, artifact: Artifact, device: str = "auto", model_path: Path | None = None,
                 intra_op_threads: int = 1):
        import onnxruntime as ort

        from edge_allocator.runtime.device import onnx_providers

        # Measured side by side (benchmarks/model_routes.py, results/model_routes.md): no
        # other session option is reliably faster for the hybrid. The optimisation level
        # (disable/basic/extended/all), the memory pattern, execution mode and an offline
        # pre-optimised file are all within noise (the graph is ~40 MatMul/Add/Relu
        # nodes, already what the optimiser would make of it). More intra-op threads pay
        # at batch 256 only when a core is idle (1.69x) and cost when it is busy (0.83x)
        # and at batch 1 always: a replica on a fractional CPU keeps one, and Serve
        # scales by replicas.
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = model_path or artifact.file(ONNX)
        self.session = ort.InferenceSession(str(path), opts, providers=onnx_providers(device))
        self.providers = self.session.get_providers()
        # flat models ignore the adjacency, so their graph has no 'adj' input
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, x: np.ndarray, adj: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feed = {"x": x, "adj": adj, "mask": mask}
        scores: np.ndarray = self.session.run(None, {k: feed[k] for k in self.inputs})[0]
        return scores


_INT8_LOCK = threading.Lock()


class OnnxInt8Backend(OnnxBackend):
    name = "onnx-int8"

    def __init__(self, artifact: Artifact, device: str = "auto", intra_op_threads: int = 1):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        out = Path(tempfile.gettempdir()) / "edge_allocator_int8" / artifact.name / artifact.version
        target = out / f"model.int8.{artifact.manifest['files'][ONNX][:16]}.onnx"
        with _INT8_LOCK:
            if not target.exists():
                out.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(".partial.onnx")
                quantize_dynamic(str(artifact.file(ONNX)), str(tmp), weight_type=QuantType.QInt8)
                tmp.replace(target)
        super().__init__(artifact, device, model_path=target, intra_op_threads=intra_op_threads)


class TorchBackend:
    name = "torch"

    def __init__(self, artifact: Artifact, device: str = "auto", prune: bool = False,
                 script: bool = False):
        import torch

        from edge_allocator.runtime.device import torch_device
        from edge_allocator.runtime.torch_backend import load_module

        self._torch = torch
        self.device = torch_device(device)
        module = load_module(artifact)
        if prune:
            from torch.nn.utils import prune as tprune

            for layer in module.modules():
                if isinstance(layer, torch.nn.Linear):
                    # torch.nn.utils.prune has no annotations
                    tprune.l1_unstructured(  # type: ignore[no-untyped-call]
                        layer, "weight", amount=PRUNE_AMOUNT)
                    tprune.remove(layer, "weight")  # type: ignore[no-untyped-call]
            self.name = "torch-pruned"
        self.module = module.to(self.device).eval()
        if script:
            n = artifact.max_nodes or 6
            example = (
                torch.rand(2, n, cast("FeatureNormalizer", module.normalizer).mean.shape[0],
                           device=self.device),
                torch.eye(n, device=self.device).expand(2, n, n).contiguous(),
                torch.ones(2, n, dtype=torch.bool, device=self.device),
            )
            with torch.inference_mode():
                traced = torch.jit.trace(self.module, example)  # type: ignore[no-untyped-call]
                self.module = torch.jit.freeze(traced.eval())
            self.name = "torchscript"

    def run(self, x: np.ndarray, adj: np.ndarray, mask: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.module(
                torch.from_numpy(x).to(self.device),
                torch.from_numpy(adj).to(self.device),
                torch.from_numpy(mask).to(self.device),
            )
        scores: np.ndarray = out.float().cpu().numpy()
        return scores


def make_backend(artifact: Artifact, backend: str = "onnx", device: str = "auto") -> Backend:
    """A backend by name; an unknown name is a ValueError naming the choices."""
    if backend == "onnx":
        return OnnxBackend(artifact, device)
    if backend == "onnx-int8":
        return OnnxInt8Backend(artifact, device)
    if backend == "torch":
        return TorchBackend(artifact, device)
    if backend == "torchscript":
        return TorchBackend(artifact, device, script=True)
    if backend == "torch-pruned":
        return TorchBackend(artifact, device, prune=True)
    raise ValueError(f"backend={backend!r} is unknown; use one of {BACKENDS}")
