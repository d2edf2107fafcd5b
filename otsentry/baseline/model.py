"""The outlier model of a segment: which per-link windows are unlike every window of learning.

The choice. Windows of one segment come from links that behave very differently (an HMI polling
a PLC five times a second, an engineering station browsing an OPC UA server, a nightly backup),
so "normal" is many small clusters, and an OT network repeats itself: most learned windows are
exact or near copies of each other. The model is therefore the distance to the nearest learned
window (k = 1, the kNN novelty detector of Ramaswamy et al. 2000) in robust z units, with
scikit-learn's ``nan_euclidean`` metric (scikit-learn's ``NearestNeighbors`` at training, a
direct numpy search when scoring: see ``_Points``). Against the alternatives:

- IsolationForest never splits on a feature that was constant during learning, so a count that
  was always 0 (exceptions, writes, failed connections) is invisible to it however large it
  becomes; its scores also need a random state and many trees to be stable on small data.
- LocalOutlierFactor compares densities: with duplicated windows the learned density is
  infinite and any new window, however close, gets an enormous factor; EllipticEnvelope
  needs a covariance that sparse, constant count features make singular, and assumes one
  cluster.
- a per-feature z score against the segment's median cannot tell "like another link" from
  "like nothing": a window of a quiet link is far from the median of a busy segment.

The nearest window answers that directly, is exact and deterministic (no random state at all),
scores a batch of windows in a few array operations, and explains itself: the features that drove a
score are the ones in which the window differs most from its nearest learned window.

Scaling: every feature is ``log1p`` of a count, byte total or milliseconds (counts grow by
factors; 24 writes against 1 matters as much as 2 400 against 100), then centred on its median
and divided by its interquartile range / 1.349 (the standard deviation of a normal variable with
that range), never less than ``scale_floor``: a feature constant during learning would otherwise
make the smallest change infinitely strange. Threshold: each learned window's distance to its
nearest *other* learned window (leave one out) says how far normal windows lie from each other;
the threshold is ``margin`` times the ``quantile`` of those distances and at least
``min_threshold``, so every learned window scores below it with room to spare.

Features: ``GENERIC_FEATURES`` of ``otsentry.baseline.features``, then ``action.<action>`` for
every action seen while learning (sorted), then ``action.other`` (events of any other action).

The file ``DIR/<segment>.model.joblib`` is a joblib dump of a header (format, format version,
scikit-learn version, feature names, fingerprint) and the pickled model; loading checks the
header before it unpickles anything and refuses a file of another format version, another
scikit-learn version or other features with ``ModelFileError`` saying what to do. numpy and
joblib are imported only when a model is trained or loaded, scikit-learn only when one is
trained or written: loading and scoring do without it.
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from otsentry.baseline.features import (
    ACTION_PREFIX,
    GENERIC_FEATURES,
    OPTIONAL_FEATURES,
    WindowVector,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float64]

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MODEL_NAME",
    "OTHER_ACTIONS",
    "Contribution",
    "InsufficientData",
    "ModelFileError",
    "ModelOptions",
    "OutlierModel",
    "Score",
]

FORMAT: Final = "otsentry-window-model"
FORMAT_VERSION: Final = 1
#: the model's name in alerts (``otsentry.anomaly.model``)
MODEL_NAME: Final = "nearest-window"
#: the feature counting events of actions not seen while learning
OTHER_ACTIONS: Final = ACTION_PREFIX + "other"


class ModelFileError(ValueError):
    """A model file that cannot be used (missing, damaged, or made by another version)."""


class InsufficientData(ValueError):
    """Too few learned windows to train on."""


@dataclass(frozen=True, slots=True)
class ModelOptions:
    """How a model is trained (``baseline.model`` in the config)."""

    #: fewer complete windows than this: no model (the baseline says so)
    min_windows: int = 20
    #: the smallest scale of a feature, in log1p units (0.5: a factor of about 1.65)
    scale_floor: float = 0.5
    #: threshold = margin * quantile of the leave-one-out distances, at least min_threshold
    margin: float = 2.0
    quantile: float = 0.8
    min_threshold: float = 4.0
    #: distinct learned windows kept (beyond: the model keeps a deterministic every-n-th one)
    max_points: int = 20_000
    #: features named in an alert
    top: int = 5


@dataclass(frozen=True, slots=True)
class Contribution:
    """How one feature of a window differs from its nearest learned window."""

    feature: str
    observed: float
    normal: float
    #: signed difference in robust z units (positive: more than normal)
    z: float


@dataclass(frozen=True, slots=True)
class Score:
    """A window's distance to the nearest learned window, and what made it."""

    score: float
    threshold: float
    top: tuple[Contribution, ...]
    #: actions not seen while learning (they count under ``action.other``), most frequent first
    other_actions: tuple[tuple[str, int], ...] = ()

    @property
    def outlier(self) -> bool:
        """Whether the window lies beyond the threshold."""
        return self.score > self.threshold


