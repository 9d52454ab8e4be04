"""Every setting of the service, typed, in one module.

serve_config.yaml's ``user_config`` blocks validate into these models when the app is
deployed (and again on every live ``reconfigure``); the CLI and the store take their
defaults from them too. Each default is written once: values that an environment
variable may override come from ``constants`` (which reads the environment, and nothing
else does), the rest are written here. Every model forbids unknown keys, so a misspelt
option fails the deployment with the key's name instead of being silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_allocator.constants import (
    DATABASE_URL,
    DECISION_CACHE_TTL_S,
    MAX_BODY_BYTES,
    MODELS_DIR,
    MQTT_URL,
    PROJECT_ROOT,
    SPOOL_PATH,
)
from edge_allocator.runtime.backends import BACKENDS
from edge_allocator.speeds import APPLY_BEYOND, SpeedParams

#: The models served when ``models`` is not given: every shipped kind, newest version.
DEFAULT_MODEL_NAMES: tuple[str, ...] = ("hybrid", "dqn", "ppo", "hybrid_gat")
DEFAULT_MODEL = "hybrid"
#: Names a request may use for a served model of another name: the original API's
#: ``hybrid_attention`` (a hybrid with attention) is answered by the GAT hybrid.
DEFAULT_ALIASES: dict[str, str] = {"hybrid_attention": "hybrid_gat"}
CacheKind = Literal["none", "local", "redis"]
Device = Literal["auto", "cpu", "cuda", "mps"]


def project_path(path: Path) -> Path:
    """Relative paths resolve against the project, whatever the Ray worker's cwd."""
    return path if path.is_absolute() else PROJECT_ROOT / path


def project_database_url(url: str | None) -> str | None:
    """``sqlite:///var/x.db`` means <project>/var/x.db, whatever the worker's cwd."""
    if url and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_absolute():
            return f"sqlite:///{PROJECT_ROOT / path}"
    return url


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Settings):
    """How one model name is served."""

    version: str | None = Field(default=None, description="Pinned version; None = newest")
    ab: dict[str, float] | None = Field(
        default=None, description="A/B split: version -> weight (weights need not sum to 1)"
    )
    feedback_version: str | None = Field(
        default=None, min_length=1,
        description="A version trained on learned node speeds (its manifest says "
        "training.observed_speed) that answers every request some node of which has a "
        "speed estimate from /v1/feedback or declares observed_speed, with every estimate "
        "applied; the version above answers the rest (cold starts). A batch request goes "
        "to one or the other whole")

    @field_validator("ab")
    @classmethod
    def _weights(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None and (not v or any(w < 0 for w in v.values()) or sum(v.values()) <= 0):
            raise ValueError(f"ab: weights must be >= 0 and sum to > 0, got {v}")
        return v


class ShadowSpec(_Settings):
    """A candidate version that scores a share of one model's live states off the response
    path (``edge_allocator.service.shadow``): its decisions go to the decision log marked
    as shadow, never to clients, live metrics or the cache. Promotion is a config change:
    pin ``models.<name>.version`` to the candidate and drop the ``shadow`` entry."""

    version: str = Field(min_length=1, description="The candidate version of this model")
    share: float = Field(default=1.0, gt=0, le=1,
                         description="Share of live requests shadowed, in (0, 1]; a batch "
                                     "request is shadowed whole or not at all")


def _default_models() -> dict[str, ModelSpec]:
    return {name: ModelSpec() for name in DEFAULT_MODEL_NAMES}


class InferenceConfig(_Settings):
    """How the policy runs: dynamic batching, backend, device."""

    max_batch_size: int = Field(default=64, ge=1, description="States per model call, at most")
    batch_wait_timeout_s: float = Field(
        default=0.002, ge=0, description="How long a partial batch waits for more states")
    backend: str = Field(default="onnx", description=f"One of {BACKENDS}")
    device: Device = Field(default="auto", description="auto = CUDA, then MPS, then CPU")

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v not in BACKENDS:
            raise ValueError(f"backend={v!r} is unknown; use one of {BACKENDS}")
        return v


class RoutingConfig(_Settings):
    """Which model versions are served, and which answers a request."""

    models_dir: Path = Field(default=MODELS_DIR, description="models/<name>/<version>/")
    default_model: str = Field(default=DEFAULT_MODEL, description="For requests naming none")
    models: dict[str, ModelSpec] = Field(default_factory=_default_models)
    aliases: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_ALIASES),
        description="alias -> served model name: requests naming the alias get that model")
    shadow: dict[str, ShadowSpec] = Field(
        default_factory=dict,
        description="served model name -> candidate version scoring its live states in shadow")

    @field_validator("models_dir")
    @classmethod
    def _models_dir(cls, v: Path) -> Path:
        return project_path(v)

    @model_validator(mode="after")
    def _aliases_are_not_models(self) -> RoutingConfig:
        clash = sorted(set(self.aliases) & set(self.models))
        if clash:
            raise ValueError(f"aliases: {clash} are also model names; an alias must name "
                             "no served model")
        return self

    @model_validator(mode="after")
    def _shadow_of_served_models(self) -> RoutingConfig:
        unknown = sorted(set(self.shadow) - set(self.models))
        if unknown:
            raise ValueError(f"shadow: {unknown} are not served models (models: "
                             f"{sorted(self.models)}); a shadow names the served model whose "
                             "live states its candidate version scores")
        return self


