"""Integrated gradients (Sundararajan et al., ICML 2017) with Captum on a learned
policy's torch module: the hybrid GNN, DQN and PPO.

Input: the model's features ``x`` [N, F] of every node, as the decision used them; the
adjacency and the feasibility mask are held fixed, so attributions are over node
features only. Target: the raw score of one node (the value the decision ranked).

Path and baseline: a straight line in the model's normalised feature space (what its
``FeatureNormalizer`` makes of ``x``: log1p on heavy-tailed columns, standardised,
clipped) from 0 to the input. 0 is every node at the training mean of every feature:
"an average node in every position of the same network". Each normalised feature is a
monotone function of one raw feature, so an attribution belongs to that raw feature;
integrating there keeps the log and the clip off the path (the rest of the network is
piecewise linear). Padding slots of the flat models are zero in both, so they get no
attribution.

Completeness (attributions sum to score - baseline score) holds up to the error of the
quadrature: the network is piecewise linear, so its gradient jumps at every ReLU kink
along the path and no rule beats O(1/steps); Gauss-Legendre (Captum's default) is no
better here and its nodes cost O(steps^3) to compute (176 s at 4,096 steps), so the
midpoint rule is used. Captum reports the residual (its convergence delta); the steps
are doubled until it is within ``tolerance`` of the score difference or the step budget
for this N is spent, and the residual is returned either way (``completeness_error``).
Where the score changes little from the baseline but swings along the path, the 1 %
may not be reached: measured on one 20-node state with a gap of 0.017, 0.6 % at 4,096
steps and 0.8 % at 16,384 (an absolute residual of 1e-4).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from threading import Lock
from typing import NamedTuple

import numpy as np
import torch
from captum.attr import IntegratedGradients
from torch import Tensor, nn

from edge_allocator.constants import MASKED_SCORE
from edge_allocator.explain.attribution import Method, NodeAttribution
from edge_allocator.graph import GraphInputs
from edge_allocator.policies.normalizer import FeatureNormalizer
from edge_allocator.runtime.artifacts import load_artifact
from edge_allocator.runtime.torch_backend import load_module

#: Integration steps to start with (midpoint rule), and the most tried: at most
#: STEP_ELEMENTS graph elements (steps x N x N) and never more than MAX_STEPS (16,384
#: steps of a 20-node graph take ~2 s on one core; 1,024 of a 500-node one about as long).
N_STEPS = 64
MAX_STEPS = 16384
MIN_MAX_STEPS = 256
STEP_ELEMENTS = 260_000_000
#: Completeness wanted before more steps stop: |residual| <= TOLERANCE x |score gap|
#: (or ABS_TOLERANCE in score units, for a gap near zero).
TOLERANCE = 0.005
ABS_TOLERANCE = 1e-5
#: Graph elements (N x N per integration step) per forward/backward pass: bounds the
#: memory of one pass (~100 MB of float32 adjacency per pass) whatever N is.
ELEMENTS_PER_PASS = 25_000_000
BASELINE = ("every node at the training mean of every feature (the model's normalised "
            "input 0), same adjacency and feasibility mask; path: a straight line in the "
            "normalised feature space")
METHOD: Method = "integrated_gradients"


class LoadedPolicy(NamedTuple):
    normalizer: FeatureNormalizer  # raw features -> normalised ones
    body: nn.Module  # the module with its normaliser replaced by the identity
    max_nodes: int | None  # flat models' fixed input size


def baseline_features(normalizer: FeatureNormalizer) -> np.ndarray:
    """[F] raw features the normaliser maps to 0 (the baseline, in request units): what a
    perturbation method that feeds raw features (ONNX Runtime) starts from."""
    mean = normalizer.mean.detach().cpu().double().numpy()
    log_mask = normalizer.log_mask.detach().cpu().numpy()
    out: np.ndarray = np.where(log_mask, np.expm1(mean), mean)
    return out


def padded(graph: GraphInputs, pad: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``graph`` as a batch of one padded to ``pad`` nodes (what the flat models take):
    x [1, pad, F], adj [1, pad, pad], mask [1, pad]; padding is zero / False."""
    n, f = graph.x.shape
    x = np.zeros((1, pad, f), np.float32)
    x[0, :n] = graph.x
    adj = np.zeros((1, pad, pad), np.float32)
    adj[0, :n, :n] = graph.adj
    mask = np.zeros((1, pad), bool)
    mask[0, :n] = graph.mask
    return x, adj, mask


