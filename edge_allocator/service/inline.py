"""Every stage in one process, synchronous: the CLI's ``predict``, and the reference the
Ray Serve application must agree with (tests compare their decisions)."""

from __future__ import annotations

import asyncio
from typing import Any

from edge_allocator.config import ServiceConfig
from edge_allocator.responses import BatchConfig, Decision
from edge_allocator.service.api import AllocatorApi
from edge_allocator.service.chain import DirectPolicy, StagesHere
from edge_allocator.service.stages import ModelKey, PolicyStage


def in_process_api(cfg: ServiceConfig) -> AllocatorApi:
    """The v1 API with the policy in this process (no dynamic batching)."""
    stage = PolicyStage(cfg.models_dir, cfg.inference.backend, cfg.inference.device)
    api = AllocatorApi(cfg, StagesHere(DirectPolicy(stage, BatchConfig(
        cfg.inference.max_batch_size, cfg.inference.batch_wait_timeout_s))), replica_tag="inline")
    stage.load([ModelKey(*k) for k in
                api.router.versions_in_use() + api.router.shadow_versions()])
    return api


class AllocatorService:
    def __init__(self, cfg: ServiceConfig | None = None):
        self.cfg = cfg or ServiceConfig(database_url=None, cache="none")
        self.api = in_process_api(self.cfg)

    def allocate_one(self, payload: dict[str, Any], model: str | None = None) -> Decision:
        return self.allocate_many({"states": [payload], "model": model or payload.get("model")})[0]

    def allocate_many(self, body: dict[str, Any]) -> list[Decision]:
        return asyncio.run(self.api.allocate_batch(body)).decisions

    def close(self) -> None:
        self.api.close()
