"""What the service reports as it works, without knowing who listens.

The core library never imports Ray Serve, so the service calls an ``Observer``; the
deployment layer passes one that updates Ray Serve metrics, everyone else the
``NullObserver``. Every tag value comes from a small fixed set (model names and versions
that are served, backends, node types, route templates, status codes): never raw request
data, so label sets stay bounded.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

#: Names of node types 0, 1, 2 for metric tags.
NODE_TYPE_NAMES: tuple[str, ...] = ("gateway", "edge", "cloud")
#: Route tag for requests that matched no route (never the raw path: unbounded labels).
UNMATCHED_ROUTE = "unmatched"
#: What became of a live decision offered to the shadow candidate: scored (and whether
#: the candidate chose the same node), dropped (queue full, or the shadow was changed
#: before it ran) or failed (the candidate raised or is not loaded).
SHADOW_OUTCOMES: tuple[str, ...] = ("agree", "disagree", "dropped", "failed")


class DecisionCounts(Counter[tuple[str, str, str, str, bool]]):
    """Decisions by (model, version, backend, node type name, cached): one metric update
    per tag set rather than one per decision."""


class Observer(Protocol):
    def decisions(self, counts: DecisionCounts) -> None: ...

    def latency(self, model: str, route: str, elapsed_ms: float) -> None: ...

    def cache_lookup(self, hit: bool) -> None: ...

    def error(self, status: int, route: str) -> None: ...

    def feedback(self, success: bool, completion_ms: float | None) -> None: ...

    def shadow(self, model: str, version: str, outcome: str, n: int) -> None:
        """``n`` live decisions of ``model`` offered to its candidate ``version`` ended as
        ``outcome`` (one of ``SHADOW_OUTCOMES``). Shadow decisions are counted here only,
        never by ``decisions`` or ``latency``."""


class NullObserver:
    def decisions(self, counts: DecisionCounts) -> None:
        pass

    def latency(self, model: str, route: str, elapsed_ms: float) -> None:
        pass

    def cache_lookup(self, hit: bool) -> None:
        pass

    def error(self, status: int, route: str) -> None:
        pass

    def feedback(self, success: bool, completion_ms: float | None) -> None:
        pass

    def shadow(self, model: str, version: str, outcome: str, n: int) -> None:
        pass
