"""Scoring without scikit-learn: the direct nearest-window search gives scikit-learn's
``nan_euclidean`` nearest neighbours, on the lab's models and on random data with gaps."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import joblib  # type: ignore[import-untyped]
import numpy as np
import pytest
from sklearn.metrics.pairwise import nan_euclidean_distances  # type: ignore[import-untyped]

from otsentry.baseline.model import OutlierModel, _Points
from tests.baseline.lab_windows import NORMAL, complete_windows

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "baselines" / "10.10.30.0_24.model.joblib"
ATTACKS = ("modbus_attacks.pcap", "s7comm_attacks.pcap", "opcua_attacks.pcap", *NORMAL)


def agree_with_sklearn(points: np.ndarray, queries: np.ndarray) -> None:
    """Squared distances to 1e-9 of scikit-learn's, and the nearest point the same one (or
    one exactly as near)."""
    dist, idx = _Points(np.arange(len(points)), points).nearest(queries)
    theirs = nan_euclidean_distances(queries, points)
    ref_idx = np.argmin(np.where(np.isnan(theirs), np.inf, theirs), axis=1)
    ref = theirs[np.arange(len(queries)), ref_idx]
    assert np.allclose(dist**2, ref**2, rtol=0, atol=1e-9, equal_nan=True)
    mine_at_theirs = theirs[np.arange(len(queries)), idx]
    assert np.allclose(mine_at_theirs**2, ref**2, rtol=0, atol=1e-9, equal_nan=True)
    filled = np.where(np.isnan(theirs), np.inf, theirs) ** 2
    unique = (filled <= (ref**2)[:, None] + 1e-9).sum(axis=1) == 1
    assert (idx[unique] == ref_idx[unique]).all()  # ties aside, the very same point


def test_the_lab_model_scores_as_scikit_learn_would() -> None:
    model = OutlierModel.train(complete_windows(*NORMAL), 2.0)
    windows = [w for name in ATTACKS for w in complete_windows(name)]
    scaled = model._scaled(np.array([model.vector(w.values) for w in windows]))
    assert len(windows) > 50
    for group in model._groups.values():
        agree_with_sklearn(group.scaled, scaled)
    # and the scores themselves: the sklearn index the file keeps, queried as before
    index, _ = model._sklearn_indexes()[""]
    dist, _ = index.kneighbors(scaled, n_neighbors=1)
    mine, _ = model._groups[""].nearest(scaled)
    assert np.allclose(mine**2, dist[:, 0] ** 2, rtol=0, atol=1e-9)
    outlying = dist[:, 0] > model.threshold
    assert outlying.any() and (mine[outlying] > model.threshold).all()


def test_the_example_baselines_model_file_scores_as_scikit_learn_would() -> None:
    if not EXAMPLE.exists():
        pytest.skip("no example baseline")
    model = OutlierModel.load(EXAMPLE)
    payload = pickle.loads(joblib.load(EXAMPLE)["model"])
    windows = [w for name in ATTACKS for w in complete_windows(name)]
    scaled = model._scaled(np.array([model.vector(w.values) for w in windows]))
    for service, (index, rows) in payload["indexes"].items():
        dist, _ = index.kneighbors(scaled, n_neighbors=1)
        mine, _ = model._groups[service].nearest(scaled)
        assert np.array_equal(model._groups[service].rows, rows)
        assert np.allclose(mine**2, dist[:, 0] ** 2, rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_random_data_with_gaps_and_duplicates(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(1, 400)), int(rng.integers(1, 30))
    points = rng.normal(0, 3, (n, d)).round(int(rng.integers(0, 3)))
    points[rng.random((n, d)) < 0.2] = np.nan
    queries = np.vstack([rng.normal(0, 3, (50, d)), points[rng.integers(0, n, 20)]])
    queries[rng.random(queries.shape) < 0.2] = np.nan
    queries[0] = np.nan  # nothing present: no distance at all
    if d > 1:
        queries[1, 1:] = np.nan
    agree_with_sklearn(points, queries)


def test_batches_are_cut_without_changing_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    points = rng.normal(0, 1, (500, 20))
    queries = rng.normal(0, 1, (64, 20))
    whole = _Points(np.arange(500), points).nearest(queries)
    monkeypatch.setattr("otsentry.baseline.model._CHUNK_CELLS", 1)
    cut = _Points(np.arange(500), points).nearest(queries)
    assert np.array_equal(whole[0], cut[0]) and np.array_equal(whole[1], cut[1])


def test_a_loaded_model_scores_without_importing_scikit_learn_and_saves_its_indexes(
    tmp_path: Path,
) -> None:
    model = OutlierModel.train(complete_windows(*NORMAL), 2.0)
    path = tmp_path / "m.model.joblib"
    model.save(path)
    code = (
        "import sys; from pathlib import Path\n"
        "from otsentry.baseline.model import OutlierModel\n"
        "from tests.baseline.lab_windows import complete_windows\n"
        f"m = OutlierModel.load(Path({str(path)!r}))\n"
        "scores = m.score_many(complete_windows('modbus_attacks.pcap'))\n"
        "assert any(s.outlier for s in scores)\n"
        "print('sklearn' in sys.modules, sum(s.outlier for s in scores))\n"
        f"m.save(Path({str(tmp_path / 'again.model.joblib')!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    imported, outliers = out.stdout.split()
    assert imported == "False"
    expected = model.score_many(complete_windows("modbus_attacks.pcap"))
    assert int(outliers) == sum(s.outlier for s in expected)
    again = OutlierModel.load(tmp_path / "again.model.joblib")
    assert again.fingerprint() == model.fingerprint()
    assert again.score_many(complete_windows("modbus_attacks.pcap")) == expected
    saved = pickle.loads(joblib.load(tmp_path / "again.model.joblib")["model"])
    assert set(saved["indexes"]) == set(model._groups)
    assert all(hasattr(index, "kneighbors") for index, _ in saved["indexes"].values())


def test_outliers_are_the_outlying_scores_of_score_many() -> None:
    model = OutlierModel.train(complete_windows(*NORMAL), 2.0)
    windows = [w for name in ATTACKS for w in complete_windows(name)]
    scores = model.score_many(windows)
    expected = [(i, s) for i, s in enumerate(scores) if s.outlier]
    assert expected and len(expected) < len(windows)
    assert model.outliers(windows) == expected
    assert model.outliers([]) == []
