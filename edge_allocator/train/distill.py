"""Knowledge distillation: a smaller policy (the student) learns a shipped one's (the
teacher's) scores as well as the expert's choices.

Why: inference cost grows with the hidden width squared, and a student trained on the
teacher's whole softmax over feasible nodes (not only on the expert's argmax) learns
how the teacher ranks every alternative, which a narrow network cannot recover from
hard labels alone. The pipeline (``TrainConfig.distill_from``) collects demonstrations
as usual, labels every decision with the teacher's logits here, and behaviour cloning
then minimises ``BCConfig.distill_weight`` x KL(teacher || student) + the rest x
cross-entropy to the expert's choice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_allocator.graph import collate
from edge_allocator.runtime.artifacts import Artifact, verify
from edge_allocator.train.demos import Demonstrations


def load_teacher(path: Path) -> tuple[nn.Module, Artifact]:
    """The eager module of the artifact folder ``path`` (``models/<name>/<version>``),
    checksum-verified like every artifact the service loads."""
    from edge_allocator.runtime.torch_backend import load_module

    path = Path(path)
    art = Artifact(path.parent.name, path.name, path, verify(path))
    return load_module(art), art


@torch.inference_mode()
def _scores(demos: Demonstrations, module: nn.Module, pad_to: int | None,
            batch_size: int) -> list[np.ndarray]:
    """``module``'s [N] scores for every decision, in order (graphs of similar size
    batched together, so padding stays small)."""
    module = module.eval()
    order = sorted(range(len(demos)), key=lambda i: demos.x[i].shape[0])
    out: list[np.ndarray | None] = [None] * len(demos)
    for k in range(0, len(order), batch_size):
        chunk = order[k: k + batch_size]
        b = collate([demos.graph(i) for i in chunk], pad_to=pad_to)
        scores = module(torch.from_numpy(b.x), torch.from_numpy(b.adj),
                        torch.from_numpy(b.mask)).numpy()
        for j, i in enumerate(chunk):
            out[i] = scores[j, : demos.x[i].shape[0]].astype(np.float32)
    return [s for s in out if s is not None]


def label_with_teacher(demos: Demonstrations, teacher: nn.Module, pad_to: int | None = None,
                       batch_size: int = 256) -> None:
    """Fill ``demos.teacher`` with the teacher's [N] logits for every decision."""
    demos.teacher = _scores(demos, teacher, pad_to, batch_size)


def agreement(demos: Demonstrations, student: nn.Module, pad_to: int | None = None,
              batch_size: int = 256) -> float:
    """Share of decisions where the student picks the teacher's node (a cheap proxy of
    how closely it imitates; the decision-quality gate is the paired evaluation)."""
    if not demos.teacher:
        raise ValueError("agreement: the demonstrations have no teacher logits")
    same = 0
    for i, s in enumerate(_scores(demos, student, pad_to, batch_size)):
        m = demos.mask[i]
        same += int(np.argmax(np.where(m, s, -np.inf))
                    == np.argmax(np.where(m, demos.teacher[i], -np.inf)))
    return same / max(len(demos), 1)
