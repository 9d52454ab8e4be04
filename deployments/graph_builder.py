"""GraphBuilder: validated requests -> model inputs, with the topology cache."""

from __future__ import annotations

from ray import serve

from edge_allocator.columnar import StateBatch
from edge_allocator.graph_batch import Bucket
from edge_allocator.service.stages import GraphStage, PreparedState
from edge_allocator.tracing import configure


@serve.deployment
class GraphBuilder:
    def __init__(self) -> None:
        configure()
        self.stage = GraphStage()

    def prepare(self, state: StateBatch,
                trace: dict[str, str] | None = None) -> PreparedState:
        return self.stage.prepare(state, trace)

    def prepare_batch(self, batch: StateBatch,
                      trace: dict[str, str] | None = None) -> list[Bucket]:
        return self.stage.prepare_batch(batch, trace)
