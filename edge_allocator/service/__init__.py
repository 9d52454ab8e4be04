"""Serving logic as plain classes that run and test without Ray.

``deployments/`` wraps these in Ray Serve deployments; ``AllocatorService`` runs all
stages in one process (CLI ``predict``, the inline mode, and tests).
"""

from edge_allocator.service.config import ModelSpec, ServiceConfig
from edge_allocator.service.inline import AllocatorService

__all__ = ["AllocatorService", "ModelSpec", "ServiceConfig"]
