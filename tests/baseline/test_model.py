"""The outlier model on the lab captures: determinism, file checks, benign and attack windows,
and the aspect that puts it in a baseline."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path

import joblib  # type: ignore[import-untyped]
import pytest
import yaml

from otsentry.baseline.aspect import AnomalyKind, AspectContext, AspectDataError, Deviation
from otsentry.baseline.features import WindowVector
from otsentry.baseline.model import InsufficientData, ModelFileError, OutlierModel
from otsentry.baseline.model_aspect import ModelAspect, model_path
from tests.baseline.lab_windows import (
    ATTACKER,
    NORMAL,
    OPCSRV,
    PLC1,
    RTU1,
    complete_windows,
    events_of,
    lab,
)
from tests.conftest import LAB_PCAPS


@cache
def normal_model() -> OutlierModel:
    """The model of the lab's normal Modbus, S7 and OPC UA captures."""
    return OutlierModel.train(complete_windows(*NORMAL), 2.0)


def outliers(model: OutlierModel, name: str) -> list[tuple[WindowVector, list[str]]]:
    """The capture's outlier windows with the features that drove each score."""
    windows = complete_windows(name)
    return [
        (w, [c.feature for c in s.top])
        for w, s in zip(windows, model.score_many(windows), strict=True)
        if s.outlier
    ]


# -- determinism and files --------------------------------------------------------------------
def test_training_twice_gives_the_same_model_and_file(tmp_path: Path) -> None:
    a = OutlierModel.train(complete_windows(*NORMAL), 2.0)
    b = OutlierModel.train(complete_windows(*NORMAL), 2.0)
    assert a.fingerprint() == b.fingerprint()
    assert a.summary() == b.summary()
    a.save(tmp_path / "a.model.joblib")
    b.save(tmp_path / "b.model.joblib")
    assert (tmp_path / "a.model.joblib").read_bytes() == (tmp_path / "b.model.joblib").read_bytes()
    windows = complete_windows("modbus_abuse.pcap")
    assert a.score_many(windows) == b.score_many(windows)
    loaded = OutlierModel.load(tmp_path / "a.model.joblib")
    assert loaded.score_many(windows) == a.score_many(windows)


def test_a_model_file_of_another_version_or_baseline_is_refused(tmp_path: Path) -> None:
    model = normal_model()
    path = tmp_path / "seg.model.joblib"
    model.save(path)
    OutlierModel.load(path, features=model.features, fingerprint=model.fingerprint())

    outer = joblib.load(path)
    outer["header"]["sklearn_version"] = "0.24.2"
    joblib.dump(outer, tmp_path / "old.model.joblib")
    with pytest.raises(
        ModelFileError, match=r"made with scikit-learn 0\.24\.2.*learn the baseline"
    ):
        OutlierModel.load(tmp_path / "old.model.joblib")

    outer = joblib.load(path)
    outer["header"]["format_version"] = 99
    joblib.dump(outer, tmp_path / "new.model.joblib")
    with pytest.raises(ModelFileError, match="format version 99"):
        OutlierModel.load(tmp_path / "new.model.joblib")

    with pytest.raises(ModelFileError, match="features differ"):
        OutlierModel.load(path, features=[*model.features, "action.modbus-new"])
    with pytest.raises(ModelFileError, match="fingerprint"):
        OutlierModel.load(path, fingerprint="0123456789abcdef")
    (tmp_path / "junk.model.joblib").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="not a model file"):
        OutlierModel.load(tmp_path / "junk.model.joblib")
    with pytest.raises(ModelFileError, match="missing"):
        OutlierModel.load(tmp_path / "none.model.joblib")


def test_too_few_windows_train_no_model() -> None:
    with pytest.raises(InsufficientData, match="3 complete windows"):
        OutlierModel.train(complete_windows("modbus_normal.pcap")[:3], 2.0)


# -- benign traffic ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*NORMAL, "modbus_port5020.pcap"])
def test_benign_lab_captures_score_no_outlier(name: str) -> None:
    model = normal_model()
    assert outliers(model, name) == []
    # and the normal windows keep their distance from the threshold
    scores = model.score_many(complete_windows(name))
    assert max(s.score for s in scores) < model.threshold / 2


