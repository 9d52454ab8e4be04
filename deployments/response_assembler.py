"""ResponseAssembler: scores -> decision (mask, pick, confidence, ranking, id)."""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from edge_allocator.service.stages import AssembleMeta, PreparedState, ResponseStage
from edge_allocator.tracing import configure


@serve.deployment
class ResponseAssembler:
    def __init__(self) -> None:
        configure()
        self.stage = ResponseStage()

    def assemble(self, state: PreparedState, scored: tuple[np.ndarray, int],
                 meta: AssembleMeta) -> dict[str, Any]:
        scores, batch_size = scored
        return self.stage.assemble(state, scores, meta._replace(batch_size=batch_size))

    def assemble_many(self, states: list[PreparedState], scores: list[np.ndarray],
                      meta: AssembleMeta) -> list[dict[str, Any]]:
        return self.stage.assemble_many(states, scores, meta)
