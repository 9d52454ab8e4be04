"""Device selection: CUDA, then Apple MPS, then CPU; and ONNX Runtime providers."""

from __future__ import annotations


def torch_device(preference: str = "auto") -> str:
    """'auto' picks cuda -> mps -> cpu; an explicit device that is absent is an error,
    not a silent fallback (a GPU config on a CPU node should fail loudly)."""
    import torch

    if preference == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={preference!r} requested but CUDA is not available")
    return preference


def onnx_providers(preference: str = "auto") -> list[str]:
    """ORT's CUDA provider first where it is installed (onnxruntime-gpu), CPU always."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if preference in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if preference == "cuda":
        raise RuntimeError(
            f"device='cuda' requested but ONNX Runtime has no CUDA provider (have {available})"
        )
    return ["CPUExecutionProvider"]