class PolicyConfig(RoutingConfig):
    """PolicyInference's ``user_config``: the versions to load and how to run them."""

    inference: InferenceConfig = Field(default_factory=InferenceConfig)


class CorsConfig(_Settings):
    """Cross-origin requests from browsers (Starlette's CORSMiddleware in front of every
    route): off while ``allow_origins`` is empty, the default."""

    allow_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to call the API, e.g. ['http://localhost:3000']; "
                    "['*'] for any; empty: CORS off")
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST"])
    allow_headers: list[str] = Field(
        default_factory=lambda: ["authorization", "content-type", "accept"],
        description="Request headers a cross-origin request may send")
    allow_credentials: bool = Field(default=False, description="Allow cookies / credentials")
    expose_headers: list[str] = Field(default_factory=lambda: ["retry-after"],
                                      description="Response headers scripts may read")
    max_age_s: int = Field(default=600, ge=0, description="How long browsers cache a preflight")

    @property
    def enabled(self) -> bool:
        return bool(self.allow_origins)

    @model_validator(mode="after")
    def _no_wildcard_credentials(self) -> CorsConfig:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("cors: allow_credentials with allow_origins ['*'] would let any "
                             "site call the API with a user's credentials; list the origins")
        return self


class QuotaConfig(BaseModel):
    """Per-token request quotas (``edge_allocator.service.quota``): each bearer token
    gets ``rate_per_s`` requests a second, bursts up to ``burst``; over it, 429 with
    Retry-After. Per ingress replica. Off while ``rate_per_s`` is null, and only
    authenticated tokens are metered (no tokens configured: no quotas)."""

    model_config = ConfigDict(extra="forbid")

    rate_per_s: float | None = Field(default=None, gt=0)
    burst: int = Field(default=100, ge=1)


class NodeSpeedConfig(BaseModel):
    """Per-node speeds learned from /v1/feedback (``edge_allocator.speeds``): kept in
    Redis when ``redis_url`` is set, in process otherwise."""

    model_config = ConfigDict(extra="forbid")

    apply: bool = Field(default=True, description="Scale each node's capacity in the "
                        "features by its observed speed (false: learn and show only)")
    apply_beyond: float = Field(
        default=APPLY_BEYOND, ge=1.0,
        description="Apply a node's estimate only when it is at least this many times "
        "slower (or faster) than predicted; closer to 1 the node keeps its declared or "
        "nominal capacity (the served policies were trained on nominal capacities, and in "
        "the simulator smaller corrections made their decisions worse). 1: apply every "
        "estimate")
    half_life_s: float = Field(default=3600.0, gt=0, description="Evidence halves this often")
    prior_weight: float = Field(default=2.0, gt=0,
                                description="Observations' worth of the prior speed 1.0")
    max_weight: float = Field(default=50.0, gt=0,
                              description="Cap on the evidence: older observations fade")
    refresh_s: float = Field(default=1.0, ge=0,
                             description="How often a replica re-reads Redis's estimates")

    def params(self) -> SpeedParams:
        return SpeedParams(self.prior_weight, self.half_life_s, self.max_weight)


class ServiceConfig(RoutingConfig):
    """The Ingress's ``user_config``; ``inference`` is used when it runs the policy
    in-process (``inline_inference``)."""

    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    cache: CacheKind = "local"
    cache_ttl_s: float = Field(default=DECISION_CACHE_TTL_S, gt=0)
    cache_entries: int = Field(default=100_000, gt=0)
    redis_url: str | None = None
    database_url: str | None = Field(
        default=DATABASE_URL, description="SQLAlchemy URL of the decision log; null: no log")
    db_pool_size: int = Field(default=5, gt=0)
    spool_path: Path = Field(default=SPOOL_PATH,
                             description="Where log records wait while the database is down")
    decision_journal: bool = Field(
        default=True,
        description="Append each decision to a journal beside the spool as it is queued, so "
                    "a replica killed outright loses no answered decision (costs a JSON "
                    "encoding and a write per batch request on the request path)")
    gzip_responses: bool = Field(
        default=False,
        description="gzip API answers of 1 KiB or more when the client accepts gzip. Off by "
                    "default: compressing a 256-decision batch answer (and the client "
                    "inflating it) cost 42 % of batch throughput on two cores "
                    "(benchmarks.serve_bench: 6,207 decisions/s gzipped against 10,738 "
                    "identity, one run); worth it only across a slow link. The /docs and "
                    "/ui/ assets are served gzipped either way (compressed once, at start)")
    auth_token_env: str = Field(default="EDGE_ALLOCATOR_TOKENS",
                                description="Env var holding comma-separated bearer tokens")
    auth_token_file: Path | None = None
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, gt=0)
    cors: CorsConfig = Field(default_factory=CorsConfig)
    quota: QuotaConfig = Field(default_factory=QuotaConfig)
    node_speeds: NodeSpeedConfig = Field(default_factory=NodeSpeedConfig)

    @field_validator("spool_path")
    @classmethod
    def _spool(cls, v: Path) -> Path:
        return project_path(v)

    @field_validator("auth_token_file")
    @classmethod
    def _token_file(cls, v: Path | None) -> Path | None:
        return None if v is None else project_path(v)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str | None) -> str | None:
        return project_database_url(v)

    @model_validator(mode="after")
    def _redis_needs_url(self) -> ServiceConfig:
        if self.cache == "redis" and not self.redis_url:
            raise ValueError("cache: 'redis' needs redis_url (e.g. redis://127.0.0.1:6379/0)")
        return self

    def routing(self) -> RoutingConfig:
        return RoutingConfig(models_dir=self.models_dir, default_model=self.default_model,
                             models=self.models, aliases=self.aliases, shadow=self.shadow)

    def policy(self) -> PolicyConfig:
        """The settings an in-process policy runs with (``inline_inference``)."""
        return PolicyConfig(models_dir=self.models_dir, default_model=self.default_model,
                            models=self.models, aliases=self.aliases, shadow=self.shadow,
                            inference=self.inference)