@dataclass(slots=True)
class OutlierModel:
    """A trained model: scaling, the distinct learned windows by service, the threshold.

    Build one with ``train``; ``score`` / ``score_many`` rate windows; ``add`` folds a window
    in as normal; ``save`` / ``load`` keep it in a file.
    """

    features: tuple[str, ...]
    window_seconds: float
    center: Matrix
    scale: Matrix
    #: distinct learned windows (log1p of the features, NaN where missing), sorted by service
    #: then values; the service of each; how often each was seen
    points: Matrix
    services: tuple[str, ...]
    weights: Matrix
    threshold: float
    options: ModelOptions
    training: dict[str, Any] = field(default_factory=dict)
    #: service → (sklearn NearestNeighbors over its scaled points, their rows); "" → all
    #: points. Built for training and for the model file only (scoring does not use them).
    _indexes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    _positions: dict[str, int] = field(default_factory=dict)
    #: service → its learned windows for scoring (see ``_Points``); "" → all of them
    _groups: dict[str, _Points] = field(default_factory=dict)

    # -- training ---------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        windows: Sequence[WindowVector],
        window_seconds: float,
        options: ModelOptions | None = None,
    ) -> OutlierModel:
        """Train on complete windows (incomplete ones are skipped); ``InsufficientData`` when
        fewer than ``options.min_windows`` remain."""
        import numpy as np

        options = options or ModelOptions()
        complete = [w for w in windows if w.complete]
        needed = max(2, options.min_windows)
        if len(complete) < needed:
            raise InsufficientData(
                f"{len(complete)} complete windows of {window_seconds:g} s learned; "
                f"the model needs {needed}"
            )
        actions = sorted(
            {name for w in complete for name in w.values if name.startswith(ACTION_PREFIX)}
        )
        features = (*GENERIC_FEATURES, *actions, OTHER_ACTIONS)
        positions = {name: i for i, name in enumerate(features)}
        blank = _blank(features)
        logs = np.log1p(np.array([_row(w.values, positions, blank) for w in complete]))
        center = np.nan_to_num(np.nanmedian(logs, axis=0))
        q75, q25 = np.nan_to_num(np.nanpercentile(logs, [75.0, 25.0], axis=0))
        scale = np.maximum((q75 - q25) / 1.349, options.scale_floor)
        services, points, weights = _distinct([w.link[3] for w in complete], logs)
        services, points, weights = _thin(services, points, weights, options.max_points)
        model = cls(
            features=features,
            window_seconds=window_seconds,
            center=center,
            scale=scale,
            points=points,
            services=services,
            weights=weights,
            threshold=0.0,
            options=options,
            training={
                "windows": len(complete),
                "windows_incomplete": len(windows) - len(complete),
                "distinct_windows": len(points),
                "links": len({w.link for w in complete}),
                "services": sorted(set(services)),
            },
        )
        model._prepare()
        loo = model._leave_one_out()
        q = float(np.quantile(loo, options.quantile)) if len(loo) else 0.0
        model.threshold = _round(max(options.min_threshold, options.margin * q))
        model.training["loo_distance_max"] = _round(float(loo.max()) if len(loo) else 0.0)
        model.training["loo_distance_quantile"] = _round(q)
        return model

    def _prepare(self) -> None:
        """Group the scaled learned windows by service for scoring (numpy only); the sklearn
        indexes are dropped and rebuilt when training or saving needs them."""
        import numpy as np

        self._positions = {name: i for i, name in enumerate(self.features)}
        scaled = self._scaled(self.points)
        services = np.array(self.services, dtype=object)
        groups = {"": np.arange(len(self.points))}
        for service in sorted(set(self.services)):
            groups[service] = np.flatnonzero(services == service)
        self._groups = {service: _Points(rows, scaled[rows]) for service, rows in groups.items()}
        self._indexes = {}

    def _sklearn_indexes(self) -> dict[str, tuple[Any, Any]]:
        """The sklearn ``NearestNeighbors`` per service (leave-one-out and the model file)."""
        from sklearn.neighbors import NearestNeighbors  # type: ignore[import-untyped]

        if not self._indexes:
            self._indexes = {
                service: (
                    NearestNeighbors(n_neighbors=1, algorithm="brute", metric="nan_euclidean").fit(
                        group.scaled
                    ),
                    group.rows,
                )
                for service, group in self._groups.items()
            }
        return self._indexes

    def _scaled(self, logs: Matrix) -> Matrix:
        out: Matrix = (logs - self.center) / self.scale
        return out

    def _index_for(self, service: str) -> tuple[Any, Any]:
        indexes = self._sklearn_indexes()
        return indexes.get(service) or indexes[""]

    def _leave_one_out(self) -> Matrix:
        """Each distinct learned window's distance to its nearest other one of its service (of
        any service when it is its service's only one; 0 when it was seen more than once)."""
        import numpy as np

        scaled = self._scaled(self.points)
        loo = np.zeros(len(self.points))
        for i, service in enumerate(self.services):
            if self.weights[i] > 1:
                continue
            index, rows = self._index_for(service)
            if len(rows) < 2:
                index, rows = self._sklearn_indexes()[""]
            if len(rows) < 2:
                continue
            dist, _ = index.kneighbors(scaled[i : i + 1], n_neighbors=2)
            loo[i] = dist[0, 1]
        return loo

    # -- scoring ----------------------------------------------------------------------------
    def vector(self, values: Mapping[str, float]) -> Matrix:
        """log1p of a window's features in the model's order (unknown actions → other, NaN
        for a missing optional feature)."""
        import numpy as np

        out: Matrix = np.log1p(np.array(_row(values, self._positions, _blank(self.features))))
        return out

    def score(self, window: WindowVector) -> Score:
        """Rate one window."""
        return self.score_many([window])[0]

    def score_many(self, windows: Sequence[WindowVector]) -> list[Score]:
        """Rate windows, each against the learned windows of its service (of every service
        when its service was never learned)."""
        return [score for _, score in self._rate(windows, only_outliers=False)]

    def outliers(self, windows: Sequence[WindowVector]) -> list[tuple[int, Score]]:
        """The positions and scores of the windows beyond the threshold (as ``score_many``
        rates them; the others are not explained)."""
        return self._rate(windows, only_outliers=True)

    def _rate(
        self, windows: Sequence[WindowVector], *, only_outliers: bool
    ) -> list[tuple[int, Score]]:
        import numpy as np

        if not windows:
            return []
        positions, blank = self._positions, _blank(self.features)
        logs = np.log1p(np.array([_row(w.values, positions, blank) for w in windows]))
        scaled = self._scaled(logs)
        out: list[tuple[int, Score]] = []
        groups = self._groups
        by_service: dict[str, list[int]] = {}
        for i, w in enumerate(windows):
            service = w.link[3] if w.link[3] in groups else ""
            by_service.setdefault(service, []).append(i)
        threshold = self.threshold
        for service, members in sorted(by_service.items()):
            group = groups[service]
            dist, idx = group.nearest(scaled[members])
            for j, i in enumerate(members):
                d = float(dist[j])
                if only_outliers and not _round(d) > threshold:
                    continue
                nearest = self.points[group.rows[idx[j]]]
                out.append((i, self._explain(windows[i], logs[i], nearest, d)))
        out.sort(key=lambda pair: pair[0])
        return out

    def _explain(self, w: WindowVector, logs: Matrix, nearest: Matrix, dist: float) -> Score:
        import numpy as np

        diff = np.nan_to_num((logs - nearest) / self.scale)
        order = np.argsort(-np.abs(diff), kind="stable")
        top: list[Contribution] = []
        for i in order[: self.options.top]:
            if diff[i] == 0:
                break
            top.append(
                Contribution(
                    feature=self.features[i],
                    observed=_round(float(np.expm1(logs[i]))),
                    normal=_round(float(np.expm1(nearest[i]))),
                    z=_round(float(diff[i])),
                )
            )
        positions = self._positions
        other = sorted(
            (
                (name[len(ACTION_PREFIX) :], int(v))
                for name, v in w.values.items()
                if name.startswith(ACTION_PREFIX) and name not in positions
            ),
            key=lambda kv: (-kv[1], kv[0]),
        )
        return Score(_round(dist), self.threshold, tuple(top), tuple(other[:5]))

    # -- folding back -----------------------------------------------------------------------
    def add(self, service: str, values: Mapping[str, float]) -> None:
        """Take a window of ``service`` with these features as normal from now on."""
        import numpy as np

        row = self.vector(values)
        services = [*self.services, service]
        points = np.vstack([self.points, row])
        weights = np.append(self.weights, 1.0)
        self.services, self.points, self.weights = _distinct(services, points, weights)
        self.training["accepted"] = int(self.training.get("accepted", 0)) + 1
        self._prepare()

    # -- description ------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A digest of everything that decides a score (the baseline file and the model file
        carry the same)."""
        import numpy as np

        h = hashlib.sha256()
        h.update("\n".join(self.features).encode())
        h.update("\n".join(self.services).encode())
        for array in (self.center, self.scale, self.points, self.weights):
            h.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
        h.update(repr((self.threshold, self.window_seconds)).encode())
        return h.hexdigest()[:16]

    def summary(self) -> dict[str, Any]:
        """The model as readable data for the baseline file: per feature its median and
        scale, the threshold, what it was trained on."""
        import numpy as np

        return {
            "model": MODEL_NAME,
            "fingerprint": self.fingerprint(),
            "window_seconds": self.window_seconds,
            "threshold": self.threshold,
            "training": dict(sorted(self.training.items())),
            "features": [
                {
                    "name": name,
                    "median": _round(float(np.expm1(self.center[i]))),
                    "scale_log1p": _round(float(self.scale[i])),
                }
                for i, name in enumerate(self.features)
            ],
        }

    # -- files ------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the model file (the same model gives the same bytes)."""
        import joblib  # type: ignore[import-untyped]
        import sklearn  # type: ignore[import-untyped]

        payload = {
            "features": self.features,
            "window_seconds": self.window_seconds,
            "center": self.center,
            "scale": self.scale,
            "points": self.points,
            "services": self.services,
            "weights": self.weights,
            "threshold": self.threshold,
            "options": self.options,
            "training": dict(sorted(self.training.items())),
            "indexes": self._sklearn_indexes(),
        }
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "sklearn_version": sklearn.__version__,
            "features": list(self.features),
            "fingerprint": self.fingerprint(),
        }
        blob = pickle.dumps(payload, protocol=5)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"header": header, "model": blob}, path, compress=("zlib", 3))

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        features: Sequence[str] | None = None,
        fingerprint: str | None = None,
    ) -> OutlierModel:
        """Read a model file; ``ModelFileError`` when it is missing or damaged, was made by
        another format or scikit-learn version, or (when given) its features or fingerprint
        differ from what the baseline file says. scikit-learn is not imported: the file's
        sklearn indexes are skipped (scoring does not need them; saving rebuilds them)."""
        import joblib

        sklearn_version = _sklearn_version()

        if not path.is_file():
            raise ModelFileError(f"{path}: model file missing (learn the baseline again)")
        try:
            outer = joblib.load(path)
        except Exception as exc:  # joblib raises whatever the damage causes
            raise ModelFileError(f"{path}: not a model file ({exc})") from exc
        header = outer.get("header") if isinstance(outer, dict) else None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ModelFileError(f"{path}: not an otsentry window model")
        relearn = "learn the baseline again (otsentry baseline learn)"
        if header.get("format_version") != FORMAT_VERSION:
            raise ModelFileError(
                f"{path}: model format version {header.get('format_version')!r}, this otsentry "
                f"reads {FORMAT_VERSION}: {relearn}"
            )
        if header.get("sklearn_version") != sklearn_version:
            raise ModelFileError(
                f"{path}: made with scikit-learn {header.get('sklearn_version')}, this is "
                f"scikit-learn {sklearn_version}: {relearn}, or install "
                f"scikit-learn=={header.get('sklearn_version')}"
            )
        if features is not None and list(header.get("features", ())) != list(features):
            raise ModelFileError(f"{path}: its features differ from the baseline file's: {relearn}")
        if fingerprint is not None and header.get("fingerprint") != fingerprint:
            raise ModelFileError(
                f"{path}: model fingerprint {header.get('fingerprint')} does not match the "
                f"baseline file's {fingerprint}: {relearn}"
            )
        try:
            payload = _ModelUnpickler(io.BytesIO(outer["model"])).load()
            model = cls(
                features=tuple(payload["features"]),
                window_seconds=float(payload["window_seconds"]),
                center=payload["center"],
                scale=payload["scale"],
                points=payload["points"],
                services=tuple(payload["services"]),
                weights=payload["weights"],
                threshold=float(payload["threshold"]),
                options=payload["options"],
                training=dict(payload["training"]),
            )
            model._prepare()
        except Exception as exc:
            raise ModelFileError(f"{path}: damaged model ({exc})") from exc
        if model.fingerprint() != header.get("fingerprint"):
            raise ModelFileError(f"{path}: damaged model (fingerprint does not match its content)")
        return model


