"""Stages on other deployments, behind the same interfaces as the in-process ones.

``RemotePolicy`` is a ``PolicyPort`` over a PolicyInference handle; ``SeparateStages`` is
a ``Chain`` whose three stages are each their own deployment: it passes
``DeploymentResponse``s from stage to stage without awaiting them, so tensors travel
through the object store and the ingress awaits once.

Failures are classified by type: Serve's backpressure is "overloaded"; a replica that
died or became unreachable mid-request is "lost"; both are a 503 with Retry-After (the
client may retry either), with a message that says which. Every call here only computes
(scores, graphs, answers, attributions: the decision log is the ingress's), so a call
whose replica was lost is sent once more before it becomes that 503: the router has
learnt of the loss from the failure and routes the second try to another replica. A
client error raised by a stage crosses the process boundary intact (``RequestError``
pickles itself).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import (
    BackPressureError,
    DeploymentUnavailableError,
    ReplicaUnavailableError,
)
from ray.serve.handle import DeploymentHandle

from edge_allocator.columnar import StateBatch
from edge_allocator.explain.attribution import Attribution, RuleResult
from edge_allocator.graph import GraphInputs
from edge_allocator.graph_batch import Bucket
from edge_allocator.responses import BatchConfig, Decision, ModelInfo
from edge_allocator.schema import RequestError, ServiceUnavailable
from edge_allocator.service.chain import PolicyPort
from edge_allocator.service.columns import DecisionColumns
from edge_allocator.service.stages import (
    AssembleMeta,
    ModelKey,
    PreparedState,
    ScoredBatch,
    ScoredOne,
)

T = TypeVar("T")
#: A replica that is gone or cannot be reached: the request may succeed on another
#: (RayActorError covers ActorDiedError and ActorUnavailableError).
LOST_REPLICA = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)


async def call(response: Awaitable[T], again: Callable[[], Awaitable[T]] | None = None) -> T:
    """Await a stage; client errors pass through, overload and lost replicas become 503s.
    ``again``: how to send the same call once more when its replica was lost (for calls
    without side effects only; see ``call_idempotent``)."""
    try:
        return await response
    except BackPressureError as exc:
        raise ServiceUnavailable(f"overloaded: {exc}; retry later") from None
    except LOST_REPLICA as exc:
        if again is not None:
            return await call(again())
        raise ServiceUnavailable(
            f"a replica was lost mid-request ({type(exc).__name__}); retry") from None
    except RayTaskError as exc:  # a stage raised: unwrap a client error it carried
        if isinstance(exc.cause, RequestError):
            raise exc.cause from None
        raise


async def call_idempotent(send: Callable[[], Awaitable[T]]) -> T:
    """``call(send())``, sent once more if the replica it went to was lost."""
    return await call(send(), again=send)


class RemotePolicy:
    """PolicyInference on its own replicas."""

    def __init__(self, handle: DeploymentHandle[Any]) -> None:
        self.handle = handle

    async def infer_one(self, key: ModelKey, state: PreparedState,
                        trace: dict[str, str] | None) -> ScoredOne:
        result: ScoredOne = await call_idempotent(
            lambda: self.handle.infer_one.remote(key, state, trace))
        return result

    async def infer_batches(self, key: ModelKey, buckets: Sequence[Bucket],
                            trace: dict[str, str] | None) -> ScoredBatch:
        result: ScoredBatch = await call_idempotent(
            lambda: self.handle.infer_batches.remote(key, list(buckets), trace))
        return result

    async def describe(self) -> list[ModelInfo]:
        result: list[ModelInfo] = await call_idempotent(self.handle.describe.remote)
        return result

    async def failures(self) -> dict[str, str]:
        result: dict[str, str] = await call_idempotent(self.handle.failures.remote)
        return result

    async def batch_config(self) -> BatchConfig:
        result: BatchConfig = await call_idempotent(self.handle.batch_config.remote)
        return result

    async def check_health(self) -> None:
        """PolicyInference runs its own health checks; nothing to do from here."""


class SeparateStages:
    """GraphBuilder -> PolicyInference -> ResponseAssembler, chained without awaiting."""

    def __init__(self, graph: DeploymentHandle[Any], policy: DeploymentHandle[Any],
                 assembler: DeploymentHandle[Any]) -> None:
        self.graph = graph
        self.policy_handle = policy
        self.assembler = assembler
        self._policy = RemotePolicy(policy)

    @property
    def policy(self) -> PolicyPort:
        return self._policy

    async def decide_one(self, state: StateBatch, meta: AssembleMeta) -> Decision:
        def send() -> Awaitable[Decision]:
            prepared = self.graph.prepare.remote(state, meta.trace)
            scored = self.policy_handle.infer_one.remote(meta.model, prepared, meta.trace)
            return self.assembler.assemble.remote(prepared, scored, meta)
        return await call_idempotent(send)

    async def decide_many(self, batch: StateBatch, meta: AssembleMeta) -> DecisionColumns:
        def send() -> Awaitable[DecisionColumns]:
            buckets = self.graph.prepare_batch.remote(batch, meta.trace)
            scored = self.policy_handle.infer_batches.remote(meta.model, buckets, meta.trace)
            return self.assembler.assemble_batch.remote(
                batch, buckets, scored, meta)
        return await call_idempotent(send)


class RemoteExplainer:
    """An ``ExplainPort`` over the Explainer deployment's handle."""

    def __init__(self, handle: DeploymentHandle[Any]) -> None:
        self.handle = handle

    async def attribute(self, models_dir: str, key: ModelKey, graph: GraphInputs,
                        target: int, compare: int | None) -> Attribution:
        result: Attribution = await call_idempotent(lambda: self.handle.attribute.remote(
            models_dir, key, graph, target, compare))
        return result

    async def explain_rule(self, name: str, graph: GraphInputs, node_ids: list[str],
                           target: int | None, compare: int | None) -> RuleResult:
        result: RuleResult = await call_idempotent(lambda: self.handle.explain_rule.remote(
            name, graph, node_ids, target, compare))
        return result
