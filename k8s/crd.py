"""Validate a custom resource offline against its CRD's ``openAPIV3Schema``.

``kubectl --dry-run=client`` cannot check custom resources without a cluster, so the
schema is turned into a JSON Schema (draft 7) that the ``jsonschema`` library checks:

* ``x-kubernetes-*`` extensions are ignored, except ``x-kubernetes-list-map-keys``
  (entries of such a list, e.g. container ports or env vars, must have unique keys) and
  ``x-kubernetes-preserve-unknown-fields`` (that object accepts any field);
* ``nullable: true`` lets the value be ``null`` too;
* int-or-string fields already carry ``anyOf: [integer, string]``;
* an object that lists its ``properties`` rejects any other field, as the API server does
  under ``kubectl apply``'s default ``--validate=strict`` (a typo such as
  ``rayStartParam`` is an error here, not a field silently dropped in the cluster);
* CEL rules (``x-kubernetes-validations``) and ``format`` are not checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
#: The RayService CRD the generated manifests must satisfy.
RAYSERVICE_CRD = SCHEMAS_DIR / "kuberay-v1.7.0" / "ray.io_rayservices.yaml"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def to_json_schema(node: Any) -> Any:
    """The JSON Schema equivalent of one OpenAPI v3 (structural) schema node."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":  # a map of field name -> schema; names are not keywords
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key == "x-kubernetes-list-map-keys":
            out[key] = value  # checked by the keyword registered below
        elif key.startswith("x-kubernetes-") or key == "nullable":
            continue
        else:
            out[key] = to_json_schema(value)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if ("properties" in out and "additionalProperties" not in out
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _list_map_keys(validator: Any, keys: list[str], instance: Any,
                   schema: dict[str, Any]) -> Iterator[jsonschema.ValidationError]:
    if not validator.is_type(instance, "array"):
        return
    seen: dict[tuple[Any, ...], int] = {}
    for i, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = tuple(item.get(k) for k in keys)
        if key in seen:
            yield jsonschema.ValidationError(
                f"items {seen[key]} and {i} share the list-map key "
                f"{dict(zip(keys, key))}; each entry needs a unique {keys}")
        seen[key] = i


_K8sValidator = jsonschema.validators.extend(
    jsonschema.Draft7Validator, {"x-kubernetes-list-map-keys": _list_map_keys},
)


@lru_cache(maxsize=4)
def load_crd(crd_path: Path = RAYSERVICE_CRD) -> dict[str, Any]:
    """The CRD document (parsed once per process: it is about 1 MB of YAML)."""
    return yaml.load(Path(crd_path).read_text(), Loader=_Loader)


@lru_cache(maxsize=4)
def crd_validator(crd_path: Path = RAYSERVICE_CRD, version: str = "v1") -> Any:
    """A validator for the custom resource of ``version`` that ``crd_path`` defines."""
    crd = load_crd(Path(crd_path))
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema = to_json_schema(v["schema"]["openAPIV3Schema"])
            _K8sValidator.check_schema(schema)
            return _K8sValidator(schema)
    have = [v["name"] for v in crd["spec"]["versions"]]
    raise ValueError(f"{crd_path}: no version {version!r} in the CRD (have {have})")


def validation_errors(manifest: dict[str, Any], crd_path: Path = RAYSERVICE_CRD) -> list[str]:
    """Every violation of the CRD by ``manifest`` as ``path: message``; empty when valid."""
    crd = load_crd(Path(crd_path))
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    api_group, _, version = str(manifest.get("apiVersion", "")).rpartition("/")
    out = []
    if api_group != group:
        out.append(f"apiVersion: expected {group}/<version>, got {manifest.get('apiVersion')!r}")
        version = "v1"
    if manifest.get("kind") != kind:
        out.append(f"kind: expected {kind!r}, got {manifest.get('kind')!r}")
    errors = sorted(crd_validator(Path(crd_path), version).iter_errors(manifest),
                    key=lambda e: [str(p) for p in e.absolute_path])
    out += [f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in errors]
    return out
