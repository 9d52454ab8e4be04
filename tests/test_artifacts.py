from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edge_allocator.constants import MODELS_DIR
from edge_allocator.graph import collate
from edge_allocator.policies import build_policy
from edge_allocator.runtime.artifacts import (
    ArtifactError,
    load_artifact,
    model_names,
    verify,
)
from edge_allocator.runtime.backends import BACKENDS, make_backend
from edge_allocator.runtime.export import save_artifact
from edge_allocator.sim import EdgeAllocationEnv, EnvConfig


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    hybrid = build_policy("hybrid", {"hidden": 16})
    save_artifact(hybrid, "hybrid", hybrid.config.to_dict(), root)
    flat = build_policy("dqn", {"max_nodes": 12, "hidden": 32})
    save_artifact(flat, "dqn", flat.config.to_dict(), root)
    return root


def _graphs(sizes, seed=0):
    out = []
    for k, n in enumerate(sizes):
        env = EdgeAllocationEnv(EnvConfig(min_nodes=n, max_nodes=n))
        env.reset(seed=seed + k)
        out.append(env.graph())
    return out


def test_manifest_types_inputs_and_checksums_every_file(tiny_models):
    art = load_artifact(tiny_models, "hybrid")
    m = art.manifest
    assert art.version == "1" and m["kind"] == "hybrid"
    assert m["inputs"][0]["shape"] == [-1, -1, 14]
    assert set(m["files"]) == {"weights.pt", "model.onnx"}
    assert len(m["normalization"]["mean"]) == 14
    dqn = load_artifact(tiny_models, "dqn")
    assert dqn.max_nodes == 12 and dqn.manifest["inputs"][-1]["shape"] == [-1, 12]
    assert [i["name"] for i in dqn.manifest["inputs"]] == ["x", "mask"]  # flat: no graph


def test_versions_are_never_overwritten(tiny_models, tmp_path):
    m = build_policy("hybrid", {"hidden": 16})
    first = save_artifact(m, "hybrid", m.config.to_dict(), tmp_path)
    second = save_artifact(m, "hybrid", m.config.to_dict(), tmp_path)
    assert (first.name, second.name) == ("1", "2")
    assert load_artifact(tmp_path, "hybrid").version == "2"
    assert load_artifact(tmp_path, "hybrid", "1").version == "1"


def test_tampered_file_refuses_to_load_naming_it(tiny_models, tmp_path):
    import shutil

    shutil.copytree(tiny_models / "hybrid", tmp_path / "hybrid")
    onnx = tmp_path / "hybrid" / "1" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match=r"model\.onnx: sha256 mismatch"):
        load_artifact(tmp_path, "hybrid")
    onnx.write_bytes(onnx.read_bytes()[:-1])  # restored: loads again
    assert load_artifact(tmp_path, "hybrid").version == "1"
    (tmp_path / "hybrid" / "1" / "weights.pt").unlink()
    with pytest.raises(ArtifactError, match="weights.pt: listed in the manifest but missing"):
        verify(tmp_path / "hybrid" / "1")


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_parity_with_eager_torch(tiny_models, backend):
    """Tolerance: 1e-4 relative / 1e-3 absolute for float backends; int8 and pruning
    change outputs by design, so they must only keep the same shape, mask and finite
    scores (their decision-quality cost is reported by the benchmark)."""
    art = load_artifact(tiny_models, "hybrid")
    ref = make_backend(art, "torch")
    b = make_backend(art, backend)
    batch = collate(_graphs([5, 9, 30]))
    expected = ref.run(batch.x, batch.adj, batch.mask)
    got = b.run(batch.x, batch.adj, batch.mask)
    m = batch.mask
    assert got.shape == expected.shape
    assert (got[~m] <= -1e8).all() and np.isfinite(got[m]).all()
    if backend in ("onnx", "torch", "torchscript"):
        np.testing.assert_allclose(got[m], expected[m], rtol=1e-4, atol=1e-3)


def test_onnx_backend_does_not_import_torch(tiny_models):
    code = (
        "import sys, numpy as np\n"
        "from edge_allocator.runtime.artifacts import load_artifact\n"
        "from edge_allocator.runtime.backends import make_backend\n"
        f"art = load_artifact(__import__('pathlib').Path({str(tiny_models)!r}), 'hybrid')\n"
        "b = make_backend(art, 'onnx')\n"
        "x = np.zeros((1, 3, 14), np.float32); a = np.eye(3, dtype=np.float32)[None]\n"
        "print(b.run(x, a, np.ones((1, 3), bool)).shape, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(1, 3) False"


def test_shipped_models_verify_and_carry_their_evaluation():
    names = model_names(MODELS_DIR)
    assert set(names) >= {"hybrid", "dqn", "ppo"}
    for name in names:
        art = load_artifact(MODELS_DIR, name)
        assert art.manifest["evaluation"], f"{name} has no evaluation in its manifest"
        assert art.manifest["training"]["config"]["seed"] == 0
        json.dumps(art.manifest)


def test_a_candidate_version_is_never_the_default(tmp_path):
    """``train --candidate`` (hybrid v3): the newest version that is not a candidate is
    what an unpinned model serves; a pinned candidate still loads."""
    from edge_allocator.runtime.artifacts import default_version, is_candidate

    for v, cand in (("1", False), ("2", False), ("3", True)):
        (tmp_path / "m" / v).mkdir(parents=True)
        (tmp_path / "m" / v / "manifest.json").write_text(
            json.dumps({"training": {"candidate": cand}}))
    assert is_candidate(tmp_path, "m", "3") and not is_candidate(tmp_path, "m", "2")
    assert default_version(tmp_path, "m") == "2"
    (tmp_path / "m" / "4").mkdir()  # no manifest: not a candidate (loading it says why)
    assert default_version(tmp_path, "m") == "4"


def test_shipped_hybrid_default_is_v2_with_v3_a_candidate():
    from edge_allocator.runtime.artifacts import default_version, versions

    assert "3" in versions(MODELS_DIR, "hybrid")
    assert default_version(MODELS_DIR, "hybrid") == "2"
    assert load_artifact(MODELS_DIR, "hybrid").version == "2"
    v3 = load_artifact(MODELS_DIR, "hybrid", "3").manifest["training"]
    assert v3["observed_speed"] is True and v3["candidate"] is True