@dataclass(frozen=True, slots=True)
class _Points:
    """The scaled learned windows of one service, searched for a window's nearest one.

    The distance is scikit-learn's ``nan_euclidean``: over the coordinates present in both
    windows, ``sqrt(n_features / n_present * sum of squared differences)``. It is computed
    directly (not as ``|x|² + |y|² - 2x·y`` as scikit-learn does), so it is exact where
    scikit-learn's has rounding error (a few 1e-8 for windows that are nearly equal).
    """

    rows: Any
    #: the windows with NaN (missing) as 0, and 1.0 where present
    zeroed: Matrix
    present: Matrix

    def __init__(self, rows: Any, scaled: Matrix) -> None:
        import numpy as np

        missing = np.isnan(scaled)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "zeroed", np.where(missing, 0.0, scaled))
        object.__setattr__(self, "present", (~missing).astype(np.float64))

    @property
    def scaled(self) -> Matrix:
        """The windows again, NaN where missing."""
        import numpy as np

        out: Matrix = np.where(self.present > 0, self.zeroed, np.nan)
        return out

    def nearest(self, queries: Matrix) -> tuple[Matrix, Any]:
        """For each query row: the distance to its nearest window and that window's index
        (the first of equally near ones)."""
        import numpy as np

        q_missing = np.isnan(queries)
        q_zeroed = np.where(q_missing, 0.0, queries)
        q_present = (~q_missing).astype(np.float64)
        n_features = queries.shape[1]
        n = len(self.zeroed)
        dist = np.empty(len(queries))
        idx = np.empty(len(queries), dtype=np.intp)
        chunk = max(1, _CHUNK_CELLS // max(1, n * n_features))
        for start in range(0, len(queries), chunk):
            qz = q_zeroed[start : start + chunk]
            qp = q_present[start : start + chunk]
            diff = qz[:, None, :] - self.zeroed[None, :, :]
            diff *= diff
            diff *= qp[:, None, :]
            diff *= self.present[None, :, :]
            squares = diff.sum(axis=2)
            count = qp @ self.present.T
            squares[count == 0] = np.nan
            np.maximum(count, 1, out=count)
            squares /= count
            squares *= n_features
            best = _nanargmin_rows(squares)
            idx[start : start + chunk] = best
            dist[start : start + chunk] = np.sqrt(squares[np.arange(len(best)), best])
        return dist, idx


#: elements of the difference array of one batch of queries (about 16 MB)
_CHUNK_CELLS: Final = 2_000_000


def _nanargmin_rows(values: Matrix) -> Any:
    """The first column of each row with the row's smallest value (NaN only when all are)."""
    import numpy as np

    filled = np.where(np.isnan(values), np.inf, values)
    return np.argmin(filled, axis=1)


def _sklearn_version() -> str:
    """The installed scikit-learn's version, without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scikit-learn")
    except PackageNotFoundError:
        return "(not installed)"


class _ModelUnpickler(pickle.Unpickler):
    """Unpickles a model file's payload without scikit-learn: its sklearn objects (the
    nearest-neighbour indexes, rebuilt when needed) come back as ``_Skipped``."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "sklearn" or module.startswith("sklearn."):
            return _Skipped
        return super().find_class(module, name)


