"""Model artifacts: ``models/<name>/<version>/`` with a manifest, weights and ONNX.

Follows the model-repository habit: numbered version folders are never overwritten, the
manifest types inputs and outputs (-1 for variable batch/node dimensions), and the
newest version is served unless one is pinned. Every file's sha256 is in the manifest
and checked before anything is loaded: a mismatch refuses to load, naming the file.

This module imports no torch, so ONNX Runtime replicas stay torch-free.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
ONNX = "model.onnx"
MANIFEST_FORMAT = 1


class ArtifactError(RuntimeError):
    """An artifact is missing, incomplete or tampered with."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Artifact:
    """A verified model version on disk."""

    name: str
    version: str
    path: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def max_nodes(self) -> int | None:
        """Fixed input size of flat models; None when any N works."""
        v = self.manifest["architecture"].get("max_nodes")
        return int(v) if v is not None and self.kind != "hybrid" else None

    def file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise ArtifactError(f"{self.path}: manifest lists no file {name!r}")
        return self.path / name


def verify(path: Path) -> dict[str, Any]:
    """Read the manifest and check every listed file's sha256; raise ArtifactError
    naming the first file that is missing or does not match."""
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{path}: no {MANIFEST}")
    try:
        manifest: dict[str, Any] = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{mpath}: not valid JSON ({exc})") from None
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"{mpath}: no 'files' checksums")
    for fname, expected in files.items():
        fpath = path / fname
        if not fpath.is_file():
            raise ArtifactError(f"{fpath}: listed in the manifest but missing")
        actual = sha256_of(fpath)
        if actual != expected:
            raise ArtifactError(
                f"{fpath}: sha256 mismatch (manifest {expected[:12]}..., file {actual[:12]}...);"
                " refusing to load a modified artifact"
            )
    return manifest


def versions(models_dir: Path, name: str) -> list[str]:
    """Version folders of a model, oldest first (numeric order)."""
    root = models_dir / name
    if not root.is_dir():
        return []
    found = [p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=int)


def is_candidate(models_dir: Path, name: str, version: str) -> bool:
    """True when the version was trained as a candidate (``train --candidate``): shipped,
    servable when pinned or in shadow, but never the default of its model."""
    try:
        manifest = json.loads((models_dir / name / version / MANIFEST).read_text())
    except (OSError, ValueError):
        return False  # unreadable: loading it says why
    return bool((manifest.get("training") or {}).get("candidate"))


def default_version(models_dir: Path, name: str, have: list[str] | None = None) -> str | None:
    """The version served when none is pinned: the newest that is not a candidate (the
    newest if all are); None when there is none. ``have``: the versions, if already
    listed."""
    have = versions(models_dir, name) if have is None else have
    for v in reversed(have):
        if not is_candidate(models_dir, name, v):
            return v
    return have[-1] if have else None


def model_names(models_dir: Path) -> list[str]:
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir()
                  if p.is_dir() and versions(models_dir, p.name))


def load_artifact(models_dir: Path, name: str, version: str | None = None) -> Artifact:
    """The pinned version, or the default one (the newest that is not a candidate:
    :func:`default_version`); verified before it is returned."""
    available = versions(models_dir, name)
    if not available:
        raise ArtifactError(f"{models_dir / name}: no model versions found")
    v = version or str(default_version(models_dir, name, available))
    if v not in available:
        raise ArtifactError(f"model {name!r}: version {v!r} not found (have {available})")
    path = models_dir / name / v
    return Artifact(name, v, path, verify(path))


def next_version(models_dir: Path, name: str) -> str:
    have = versions(models_dir, name)
    return str(int(have[-1]) + 1) if have else "1"


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Add the checksums of every file in ``path`` and write the manifest last."""
    files = {p.name: sha256_of(p) for p in sorted(path.iterdir())
             if p.is_file() and p.name != MANIFEST}
    out = {"format": MANIFEST_FORMAT, **manifest, "files": files}
    (path / MANIFEST).write_text(json.dumps(out, indent=2, sort_keys=False) + "\n")
