"""ResponseAssembler: scores -> decision (mask, pick, confidence, ranking, id)."""

from __future__ import annotations

from typing import Any

import numpy as np
from ray import serve

from edge_allocator.service.stages import AssembleMeta, PreparedState, ResponseStage
from edge_allocator.tracing import configure


@serve.deployment(max_ongoing_requests=128, ray_actor_options={"num_cpus": 0.1})
class ResponseAssembler:
    def __init__(self) -> None:
        configure()
        self.stage = ResponseStage()

    def assemble(self, state: PreparedState, scored: tuple[np.ndarray, int, str],
                 meta: AssembleMeta) -> dict[str, Any]:
        scores, batch_size, node = scored
        resp = self.stage.assemble(state, scores, meta._replace(batch_size=batch_size))
        resp["inference_node"] = node
        return resp

    def assemble_many(self, states: list[PreparedState], scores: list[np.ndarray],
                      meta: AssembleMeta) -> list[dict[str, Any]]:
        return self.stage.assemble_many(states, scores, meta)