def split_normalizer(module: nn.Module) -> tuple[FeatureNormalizer, nn.Module]:
    """(normaliser, a copy of ``module`` that takes normalised features)."""
    body = copy.deepcopy(module).eval()
    normalizer = body.normalizer
    if not isinstance(normalizer, FeatureNormalizer):
        raise TypeError(f"{type(module).__name__} has no normalizer module to split off")
    body.normalizer = nn.Identity()
    for p in body.parameters():
        p.requires_grad_(False)  # gradients are wanted for the input only
    return normalizer, body


class GradientExplainer:
    """Loads each (model, version) once, as a torch module, and attributes its scores."""

    def __init__(self, models_dir: Path, n_steps: int = N_STEPS, max_steps: int = MAX_STEPS,
                 tolerance: float = TOLERANCE) -> None:
        if not 1 <= n_steps <= max_steps:
            raise ValueError(f"GradientExplainer: need 1 <= n_steps={n_steps} <= "
                             f"max_steps={max_steps}")
        self.models_dir = Path(models_dir)
        self.n_steps, self.max_steps, self.tolerance = n_steps, max_steps, tolerance
        self._policies: dict[tuple[str, str], LoadedPolicy] = {}
        self._lock = Lock()

    def policy(self, name: str, version: str) -> LoadedPolicy:
        with self._lock:
            got = self._policies.get((name, version))
            if got is None:
                art = load_artifact(self.models_dir, name, version)
                got = LoadedPolicy(*split_normalizer(load_module(art)), art.max_nodes)
                self._policies[(name, version)] = got
            return got

    def _converged(self, residual: np.ndarray, gaps: np.ndarray) -> bool:
        """Each target's residual within tolerance of its gap and, for a comparison
        (two targets), the difference's within tolerance of the gap difference."""
        if len(gaps) == 2:
            residual, gaps = np.append(residual, residual[0] - residual[1]), \
                np.append(gaps, gaps[0] - gaps[1])
        ok = np.abs(residual) <= np.maximum(self.tolerance * np.abs(gaps), ABS_TOLERANCE)
        return bool(ok.all())

    def attribute(self, name: str, version: str, graph: GraphInputs,
                  targets: Sequence[int]) -> list[NodeAttribution]:
        """One attribution per target node index, all against the same baseline."""
        policy = self.policy(name, version)
        n, f = graph.x.shape
        pad = policy.max_nodes or n
        if n > pad:
            raise ValueError(f"{name} v{version} takes at most {pad} nodes, got {n}")
        x, adj, mask = padded(graph, pad)
        adj_t, mask_t = torch.from_numpy(adj), torch.from_numpy(mask)
        with torch.no_grad():
            z = policy.normalizer(torch.from_numpy(x))
            z[:, n:] = 0.0  # padding: zero in input and baseline
        b = len(targets)
        zt = z.expand(b, pad, f).contiguous()
        base = torch.zeros_like(zt)

        def forward(inp: Tensor) -> Tensor:
            k = inp.shape[0]
            out: Tensor = policy.body(inp, adj_t.expand(k, pad, pad), mask_t.expand(k, pad))
            return out

        with torch.no_grad():
            scores = forward(zt[:1])[0].double().numpy()
            base_scores = forward(base[:1])[0].double().numpy()
        for t in targets:
            if scores[t] <= MASKED_SCORE / 2:
                raise ValueError(f"node index {t} is infeasible: it has no score to explain")
        gaps = np.array([scores[t] - base_scores[t] for t in targets])
        ig = IntegratedGradients(forward)
        per_pass = max(b, ELEMENTS_PER_PASS // (pad * pad))
        most = min(self.max_steps, max(MIN_MAX_STEPS, STEP_ELEMENTS // (pad * pad)))
        steps = min(self.n_steps, most)
        while True:
            attr, delta = ig.attribute(
                zt, baselines=base, target=list(targets), n_steps=steps,
                method="riemann_middle", internal_batch_size=per_pass,
                return_convergence_delta=True)
            if self._converged(delta.detach().double().numpy(), gaps) or steps * 2 > most:
                break
            steps *= 2
        values = attr.detach().double().numpy()[:, :n]
        return [NodeAttribution(int(t), float(scores[t]), float(base_scores[t]), values[k],
                                METHOD, steps) for k, t in enumerate(targets)]
