"""The gRPC API's protobuf messages and service stubs, generated from
``edge_allocator.proto`` beside this file and committed. After editing the .proto,
regenerate them from the repository root with (grpcio-tools, pinned in the dev extra)::

    python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \\
        edge_allocator/grpc/edge_allocator.proto

or ``python -m edge_allocator.grpc`` (the same command). A test regenerates them into a
temporary directory and fails when they differ from the committed ones.

Nothing here imports Ray. ``edge_allocator.service.grpc_api`` converts these messages to
and from what ``AllocatorApi`` takes and returns.
"""

from __future__ import annotations

from pathlib import Path

#: The repository root (protoc's include path: the generated modules import each other as
#: ``edge_allocator.grpc.*``).
ROOT = Path(__file__).resolve().parent.parent.parent
PROTO = "edge_allocator/grpc/edge_allocator.proto"
#: The generated files, relative to ROOT.
GENERATED = ("edge_allocator/grpc/edge_allocator_pb2.py",
             "edge_allocator/grpc/edge_allocator_pb2.pyi",
             "edge_allocator/grpc/edge_allocator_pb2_grpc.py")


def protoc_args(out: Path) -> list[str]:
    """protoc's arguments that write the stubs under ``out`` (ROOT: in place)."""
    return ["grpc_tools.protoc", "-I", str(ROOT), f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", str(ROOT / PROTO)]


def generate(out: Path = ROOT) -> None:
    """Run protoc (needs grpcio-tools, a dev dependency)."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    if protoc.main(protoc_args(out)) != 0:
        raise RuntimeError(f"protoc failed on {PROTO}")
