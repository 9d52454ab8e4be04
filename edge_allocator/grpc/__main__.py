"""``python -m edge_allocator.grpc``: regenerate the stubs in place."""

from edge_allocator.grpc import generate

generate()
