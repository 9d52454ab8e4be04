"""Which model version answers a request: pinned, newest, or an A/B split; and which
candidate version, if any, scores it in shadow."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from edge_allocator.config import ModelSpec, ShadowSpec
from edge_allocator.runtime.artifacts import MANIFEST, default_version, versions
from edge_allocator.schema import RequestError


class ShadowTarget(NamedTuple):
    """The candidate that scores a share of one served model's live states."""

    name: str
    version: str
    share: float  # in (0, 1]


class ModelRouter:
    """``aliases`` (alias -> model name) let requests name a served model otherwise, as
    the original API's model types do; an alias of a model not served here is a 404."""

    def __init__(self, models_dir: Path, specs: dict[str, ModelSpec], default_model: str,
                 rng: random.Random | None = None, aliases: Mapping[str, str] | None = None,
                 shadow: Mapping[str, ShadowSpec] | None = None):
        self.models_dir = models_dir
        self.specs = specs
        self.default_model = default_model
        self.aliases = dict(aliases or {})
        self._rng = rng or random.Random()
        self._choices: dict[str, tuple[list[str], list[float]]] = {}
        self._kinds: dict[tuple[str, str], str] = {}
        for name, spec in specs.items():
            have = versions(models_dir, name)
            if spec.ab:
                missing = [v for v in spec.ab if v not in have]
                if missing:
                    raise ValueError(
                        f"models.{name}.ab: versions {missing} not found (have {have})"
                    )
                self._choices[name] = (list(spec.ab), list(spec.ab.values()))
            elif spec.version is not None:
                if spec.version not in have:
                    raise ValueError(
                        f"models.{name}.version={spec.version!r} not found (have {have})"
                    )
                self._choices[name] = ([spec.version], [1.0])
            elif have:  # the newest that is not a candidate (train --candidate)
                self._choices[name] = ([str(default_version(models_dir, name, have))], [1.0])
            else:
                raise ValueError(f"models.{name}: no versions under {models_dir / name}")
        self._feedback = {name: self._feedback_target(models_dir, name, spec.feedback_version)
                          for name, spec in specs.items() if spec.feedback_version is not None}
        self._shadow = self._shadow_targets(models_dir, shadow or {})
        for name, version in self.versions_in_use() + self.shadow_versions():  # read once
            try:
                self._kinds[(name, version)] = kind_of(models_dir, name, version)
            except (OSError, ValueError, KeyError):
                pass  # unreadable manifest: the policy refuses to load it and says why

    def _feedback_target(self, models_dir: Path, name: str, version: str) -> str:
        """``models.<name>.feedback_version`` checked at deploy (the deployment fails,
        naming the key): on disk, not a version that also answers cold starts, and trained
        on learned speeds (a nominal-capacity policy misreads them: README, closed loop)."""
        key = f"models.{name}.feedback_version={version!r}"
        have = versions(models_dir, name)
        if version not in have:
            raise ValueError(f"{key} not found (have {have})")
        if version in self._choices[name][0]:
            raise ValueError(f"{key} also answers cold starts; name a version trained on "
                             "learned speeds beside the served one")
        manifest = json.loads((models_dir / name / version / MANIFEST).read_text())
        if not (manifest.get("training") or {}).get("config", {}).get("observed_speed"):
            raise ValueError(f"{key} was not trained on learned node speeds (its manifest "
                             "lacks training.config.observed_speed: true)")
        return version

    def feedback_version(self, name: str) -> str | None:
        """The version that answers ``name``'s requests once speeds are known, if any."""
        return self._feedback.get(name)

    def _shadow_targets(self, models_dir: Path, shadow: Mapping[str, ShadowSpec]
                        ) -> dict[str, ShadowTarget]:
        """Each shadow checked against what is on disk and what is live: at deploy or
        reconfigure (the deployment fails, naming the key), never on a request."""
        out = {}
        for name, spec in shadow.items():
            if name not in self._choices:
                raise ValueError(f"shadow.{name}: {name!r} is not a served model "
                                 f"(served: {self.names()})")
            have = versions(models_dir, name)
            if spec.version not in have:
                raise ValueError(f"shadow.{name}.version={spec.version!r} not found "
                                 f"(have {have})")
            if self._choices[name][0] == [spec.version]:
                raise ValueError(f"shadow.{name}.version={spec.version!r} is the live version "
                                 "of the model; a shadow scores a candidate against it")
            out[name] = ShadowTarget(name, spec.version, spec.share)
        return out

    def shadow_of(self, name: str) -> ShadowTarget | None:
        """The candidate scoring ``name``'s live states, if any (``name`` is served)."""
        return self._shadow.get(name)

    def shadow_versions(self) -> list[tuple[str, str]]:
        """(name, version) of every shadow candidate: loaded beside the live versions,
        but not needed for readiness (a failing candidate never affects live answers)."""
        return [(t.name, t.version) for t in self._shadow.values()]

    def kind(self, name: str, version: str) -> str:
        """The kind ('dqn', 'ppo', 'hybrid') of a version; read from disk only for a
        version this router does not route (a decision that raced a hot swap)."""
        kind = self._kinds.get((name, version))
        return kind if kind is not None else kind_of(self.models_dir, name, version)

    def names(self) -> list[str]:
        return list(self._choices)

    def versions_in_use(self) -> list[tuple[str, str]]:
        """Every version that answers requests: routed ones, then feedback versions."""
        return ([(n, v) for n, (vs, _) in self._choices.items() for v in vs]
                + list(self._feedback.items()))

    def resolve(self, name: str, loc: str = "model") -> str:
        """The served model a request's name (or alias) means; unknown names are a 404
        whose detail is at ``loc``."""
        model = self.aliases.get(name, name)
        if model not in self._choices:
            what = f"{name!r}" + (f" (an alias of {model!r})" if model != name else "")
            raise RequestError(404, f"model {what} is not served; available: "
                               f"{self.names() + self.served_aliases()}",
                               [{"loc": loc, "msg": "unknown model"}])
        return model

    def weights(self) -> dict[tuple[str, str], float]:
        """The A/B weight of every routed (model, version); 1.0 for an unsplit model."""
        return {(n, v): w for n, (vs, ws) in self._choices.items() for v, w in zip(vs, ws)}

    def served_aliases(self) -> list[str]:
        """The aliases whose model is served here."""
        return [a for a, m in self.aliases.items() if m in self._choices]

    def pick(self, name: str | None) -> tuple[str, str]:
        """(name, version) for a request; unknown names are a 404."""
        model = name or self.default_model
        if model not in self._choices:
            model = self.resolve(model)
        vs, weights = self._choices[model]
        return model, (vs[0] if len(vs) == 1 else self._rng.choices(vs, weights)[0])


def kind_of(models_dir: Path, name: str, version: str) -> str:
    """The model kind ('dqn', 'ppo', 'hybrid') from its manifest, without loading it."""
    return str(json.loads((models_dir / name / version / MANIFEST).read_text())["kind"])
