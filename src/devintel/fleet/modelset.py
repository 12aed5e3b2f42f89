"""One version of the fleet's models, shared by every home a worker serves (pure).

A worker loads a version once and gives each home its own :class:`~devintel.models.live.LiveModels` over the
*same* model objects (no copy per home): per-home state is features, waiting labels, alarm decisions and evidence,
not models. Workers do not learn locally (the fleet trainer does, from every home's examples), so the serving models
are never changed in place. Horizon, evidence rules and label interval come from the daemon's settings through a
template built by the daemon's own :func:`~devintel.daemon.from_settings.live_models`.
"""

from __future__ import annotations

import pickle
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from devintel.fleet.codec import seal, unseal
from devintel.models.decision import DecisionParams
from devintel.models.live import GLOBAL, LiveEvidence, LiveModels
from devintel.models.metrics import RollingMetrics
from devintel.models.online import Classifier

KIND = "model-version"
#: Resolved events a home's rolling metrics and recent outcomes keep in the fleet.
HOME_ROLLING_WINDOW = 200


@dataclass(frozen=True, slots=True)
class ModelSet:
    """A model version and the serving parameters of every home's live models."""

    version: str
    models: dict[str, Classifier]
    thresholds: dict[str, float]
    router: dict[str, str]
    decision: DecisionParams | None
    horizon_s: float
    evidence: LiveEvidence = field(default_factory=LiveEvidence)
    label_interval_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    """What the trainer says of the version (held-out score, examples learned)."""

    @classmethod
    def from_live(cls, template: LiveModels) -> ModelSet:
        """The models and parameters of ``template`` (the daemon's live models of a snapshot)."""
        return cls(
            version=template.version,
            models=template.models,
            thresholds=dict(template.thresholds),
            router=dict(template.router),
            decision=template.decision,
            horizon_s=template.horizon_s,
            evidence=template.evidence,
            label_interval_s=template.label_interval_s,
        )

    def live(self) -> LiveModels:
        """A home's own live models over the shared model objects; learning off (the trainer learns)."""
        live = LiveModels(
            models=self.models,
            thresholds=dict(self.thresholds),
            router=dict(self.router),
            version=self.version,
            horizon_s=self.horizon_s,
            evidence=self.evidence,
            label_interval_s=self.label_interval_s,
            decision=self.decision,
            challenger=self.models,
        )
        live.learner.learn = False
        # The per-home health report (rolling metrics, recent outcomes) is not published by the fleet: keep it
        # small (the daemon keeps 5,000 and 10,000 per home; here that was 60 % of a home's memory). Predictions,
        # alarms and examples do not read it.
        live.learner.rolling = RollingMetrics(
            window_size=HOME_ROLLING_WINDOW, every=HOME_ROLLING_WINDOW, max_history=10
        )
        live.learner.outcomes = deque(maxlen=HOME_ROLLING_WINDOW)
        return live

    def encode(self) -> bytes:
        """The version as a sealed blob (its models, thresholds, router, decision and meta)."""
        body = {
            "version": self.version,
            "models": self.models,
            "thresholds": self.thresholds,
            "router": self.router,
            "decision": self.decision.as_dict() if self.decision is not None else None,
            "meta": self.meta,
        }
        return seal(KIND, pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL))

    def with_version(self, blob: bytes) -> ModelSet:
        """This set's serving parameters with the models of a version blob (:meth:`encode`); raises
        :class:`~devintel.fleet.codec.CorruptBlobError` or ValueError when the blob does not hold a usable version."""
        body = pickle.loads(unseal(KIND, blob))  # sealed blobs of the cluster's object store only (docs/fleet.md)
        if not isinstance(body, dict) or GLOBAL not in body.get("models", {}):
            raise ValueError("a model version needs a global model")
        decision = body.get("decision")
        return replace(
            self,
            version=str(body["version"]),
            models=dict(body["models"]),
            thresholds={str(k): float(v) for k, v in body["thresholds"].items()},
            router={str(k): str(v) for k, v in body["router"].items()},
            decision=DecisionParams.from_dict(decision) if isinstance(decision, dict) else self.decision,
            meta=dict(body.get("meta") or {}),
        )
