"""How a validated request becomes a decision: the chain of stages, behind one interface.

The ingress picks its chain once (``__init__``/``reconfigure``), never per request:

* ``StagesHere`` builds graphs and assembles responses in this process and asks a
  ``PolicyPort`` for scores. The port is either in this process (``DirectPolicy`` here,
  or the deployment layer's batching policy with ``inline_inference``) or a remote
  deployment behind a handle (the shipped composition).
* The deployment layer's ``SeparateStages`` runs every stage as its own deployment.

Both implement ``Chain``, so everything above them (cache, log, routing, the original
API) is written once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

from edge_allocator.columnar import StateBatch
from edge_allocator.graph_batch import Bucket
from edge_allocator.responses import BatchConfig, Decision, ModelInfo
from edge_allocator.service.columns import DecisionColumns
from edge_allocator.service.stages import (
    AssembleMeta,
    GraphStage,
    ModelKey,
    PolicyStage,
    PreparedState,
    ResponseStage,
    ScoredBatch,
    ScoredOne,
)


class PolicyPort(Protocol):
    """What the rest of the service needs from the policy, wherever it runs."""

    async def infer_one(self, key: ModelKey, state: PreparedState,
                        trace: dict[str, str] | None) -> ScoredOne: ...

    async def infer_batches(self, key: ModelKey, buckets: Sequence[Bucket],
                            trace: dict[str, str] | None) -> ScoredBatch: ...

    async def describe(self) -> list[ModelInfo]: ...

    async def failures(self) -> dict[str, str]: ...

    async def batch_config(self) -> BatchConfig: ...

    async def check_health(self) -> None: ...


class Chain(Protocol):
    """Validated request(s) -> decision(s)."""

    @property
    def policy(self) -> PolicyPort: ...

    async def decide_one(self, state: StateBatch, meta: AssembleMeta) -> Decision: ...

    async def decide_many(self, batch: StateBatch, meta: AssembleMeta) -> DecisionColumns: ...


class DirectPolicy:
    """A ``PolicyStage`` called directly: no dynamic batching (each call is its own
    batch). For the CLI and in-process use; the served app batches with ``@serve.batch``."""

    def __init__(self, stage: PolicyStage, batch: BatchConfig) -> None:
        self.stage = stage
        self.batch = batch
        self.node = f"pid-{os.getpid()}"

    async def infer_one(self, key: ModelKey, state: PreparedState,
                        trace: dict[str, str] | None) -> ScoredOne:
        scores = self.stage.run(key, [state.graph], trace)[0]
        return ScoredOne(scores, 1, self.stage.backend_of(key), self.node)

    async def infer_batches(self, key: ModelKey, buckets: Sequence[Bucket],
                            trace: dict[str, str] | None) -> ScoredBatch:
        scores = self.stage.run_batches(key, [b.graphs for b in buckets], trace)
        return ScoredBatch(scores, self.stage.backend_of(key), self.node)

    async def describe(self) -> list[ModelInfo]:
        return self.stage.describe()

    async def failures(self) -> dict[str, str]:
        return {f"{k.name} v{k.version}": why for k, why in self.stage.failures.items()}

    async def batch_config(self) -> BatchConfig:
        return self.batch

    async def check_health(self) -> None:
        self.stage.check()


class StagesHere:
    """Graph building and assembly in this process; the policy behind ``policy``."""

    def __init__(self, policy: PolicyPort, graphs: GraphStage | None = None) -> None:
        self._policy = policy
        self.graphs = graphs or GraphStage()
        self.assembler = ResponseStage()

    @property
    def policy(self) -> PolicyPort:
        return self._policy

    async def decide_one(self, state: StateBatch, meta: AssembleMeta) -> Decision:
        prepared = self.graphs.prepare(state, meta.trace)
        scored = await self._policy.infer_one(meta.model, prepared, meta.trace)
        return self.assembler.assemble(prepared, scored, meta)

    async def decide_many(self, batch: StateBatch, meta: AssembleMeta) -> DecisionColumns:
        buckets = self.graphs.prepare_batch(batch, meta.trace)
        scored = await self._policy.infer_batches(meta.model, buckets, meta.trace)
        return self.assembler.assemble_batch(batch, buckets, scored, meta)
