"""The OpenAPI 3.1 document, built from the pydantic models that validate requests and
the dataclasses that every endpoint returns (``edge_allocator.responses``)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from edge_allocator.explorer_responses import (
    LiveStats,
    ModelManifest,
    PolicyComparison,
    RecentDecisions,
)
from edge_allocator.responses import (
    BatchConfig,
    BatchDecisions,
    Decision,
    ErrorBody,
    ExplainResponse,
    FeedbackReceipt,
    LegacyBatchPrediction,
    LegacyHealth,
    LegacyLoadResult,
    LegacyModelInfo,
    LegacyModelSummary,
    LegacyPrediction,
    LiveBatchDecisions,
    LiveDecision,
    Liveness,
    MockNetwork,
    ModelsOverview,
    NetworkView,
    NodeSpeedInfo,
    NodeSpeedReset,
    Readiness,
    ServiceInfo,
)
from edge_allocator.schema import (
    AllocateRequest,
    BatchAllocateRequest,
    ColumnarBatchRequest,
    ExplainRequest,
    FeedbackRequest,
    LegacyBatchRequest,
    LegacyPredictRequest,
    LiveAllocateRequest,
    LiveBatchRequest,
    MockNetworkRequest,
)
from edge_allocator.service.explorer import PLOT_NAME

REF = "#/components/schemas/{model}"
#: A path parameter: one path segment, and not "." or ".." (RFC 3986 5.2.4: a client
#: removes those dot-segments before sending, so /v1/nodes/. arrives as /v1/nodes/; the
#: full fuzz run found it as a schema-valid node_id answered 422 "empty").
PATH_SEGMENT = r"^([^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)$"
JSON, MSGPACK = "application/json", "application/msgpack"
FIELDS = {"name": "fields", "in": "query", "required": False, "schema": {"type": "string"},
          "description": "Comma-separated keys of the decision to return (e.g. "
          "`node_id,confidence`); each decision then carries only those keys, and per-node "
          "maps are not built unless selected. Default: every key. Also a body key of "
          "/v1/allocate/batch."}
CLIENT_ERRORS = ("400", "401", "404", "413", "415", "422", "503")
UNPROCESSABLE = ("a field is invalid (`error` names its path); also a schema-valid state "
                 "with no feasible node (every node unreachable, its queue full or short of "
                 "memory for the task: `no feasible node`), `network: live` while the live "
                 "network is off, a mock network with some tiers' counts but not all")

EXPLAIN_SUMMARY = (
    "Explain a decision: which features of which nodes drove one node's score "
    "(`node_id`, default the chosen node) and, with `compare_to`, the score gap to "
    "another node and the features behind it. Attributions cover every node's features "
    "and sum to `score - baseline_score` (a comparison's to `gap - baseline_gap`). "
    "Learned models: integrated gradients (Captum); heuristics (`model`: random, "
    "round_robin, least_loaded, lowest_latency, greedy_eft): their rule, the numbers it "
    "compared and exact attributions. The decision is made as /v1/allocate makes it "
    "(cached and logged); the explanation is never cached. 422 also for a `node_id` or "
    "`compare_to` that is not in the state or is infeasible, and for `compare_to` equal "
    "to the explained node.")


def openapi_document(version: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {}

    def ref(tp: Any, mode: str) -> dict[str, Any]:
        js: dict[str, Any] = TypeAdapter(tp).json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
        for name, sub in js.pop("$defs", {}).items():
            schemas[name] = sub
        name = getattr(tp, "__name__", None)
        if name is None or "properties" not in js:
            return js
        schemas[name] = js
        return {"$ref": REF.format(model=name)}

    def body(tp: Any) -> dict[str, Any]:
        schema = ref(tp, "serialization")
        return {"content": {JSON: {"schema": schema}, MSGPACK: {"schema": schema}}}

    error = {"description": "error; `error` names the field path at fault", **body(ErrorBody)}
    # with quotas on (user_config quota), a token over its rate; any operation but /docs
    over_quota = {**error, "description": "this token is over its request quota",
                  "headers": {"Retry-After": {"required": True, "description":
                                              "seconds until a request is allowed again",
                                              "schema": {"type": "integer", "minimum": 1}}}}

    def post(req: Any, resp: Any, summary: str, *, alt: Any = None,
             params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        schema = ref(req, "validation")
        if alt is not None:
            schema = {"anyOf": [schema, ref(alt, "validation")]}
        op: dict[str, Any] = {
            "summary": summary,
            "requestBody": {"required": True, "content": {
                media: {"schema": schema} for media in (JSON, MSGPACK)}},
            "responses": {"200": {"description": "ok", **body(resp)},
                          **{code: error for code in CLIENT_ERRORS},
                          "413": {**error, "description": "body over max_body_bytes"},
                          "422": {**error, "description": UNPROCESSABLE},
                          "429": over_quota},
        }
        if params:
            op["parameters"] = params
        return {"post": op}

    def get(resp: Any, summary: str, *, extra: dict[str, Any] | None = None,
            params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        op: dict[str, Any] = {"summary": summary,
                              "responses": {"200": {"description": "ok", **body(resp)},
                                            "401": error, "429": over_quota,
                                            **(extra or {})}}
        if params:
            op["parameters"] = params
        return {"get": op}

    def query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": schema}

    paths = {
        "/v1/allocate": post(AllocateRequest, Decision, "Place one task", params=[FIELDS]),
        "/v1/allocate/batch": post(BatchAllocateRequest, BatchDecisions,
                                   "Place many tasks in one pass (row or columnar shape)",
                                   alt=ColumnarBatchRequest, params=[FIELDS]),
        "/v1/feedback": post(FeedbackRequest, FeedbackReceipt, "Report a decision's outcome"),
        "/v1/explain": post(ExplainRequest, ExplainResponse, EXPLAIN_SUMMARY),
        "/predict": post(LegacyPredictRequest, LegacyPrediction, "Original API: one decision"),
        "/batch-predict": post(LegacyBatchRequest, LegacyBatchPrediction,
                               "Original API: many decisions"),
        "/v1/models": get(ModelsOverview, "Served models and versions"),
        "/v1/batch-config": get(BatchConfig, "Dynamic batching settings in force"),
        "/v1/sample": get(AllocateRequest, "A realistic network state from the simulator",
                          extra={"422": error}, params=[
                              query("scenario", {"enum": ["synthetic", "melbourne"]}),
                              query("nodes", {"type": "integer", "minimum": 5,
                                              "maximum": 1000}),
                              query("seed", {"type": "integer", "minimum": 0,
                                             "maximum": 2**32 - 1})]),
        "/healthz": get(Liveness, "Liveness"),
        "/readyz": get(Readiness, "Readiness: models loaded and answering",
                       extra={"503": {"description": "not ready", **body(Readiness)}}),
        "/health": get(LegacyHealth, "Original API health"),
        "/models": get(dict[str, LegacyModelSummary], "Original API model list"),
        "/models/{name}": get(LegacyModelInfo, "Original API model info",
                              extra={"404": error}),
        "/models/{name}/load": {"post": {
            "summary": "Original API: load a model type, or confirm it is loaded",
            "responses": {"200": {"description": "ok", **body(LegacyLoadResult)},
                          **{code: error for code in ("401", "404", "503")},
                          "429": over_quota}}},
        "/generate-mock-network": post(MockNetworkRequest, MockNetwork,
                                       "Original API: a network state from the simulator"),
        "/": get(ServiceInfo, "Service information (original API)"),
    }
    # not empty (GET /models/ is the model list) and one path segment
    name_param = [{"name": "name", "in": "path", "required": True,
                   "schema": {"type": "string", "minLength": 1, "pattern": PATH_SEGMENT},
                   "description": "Model type: a served model's name or an alias"}]
    paths["/models/{name}"]["get"]["parameters"] = name_param
    paths["/models/{name}/load"]["post"]["parameters"] = name_param
    # the live network (service/live_api.py): both POSTs also take ``network: live`` and
    # no nodes, and answer with the snapshot they used; GET /v1/network shows the view
    for path, req, resp in (("/v1/allocate", LiveAllocateRequest, LiveDecision),
                            ("/v1/allocate/batch", LiveBatchRequest, LiveBatchDecisions)):
        op = paths[path]["post"]
        schema = op["requestBody"]["content"][JSON]["schema"]
        live_schema = {"anyOf": [*schema.get("anyOf", [schema]), ref(req, "validation")]}
        ok = op["responses"]["200"]["content"][JSON]["schema"]
        live_ok = {"anyOf": [ok, ref(resp, "serialization")]}
        for media in (JSON, MSGPACK):
            op["requestBody"]["content"][media] = {"schema": live_schema}
            op["responses"]["200"]["content"][media] = {"schema": live_ok}
    explorer_paths(paths, post, get, query, error)
    node_param = [{"name": "node_id", "in": "path", "required": True,
                   "schema": {"type": "string", "minLength": 1, "maxLength": 128,
                              "pattern": PATH_SEGMENT},
                   "description": "A node_id as requests send it (\".\" and \"..\" cannot "
                                  "be addressed: clients resolve them as dot-segments)"}]
    speed = get(NodeSpeedInfo, "A node's speed learned from /v1/feedback (1.0: never "
                "heard from)", extra={"422": error, "503": error}, params=node_param)
    reset = get(NodeSpeedReset, "Forget a node's learned speed (back to 1.0)",
                extra={"422": error, "503": error}, params=node_param)
    paths["/v1/nodes/{node_id}"] = {**speed, "delete": reset["get"]}
    paths["/v1/network"] = get(NetworkView, "The live network: per-node age and masking",
                               extra={"422": error, "503": error})
    return {"openapi": "3.1.0", "info": {"title": "Edge Allocator", "version": version},
            "paths": paths, "components": {"schemas": schemas}}


def explorer_paths(paths: dict[str, Any], post: Any, get: Any, query: Any,
                   error: dict[str, Any]) -> None:
    """The endpoints behind the decision explorer (``service/explorer.py``)."""
    served = [{**query("model", {"type": "string", "minLength": 1}), "required": True,
               "description": "A served model's name"},
              {**query("version", {"type": "string", "minLength": 1}), "required": True,
               "description": "A version of it that this service routes to"}]
    paths["/v1/compare"] = post(
        AllocateRequest, PolicyComparison, "One state decided by every served model version and "
        "every heuristic, with each choice's cost in the simulator's completion-time model "
        "(not cached, not logged)")
    paths["/v1/stats"] = get(LiveStats, "This ingress replica's own counters (the "
                             "explorer's Live view)")
    paths["/v1/decisions"] = get(
        RecentDecisions, "The latest decisions from the decision log, with their feedback",
        extra={"422": error, "503": {**error, "description": "no decision log, or its "
                                     "database cannot be reached"}},
        params=[query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                {**query("decision_id", {"type": "string", "pattern": "^[0-9a-fA-F]{1,32}$"}),
                 "description": "A decision id, or its beginning"}])
    paths["/v1/manifest"] = get(ModelManifest, "A served version's manifest and the plots in "
                                "its artifact folder", extra={"404": error}, params=served)
    paths["/v1/artifact"] = {"get": {
        "summary": "A plot (PNG or SVG) from a served version's artifact folder",
        "parameters": [*served, {**query("file", {"type": "string", "pattern": PLOT_NAME}),
                                 "required": True, "description": "A name from the "
                                 "manifest's plots"}],
        "responses": {"200": {"description": "the image", "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/svg+xml": {"schema": {"type": "string", "format": "binary"}}}},
            **{code: error for code in ("401", "404", "422")},
            "429": paths["/v1/stats"]["get"]["responses"]["429"]}}}
