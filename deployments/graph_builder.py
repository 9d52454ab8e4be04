"""GraphBuilder: validated requests -> model inputs, with the topology cache."""

from __future__ import annotations

from ray import serve

from edge_allocator.schema import AllocateRequest
from edge_allocator.service.stages import GraphStage, PreparedState


@serve.deployment
class GraphBuilder:
    def __init__(self) -> None:
        self.stage = GraphStage()

    def prepare(self, request: AllocateRequest) -> PreparedState:
        return self.stage.prepare(request)

    def prepare_many(self, requests: list[AllocateRequest]) -> list[PreparedState]:
        return self.stage.prepare_many(requests)