# --- the live network (MQTT telemetry; edge_allocator.live) ------------------------------

MQTT_SCHEMES = ("mqtt", "mqtts", "tcp", "ssl")


class MqttTls(_Settings):
    """TLS to the broker (``mqtts://`` without this block: the system's CAs)."""

    ca_file: Path | None = Field(default=None, description="CA bundle; null: system CAs")
    cert_file: Path | None = Field(default=None, description="Client certificate (mutual TLS)")
    key_file: Path | None = Field(default=None, description="Client key (mutual TLS)")
    insecure: bool = Field(default=False, description="Skip the hostname check (tests only)")


class MqttConfig(_Settings):
    """The broker, topics and session of the telemetry subscriber."""

    url: str | None = Field(
        default=None, validate_default=True,
        description="mqtt://[user:password@]host:port (mqtts:// for TLS); null: live network "
                    "off. $EDGE_ALLOCATOR_MQTT_URL wins over this")
    device_prefix: str = Field(default="iot/devices", min_length=1,
                               description="Devices publish on <prefix>/<device_id> and "
                                           "<prefix>/batch (the original project's topics)")
    topology_topic: str = Field(default="edge-allocator/topology", min_length=1,
                                description="Our own topic: links and node fields")
    qos: Literal[0, 1, 2] = 1
    client_id: str | None = Field(default=None,
                                  description="null: edge-allocator-ingest-<pid>-<random>")
    username: str | None = None
    password_file: Path | None = Field(default=None, description="File holding the password")
    tls: MqttTls | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    reconnect_max_s: float = Field(default=5.0, gt=0, le=300,
                                   description="Longest wait between reconnection attempts")
    request_topic: str | None = Field(
        default=None, min_length=1,
        description="Tasks published here are decided on the live network and answered on "
                    "the MQTT 5 response topic (or the payload's reply_to); null: off")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        url = MQTT_URL or v
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in MQTT_SCHEMES or not parts.hostname:
            raise ValueError(f"url: {parts.scheme}://{parts.hostname or ''}... is not an MQTT "
                             "URL; use mqtt://host:1883 or mqtts://host:8883")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"url: {exc}") from None
        return url

    @field_validator("password_file")
    @classmethod
    def _password_file(cls, v: Path | None) -> Path | None:
        return None if v is None else project_path(v)

    @property
    def enabled(self) -> bool:
        return self.url is not None


class LiveNetworkConfig(_Settings):
    """The MqttIngest deployment's ``user_config``: where telemetry comes from, how the
    view ages, and where it is kept. Ingress replicas read these settings from it."""

    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    stale_after_s: float = Field(default=30.0, gt=0,
                                 description="Silent longer: masked as unreachable")
    forget_after_s: float | None = Field(default=600.0, gt=0,
                                         description="Silent longer: out of the view")
    redis_url: str | None = Field(
        default=None, description="Keep the view in Redis (shared by every replica, kept "
                                  "across ingest restarts); null: in the MqttIngest replica")
    redis_prefix: str = Field(default="edge-allocator:live:", min_length=1)
    snapshot_reuse_s: float = Field(
        default=0.2, ge=0, description="An ingress replica reuses a snapshot this young "
                                       "(responses say when it was taken)")

    @model_validator(mode="after")
    def _ages(self) -> LiveNetworkConfig:
        if self.forget_after_s is not None and self.forget_after_s < self.stale_after_s:
            raise ValueError(f"forget_after_s: {self.forget_after_s} is below stale_after_s "
                             f"({self.stale_after_s}); a node is masked before it is forgotten")
        return self
