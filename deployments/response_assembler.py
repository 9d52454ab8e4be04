"""ResponseAssembler: scores -> decision (mask, pick, confidence, ranking, id)."""

from __future__ import annotations

from ray import serve

from edge_allocator.columnar import StateBatch
from edge_allocator.graph_batch import Bucket
from edge_allocator.responses import Decision
from edge_allocator.service.columns import DecisionColumns
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

    def assemble_batch(self, batch: StateBatch, buckets: list[Bucket], scored: ScoredBatch,
                       meta: AssembleMeta) -> DecisionColumns:
        return self.stage.assemble_batch(batch, buckets, scored, meta)
