"""The outlier model as a baseline aspect: per-link windows learned, scored, explained.

Learning cuts the segment's events into per-link windows (``otsentry.baseline.features``) and
keeps the complete ones; at the end of learning ``OutlierModel`` (``otsentry.baseline.model``)
is trained on them and written beside the baseline as ``DIR/<segment>.model.joblib``; the
baseline file gets the model's readable summary (features with their medians and scales,
threshold, fingerprint). Too few windows: no model, and the baseline file says so
(``status: insufficient`` with the reason); the detector then scores nothing.

Detection cuts the events the same way and scores every window that closes; one beyond the
threshold is a ``model_outlier`` deviation naming the features that drove its score, the
window's values next to those of its nearest learned window. ``accept`` takes the window's
features as normal (the model file changes with it).

Options (``baseline.model`` in the config, as ``AspectContext.options``): ``window_seconds``
(2), ``min_windows``, ``scale_floor``, ``margin``, ``quantile``, ``min_threshold``,
``max_points``, ``top`` (see ``ModelOptions``) and ``max_training_windows`` (50 000: beyond it
learning keeps every other window and then every second one of those that follow, and so on).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, Self

from otsentry.baseline.aspect import (
    AnomalyKind,
    Aspect,
    AspectContext,
    AspectDataError,
    Deviation,
    iso,
)
from otsentry.baseline.features import ACTION_PREFIX, WindowExtractor, WindowVector
from otsentry.baseline.model import (
    MODEL_NAME,
    InsufficientData,
    ModelFileError,
    ModelOptions,
    OutlierModel,
    Score,
)
from otsentry.model import Event

__all__ = ["ModelAspect", "model_path"]

DEFAULT_WINDOW_SECONDS: Final = 2.0
DEFAULT_MAX_TRAINING_WINDOWS: Final = 50_000
#: words in an action's name that make it a command changing the device (T0855)
_COMMAND_WORDS: Final = (
    "write",
    "force",
    "modify",
    "download",
    "delete",
    "call",
    "plc-stop",
    "plc-start",
    "set-",
    "umas",
)


def model_path(stem: Path) -> Path:
    """The model file beside the baseline file ``stem`` + ``.yaml``."""
    return stem.with_name(stem.name + ".model.joblib")


class ModelAspect(Aspect):
    """Per-link window features scored by the segment's outlier model (``model_outlier``)."""

    name: ClassVar[str] = "model"
    protocols: ClassVar[frozenset[str] | None] = None

    def __init__(self, context: AspectContext | None = None) -> None:
        super().__init__(context)
        opts = dict(self.context.options)
        self.window_seconds = float(opts.pop("window_seconds", DEFAULT_WINDOW_SECONDS))
        self.max_training = int(opts.pop("max_training_windows", DEFAULT_MAX_TRAINING_WINDOWS))
        known = {f.name for f in dataclasses.fields(ModelOptions)}
        unknown = sorted(set(opts) - known)
        if unknown:
            raise AspectDataError("options", f"unknown model options {unknown}")
        self.options = ModelOptions(**opts)
        self.extractor = WindowExtractor(self.window_seconds)
        #: when the next window closes, once there is a model (the detector ticks from then on)
        self.due: float = math.inf
        self.model: OutlierModel | None = None
        self.status = "learning"
        self.reason = ""
        #: from the baseline file, checked against the model file
        self._features: list[str] | None = None
        self._fingerprint: str | None = None
        self._training: list[WindowVector] = []
        self._stride = 1
        self._seen = 0
        self.scored = 0
        self.outliers = 0

    # -- learning ---------------------------------------------------------------------------
    def learn(self, event: Event) -> None:
        """Count the event into its window; keep the windows that close."""
        for window in self.extractor.add(event):
            self._keep(window)

    def _keep(self, window: WindowVector) -> None:
        if not window.complete:
            return
        self._seen += 1
        if (self._seen - 1) % self._stride:
            return
        self._training.append(dataclasses.replace(window, sample=None))
        if len(self._training) >= self.max_training:
            self._training = self._training[::2]
            self._stride *= 2

    def end_learning(self, ts: int) -> None:
        """Close the windows packet time has passed and train (the open ones are incomplete
        and left out)."""
        for window in self.extractor.advance(ts):
            self._keep(window)
        self.extractor.reset()
        try:
            self.model = OutlierModel.train(self._training, self.window_seconds, self.options)
            self.status, self.reason = "trained", ""
        except InsufficientData as exc:
            self.model = None
            self.status, self.reason = "insufficient", str(exc)
        self._training = []

    def to_data(self) -> dict[str, Any]:
        """Status, window length, and the model's summary."""
        data: dict[str, Any] = {
            "status": self.status,
            "window_seconds": self.window_seconds,
            "windows_learned": self._seen,
        }
        if self.reason:
            data["reason"] = self.reason
        if self.model is not None:
            data.update(self.model.summary())
        elif self._fingerprint is not None and self._features is not None:
            data["fingerprint"] = self._fingerprint
            data["features"] = [{"name": n} for n in self._features]
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any], context: AspectContext | None = None) -> Self:
        """The settings and the model's identity; the model itself comes from ``load_side``."""
        context = context if context is not None else AspectContext()
        options = dict(context.options)
        window = data.get("window_seconds")
        if not isinstance(window, int | float) or isinstance(window, bool) or window <= 0:
            raise AspectDataError("window_seconds", "a positive number of seconds expected")
        options["window_seconds"] = float(window)
        self = cls(AspectContext(context.segment, options))
        status = data.get("status")
        if status not in ("trained", "insufficient", "learning"):
            raise AspectDataError("status", f"unknown status {status!r}")
        self.status = str(status)
        self.reason = str(data.get("reason", ""))
        seen = data.get("windows_learned", 0)
        self._seen = seen if isinstance(seen, int) else 0
        if self.status == "trained":
            fingerprint = data.get("fingerprint")
            features = data.get("features")
            if not isinstance(fingerprint, str):
                raise AspectDataError("fingerprint", "missing")
            if not isinstance(features, list) or not all(
                isinstance(f, Mapping) and isinstance(f.get("name"), str) for f in features
            ):
                raise AspectDataError("features", "a list of {name: ...} expected")
            self._fingerprint = fingerprint
            self._features = [str(f["name"]) for f in features]
        return self

    # -- side file --------------------------------------------------------------------------
    def save_side(self, stem: Path) -> None:
        """Write ``DIR/<segment>.model.joblib`` when there is a model."""
        if self.model is not None:
            self.model.save(model_path(stem))

    def load_side(self, stem: Path) -> None:
        """Read the model file the baseline file names (refused when its versions, features
        or fingerprint differ)."""
        if self.status != "trained":
            return
        try:
            self.model = OutlierModel.load(
                model_path(stem), features=self._features, fingerprint=self._fingerprint
            )
        except ModelFileError as exc:
            raise AspectDataError("", str(exc)) from exc

    # -- detection --------------------------------------------------------------------------
    def check(self, event: Event) -> list[Deviation]:
        """Count the event; score the windows that closed."""
        if self.model is None:
            return []
        extractor = self.extractor
        closed = extractor.add(event)
        self.due = extractor.due
        return self._score(closed) if closed else []

    def tick(self, ts: int) -> list[Deviation]:
        """Score the windows packet time has passed."""
        if self.model is None:
            return []
        extractor = self.extractor
        closed = extractor.advance(ts)
        self.due = extractor.due
        return self._score(closed) if closed else []

    def finish(self, ts: int) -> list[Deviation]:
        """Score what ``ts`` closes; windows still open are incomplete and not scored. The
        next run starts with no window and no link."""
        if self.model is None:
            return []
        out = self._score(self.extractor.advance(ts))
        self.extractor.reset()
        self.due = self.extractor.due
        return out

    def _score(self, windows: list[WindowVector]) -> list[Deviation]:
        assert self.model is not None
        complete = [w for w in windows if w.complete]
        if not complete:
            return []
        self.scored += len(complete)
        out: list[Deviation] = []
        for i, score in self.model.outliers(complete):
            self.outliers += 1
            out.append(self._deviation(complete[i], score))
        return out

    def _deviation(self, w: WindowVector, s: Score) -> Deviation:
        _, client, server, service = w.link
        top = s.top
        parts = [f"{_label(c.feature)} {c.observed:g} ({c.normal:g})" for c in top]
        if parts:
            parts[0] = (
                f"{_label(top[0].feature)} {top[0].observed:g} "
                f"(nearest learned window {top[0].normal:g})"
            )
        unseen = ", ".join(f"{a} ({n})" for a, n in s.other_actions)
        reason = (
            f"{w.describe()}, {self.window_seconds:g} s from {iso(w.start)}: unlike every learned "
            f"{service} window (distance {s.score:g}, threshold {s.threshold:g}); most different: "
            + "; ".join(parts)
            + (f"; actions never learned: {unseen}" if unseen else "")
        )
        item = {
            "segment": w.link[0],
            "client": client,
            "server": server,
            "service": service,
            "window_start": iso(w.start),
            "features": {k: v for k, v in sorted(w.values.items()) if not math.isnan(v)},
        }
        return Deviation(
            kind=AnomalyKind.MODEL_OUTLIER,
            aspect=self.name,
            item=item,
            reason=reason,
            expected={c.feature: c.normal for c in top},
            observed={c.feature: c.observed for c in top},
            level="high" if s.score >= 2 * s.threshold else None,
            techniques=_techniques(s),
            score=s.score,
            model=MODEL_NAME,
            features={
                c.feature: {"observed": c.observed, "normal": c.normal, "z": c.z} for c in top
            },
            event=w.sample,
            hosts=(client, server),
        )

    # -- folding back -----------------------------------------------------------------------
    def accept(self, item: Mapping[str, Any]) -> bool:
        """Take an outlier window's features as normal."""
        features = item.get("features")
        service = item.get("service")
        if self.model is None or not isinstance(features, Mapping) or not isinstance(service, str):
            return False
        if "window_start" not in item:
            return False
        values: dict[str, float] = {}
        for name, value in features.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise AspectDataError(f"features.{name}", "a number expected")
            values[str(name)] = float(value)
        self.model.add(service, values)
        self.status = "trained"
        return True

    def stats(self) -> dict[str, Any]:
        """Windows scored and found outlying, and the window extractor's counters."""
        return {
            "status": self.status,
            "windows_scored": self.scored,
            "outliers": self.outliers,
            **self.extractor.stats.as_dict(),
        }


def _label(feature: str) -> str:
    return feature[len(ACTION_PREFIX) :] if feature.startswith(ACTION_PREFIX) else feature


def _techniques(s: Score) -> tuple[str, ...] | None:
    """ATT&CK for ICS techniques for what rose in the window (None: the kind's default)."""
    found: list[str] = []
    for c in s.top:
        if c.z <= 0:
            continue
        name = c.feature
        if name.startswith(ACTION_PREFIX):
            action = name[len(ACTION_PREFIX) :]
            if any(word in action for word in _COMMAND_WORDS):
                found.append("T0855")
                if "write" in action and c.observed >= 10:
                    found.append("T0806")  # brute force I/O
            elif "read" in action or "browse" in action:
                found.append("T0861")
        elif name in ("addresses_distinct", "units_distinct", "items"):
            found.append("T0861")
        elif name in ("flows_started", "flows_failed"):
            found.append("T0846")
        elif name == "unanswered":
            found.append("T0814")
    if not found:
        return None
    return tuple(dict.fromkeys(found))
