"""GraphBuilder: validated requests -> model inputs, with the topology cache."""

from __future__ import annotations

from ray import serve

from edge_allocator.schema import AllocateRequest
from edge_allocator.service.stages import GraphStage, PreparedState
from edge_allocator.tracing import configure


@serve.deployment
class GraphBuilder:
    def __init__(self) -> None:
        configure()
        self.stage = GraphStage()

    def prepare(self, request: AllocateRequest,
                trace: dict[str, str] | None = None) -> PreparedState:
        return self.stage.prepare(request, trace)

    def prepare_many(self, requests: list[AllocateRequest],
                     trace: dict[str, str] | None = None) -> list[PreparedState]:
        return self.stage.prepare_many(requests, trace)