class _Skipped:
    """Stands in for a pickled scikit-learn object; keeps none of its state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _blank(names: Sequence[str]) -> list[float]:
    """A window without events: 0 for every feature, NaN for the optional ones."""
    return [math.nan if name in OPTIONAL_FEATURES else 0.0 for name in names]


def _row(
    values: Mapping[str, float], positions: Mapping[str, int], blank: list[float]
) -> list[float]:
    """A window's features in the model's order (``blank`` as ``_blank`` makes it, copied)."""
    row = blank.copy()
    other = positions.get(OTHER_ACTIONS)
    for name, value in values.items():
        i = positions.get(name)
        if i is not None:
            row[i] = float(value)
        elif other is not None and name.startswith(ACTION_PREFIX):
            row[other] += float(value)
    return row


def _distinct(
    services: Sequence[str], logs: Matrix, weights: Matrix | None = None
) -> tuple[tuple[str, ...], Matrix, Matrix]:
    """The distinct (service, window) pairs, sorted, with their summed weights."""
    import numpy as np

    merged: dict[tuple[str, tuple[float, ...]], float] = {}
    for i, service in enumerate(services):
        # NaN != NaN: key missing features by a value no log1p gives
        key = (service, tuple(np.where(np.isnan(logs[i]), -1.0, logs[i]).tolist()))
        merged[key] = merged.get(key, 0.0) + (1.0 if weights is None else float(weights[i]))
    keys = sorted(merged)
    points = np.array([k[1] for k in keys], dtype=np.float64).reshape(len(keys), logs.shape[1])
    points[points == -1.0] = np.nan
    return tuple(k[0] for k in keys), points, np.array([merged[k] for k in keys])


def _thin(
    services: tuple[str, ...], points: Matrix, weights: Matrix, cap: int
) -> tuple[tuple[str, ...], Matrix, Matrix]:
    """At most ``cap`` points: every n-th of the sorted distinct windows (deterministic)."""
    n = len(points)
    if n <= cap:
        return services, points, weights
    step = math.ceil(n / cap)
    return services[::step], points[::step], weights[::step]


def _round(x: float) -> float:
    """Six significant digits: enough to read, stable across platforms' last bits."""
    return float(f"{x:.6g}")
