"""All stages in one process: the CLI's ``predict``, and the reference the Ray Serve
application must agree with (tests compare their decisions)."""

from __future__ import annotations

import time
from typing import Any

from edge_allocator.schema import BatchAllocateRequest, parse
from edge_allocator.service.config import ServiceConfig
from edge_allocator.service.frontend import Frontend
from edge_allocator.service.stages import (
    AssembleMeta,
    GraphStage,
    ModelKey,
    PolicyStage,
    ResponseStage,
)


class AllocatorService:
    def __init__(self, cfg: ServiceConfig | None = None):
        self.cfg = cfg or ServiceConfig(database_url=None, cache="none")
        self.frontend = Frontend(self.cfg, replica_tag="inline")
        self.graphs = GraphStage()
        self.policy = PolicyStage(self.cfg.models_dir, self.cfg.backend, self.cfg.device)
        self.policy.load([ModelKey(*k) for k in self.frontend.router.versions_in_use()])
        self.assembler = ResponseStage()

    def allocate_one(self, payload: dict[str, Any], model: str | None = None) -> dict[str, Any]:
        return self.allocate_many({"states": [payload], "model": model or payload.get("model")})[0]

    def allocate_many(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        req = parse(BatchAllocateRequest, body)
        key = ModelKey(*self.frontend.router.pick(req.model or req.states[0].model))
        states = self.graphs.prepare_many(req.states)
        scores = self.policy.run(key, [s.graph for s in states])
        meta = AssembleMeta(key, self.cfg.backend, len(states), t0)
        return self.assembler.assemble_many(states, scores, meta)

    def close(self) -> None:
        self.frontend.close()