def test_a_second_benign_run_scores_no_outlier() -> None:
    first = lab("learning/modbus_learn.pcap")
    second = lab("learning/modbus_learn_run2.pcap")
    model = OutlierModel.train(complete_windows(str(first.relative_to(LAB_PCAPS))), 2.0)
    assert model.training["windows"] > 200
    assert outliers(model, str(second.relative_to(LAB_PCAPS))) == []


def test_the_hmis_windows_in_attack_captures_are_not_outliers() -> None:
    model = normal_model()
    for name in ("modbus_attacks.pcap", "modbus_abuse.pcap", "s7comm_attacks.pcap"):
        flagged = {w.link[1] for w, _ in outliers(model, name)}
        assert flagged == {ATTACKER}, name


# -- attacks ----------------------------------------------------------------------------------
def test_modbus_attacks_are_outliers_that_name_what_rose() -> None:
    model = normal_model()
    found = outliers(model, "modbus_abuse.pcap")
    by_server: dict[str, list[list[str]]] = {}
    for w, top in found:
        by_server.setdefault(w.link[2], []).append(top)
    # brute-force I/O on plc1: the two write functions drive the score
    assert any(
        {"action.modbus-write-single-coil", "action.modbus-write-single-register"} <= set(top[:3])
        for top in by_server[PLC1]
    )
    # the unit-id sweep and parameter flood: exceptions
    assert any("failures" in top[:2] for top in by_server[PLC1])
    # rtu1's pipelined flood: unanswered requests first
    assert any(top[0] == "unanswered" for top in by_server[RTU1])

    scan = outliers(model, "modbus_attacks.pcap")
    # the function-code scan: unknown functions, exceptions, dissector anomalies
    assert any({"action.other", "anomalies", "failures"} <= set(top[:3]) for w, top in scan)


def test_opcua_attacks_are_outliers_that_name_what_rose() -> None:
    model = normal_model()
    browse = outliers(model, "opcua_attacks.pcap")
    assert {w.link[1:] for w, _ in browse} == {(ATTACKER, OPCSRV, "opcua")}
    assert any(top[0] == "addresses_distinct" for _, top in browse)  # enumeration
    auth = outliers(model, "opcua_auth.pcap")
    guesses = [top for w, top in auth if w.link[1] == ATTACKER]
    assert any("failures" in top for top in guesses)  # the refused logins


def test_the_model_catches_what_known_links_and_functions_hide() -> None:
    """Learned with the attacker's function-code scan in it, the attacker, its link and its
    write functions are all known; the brute force is still unlike anything learned."""
    model = OutlierModel.train(complete_windows("modbus_normal.pcap", "modbus_attacks.pcap"), 2.0)
    learned = {w.link for w in complete_windows("modbus_normal.pcap", "modbus_attacks.pcap")}
    actions = {
        name
        for w in complete_windows("modbus_attacks.pcap")
        if w.link[1] == ATTACKER
        for name in w.values
        if name.startswith("action.")
    }
    brute = [
        (w, top)
        for w, top in outliers(model, "modbus_abuse.pcap")
        if w.values.get("action.modbus-write-single-coil", 0) >= 20
    ]
    assert len(brute) == 1
    w, top = brute[0]
    assert w.link in learned
    assert {"action.modbus-write-single-coil", "action.modbus-write-single-register"} <= actions
    assert top[0] == "action.modbus-write-single-coil"


# -- lazy imports -----------------------------------------------------------------------------
def test_a_replay_without_a_model_imports_no_scikit_learn(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from otsentry.baseline.model_aspect import ModelAspect\n"
        "from otsentry.capture import open_capture\n"
        "from otsentry.config import Config\n"
        "from otsentry.pipeline import Pipeline\n"
        f"p = Pipeline(Config(), Path({str(tmp_path)!r}))\n"
        "aspect = ModelAspect()\n"
        "p.event_hooks.append(lambda e: aspect.learn(e) or [])\n"
        f"with open_capture(Path({str(LAB_PCAPS / 'modbus_normal.pcap')!r})) as f:\n"
        "    p.run(f)\n"
        "p.finish()\n"
        "assert aspect.extractor.stats.windows_closed > 10\n"
        "print(sorted(m for m in ('sklearn', 'joblib', 'scipy') if m in sys.modules))\n"
    )
    lab("modbus_normal.pcap")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the aspect -------------------------------------------------------------------------------
