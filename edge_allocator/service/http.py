"""HTTP-facing helpers with no web framework in them: body parsing, auth, the legacy
response shapes and the OpenAPI document. The Ray Serve ingress is a thin router over
these, so they are tested without a cluster."""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Any

import orjson

from edge_allocator.schema import (
    AllocateRequest,
    AllocateResponse,
    BatchAllocateRequest,
    FeedbackRequest,
    LegacyBatchRequest,
    LegacyPredictRequest,
    RequestError,
)

MASKED_SCORE = -1e9  # what infeasible nodes score in q_values (as in the models)


def parse_json(body: bytes, content_type: str | None, max_bytes: int) -> Any:
    """Bytes -> JSON value, or a RequestError: 413 too large, 415 not JSON, 400 malformed."""
    if len(body) > max_bytes:
        raise RequestError(413, f"body of {len(body)} bytes exceeds the limit of {max_bytes}")
    ctype = (content_type or "application/json").split(";")[0].strip().lower()
    if ctype and ctype not in ("application/json",) and not ctype.endswith("+json"):
        raise RequestError(415, f"content-type {ctype!r} is not supported; send application/json")
    if not body:
        raise RequestError(400, "empty body; send a JSON object")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(422, f"body must be a JSON object, got {type(data).__name__}",
                           [{"loc": "", "msg": "expected an object"}])
    return data


class TokenAuth:
    """Optional bearer-token auth. Tokens come from an environment variable (comma
    separated) and/or a secret file (one per line); none configured means open. Tokens
    are compared in constant time and never logged or echoed."""

    def __init__(self, env_var: str | None = None, token_file: Path | None = None):
        tokens: list[str] = []
        if env_var and os.environ.get(env_var):
            tokens += [t.strip() for t in os.environ[env_var].split(",") if t.strip()]
        if token_file is not None:
            tokens += [t.strip() for t in Path(token_file).read_text().splitlines() if t.strip()]
        self._tokens = [t.encode() for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def check(self, authorization: str | None) -> None:
        if not self._tokens:
            return
        scheme, _, token = (authorization or "").partition(" ")
        given = token.strip().encode()
        ok = False
        for t in self._tokens:  # no early exit: timing does not reveal which token matched
            ok |= hmac.compare_digest(given, t)
        if scheme.lower() != "bearer" or not ok:
            raise RequestError(401, "missing or invalid bearer token")


def legacy_prediction(resp: dict[str, Any], kind: str, n_nodes: int) -> dict[str, Any]:
    """A v1 decision in the original AI Edge Allocator's /predict shape. Legacy nodes are
    identified by index, so v1 node ids are the index strings here."""
    node_scores = {str(i): 0.0 for i in range(n_nodes)}
    node_scores.update(resp["probabilities"])
    q_values = None
    if kind == "dqn":  # Q-values in reward units; infeasible nodes carry MASKED_SCORE
        q = [MASKED_SCORE] * n_nodes
        for nid, v in resp["scores"].items():
            q[int(nid)] = v
        q_values = q
    return {
        "selected_node": resp["node_index"],
        "confidence": resp["confidence"],
        "q_values": q_values,
        "node_scores": node_scores,
        "processing_time_ms": resp["latency_ms"],
        "model_version": resp["model"]["version"],
        "decision_id": resp["decision_id"],
    }


def legacy_to_v1(state: Any, model_type: str) -> dict[str, Any]:
    """An original-API network state as a v1 request (node ids dropped: index ids)."""
    nodes = [{k: v for k, v in n.model_dump().items() if k != "node_id"} for n in state.nodes]
    return {"nodes": nodes, "edges": state.edges, "model": model_type}


def openapi_document(version: str) -> dict[str, Any]:
    """OpenAPI 3.1 built from the same pydantic models that validate requests."""
    schemas: dict[str, Any] = {}

    def ref(model: Any) -> dict[str, str]:
        js = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in js.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[model.__name__] = js
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    error = {"description": "client error", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}, "status": {"type": "integer"},
                                          "details": {"type": "array"}}}}}}

    def post(req: Any, resp: dict[str, Any], summary: str) -> dict[str, Any]:
        return {"post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref(req)}}},
            "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": resp}}},
                          "400": error, "401": error, "404": error, "413": error, "415": error,
                          "422": error, "503": error},
        }}

    def get(summary: str) -> dict[str, Any]:
        return {"get": {"summary": summary, "responses": {"200": {"description": "ok"}}}}

    decision = ref(AllocateResponse)
    paths = {
        "/v1/allocate": post(AllocateRequest, decision, "Place one task"),
        "/v1/allocate/batch": post(BatchAllocateRequest, {"type": "object", "properties": {
            "decisions": {"type": "array", "items": decision}}}, "Place many tasks in one pass"),
        "/v1/feedback": post(FeedbackRequest, {"type": "object"}, "Report a decision's outcome"),
        "/predict": post(LegacyPredictRequest, {"type": "object"}, "Original API: one decision"),
        "/batch-predict": post(LegacyBatchRequest, {"type": "object"}, "Original API: many"),
        "/v1/models": get("Served models and versions"),
        "/v1/sample": get("A realistic network state from the simulator"),
        "/healthz": get("Liveness"),
        "/readyz": get("Readiness: models loaded and answering"),
        "/health": get("Original API health"),
        "/models": get("Original API model list"),
        "/models/{name}": get("Original API model info"),
    }
    return {"openapi": "3.1.0", "info": {"title": "Edge Allocator", "version": version},
            "paths": paths, "components": {"schemas": schemas}}
