"""The service as plain classes, tested without a cluster.

``api.AllocatorApi`` (v1) and ``legacy.LegacyApi`` (the original API) answer requests
through a ``chain.Chain`` of the stages in ``stages``; ``http.FrontDoor`` maps HTTP onto
them. ``deployments/`` wraps these in Ray Serve deployments; ``AllocatorService`` runs
everything in one process (the CLI's ``predict``, and the reference the served app must
agree with).
"""

from edge_allocator.config import ModelSpec, ServiceConfig
from edge_allocator.service.inline import AllocatorService

__all__ = ["AllocatorService", "ModelSpec", "ServiceConfig"]