def learned_aspect(*names: str, **options: object) -> ModelAspect:
    """Learned from the captures' events merged in time order, as a replay of several files
    merges them."""
    aspect = ModelAspect(AspectContext("10.10.30.0/24", options))
    events = sorted((e for name in names for e in events_of(name)), key=lambda e: e.envelope.ts)
    for event in events:
        aspect.learn(event)
    aspect.end_learning(events[-1].envelope.ts)
    return aspect


def reloaded(aspect: ModelAspect, tmp_path: Path) -> ModelAspect:
    """Through the baseline file's YAML and the side file, as the store does it."""
    stem = tmp_path / "10.10.30.0_24"
    text = yaml.safe_dump(aspect.to_data(), sort_keys=False)
    aspect.save_side(stem)
    again = ModelAspect.from_data(yaml.safe_load(text), AspectContext("10.10.30.0/24"))
    again.load_side(stem)
    return again


def detect(aspect: ModelAspect, name: str) -> list[Deviation]:
    found: list[Deviation] = []
    last = 0
    for event in events_of(name):
        found += aspect.check(event)
        last = max(last, event.envelope.ts)
    found += aspect.finish(last)
    return found


def test_the_aspect_learns_saves_loads_and_explains(tmp_path: Path) -> None:
    learned = learned_aspect(*NORMAL)
    data = learned.to_data()
    assert data["status"] == "trained"
    assert data["threshold"] >= 4.0
    assert [f["name"] for f in data["features"]][:3] == [
        "actions_distinct",
        "failures",
        "unanswered",
    ]
    aspect = reloaded(learned, tmp_path)
    assert model_path(tmp_path / "10.10.30.0_24").is_file()
    assert aspect.to_data() == data

    assert detect(aspect, "modbus_port5020.pcap") == []
    found = detect(aspect, "modbus_abuse.pcap")
    assert found and all(d.kind is AnomalyKind.MODEL_OUTLIER for d in found)
    assert {d.hosts[0] for d in found} == {ATTACKER}
    brute = [d for d in found if "modbus-write-single-coil 24" in d.reason]
    assert len(brute) == 1
    dev = brute[0]
    assert dev.event is not None and dev.event.envelope.conn.client_ip == ATTACKER
    assert dev.score is not None and dev.score > 2 * data["threshold"]
    assert dev.effective_level == "high"
    assert "T0855" in dev.effective_techniques and "T0806" in dev.effective_techniques
    assert dev.observed["action.modbus-write-single-coil"] == 24
    assert dev.expected["action.modbus-write-single-coil"] == 0
    assert dev.features is not None and dev.features["action.modbus-write-single-coil"]["z"] > 4
    stats = aspect.stats()
    assert stats["outliers"] == len(found) and stats["windows_scored"] > len(found)

    # "learn this": the accepted window is normal from now on
    assert aspect.accept(dev.item)
    again = reloaded(aspect, tmp_path / "accepted")
    assert not [d for d in detect(again, "modbus_abuse.pcap") if d.item == dev.item]


def test_the_aspect_refuses_a_model_file_that_does_not_match(tmp_path: Path) -> None:
    learned = learned_aspect(*NORMAL)
    stem = tmp_path / "seg"
    learned.save_side(stem)
    data = learned.to_data()
    data["fingerprint"] = "ffffffffffffffff"
    aspect = ModelAspect.from_data(data)
    with pytest.raises(AspectDataError, match="fingerprint"):
        aspect.load_side(stem)


def test_too_little_traffic_is_said_and_detects_nothing(tmp_path: Path) -> None:
    aspect = learned_aspect("opcua_normal.pcap")
    data = aspect.to_data()
    assert data["status"] == "insufficient"
    assert "the model needs 20" in data["reason"]
    aspect.save_side(tmp_path / "seg")
    assert not list(tmp_path.iterdir())
    again = ModelAspect.from_data(yaml.safe_load(yaml.safe_dump(data)))
    again.load_side(tmp_path / "seg")
    assert detect(again, "opcua_attacks.pcap") == []


def test_unknown_options_are_refused() -> None:
    with pytest.raises(AspectDataError, match="window_size"):
        ModelAspect(AspectContext("seg", {"window_size": 3}))
