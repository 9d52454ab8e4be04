"""ResponseAssembler: scores -> decision (mask, pick, confidence, ranking, id)."""

from __future__ import annotations

from ray import serve

from edge_allocator.responses import Decision
from edge_allocator.service.stages import (
    AssembleMeta,
    PreparedState,
    ResponseStage,
    ScoredBatch,
    ScoredOne,
)
from edge_allocator.tracing import configure


@serve.deployment
class ResponseAssembler:
    def __init__(self) -> None:
        configure()
        self.stage = ResponseStage()

    def assemble(self, state: PreparedState, scored: ScoredOne,
                 meta: AssembleMeta) -> Decision:
        return self.stage.assemble(state, scored, meta)

    def assemble_many(self, states: list[PreparedState], scored: ScoredBatch,
                      meta: AssembleMeta) -> list[Decision]:
        return self.stage.assemble_many(states, scored, meta)
