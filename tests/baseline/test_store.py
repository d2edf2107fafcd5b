"""Baseline files: stable bytes, round trips, and errors that name the file, line and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from otsentry.baseline import store
from otsentry.baseline.segment import FORMAT_VERSION
from otsentry.config import ConfigError
from tests.baseline.conftest import SEGMENT, learn

#: where ``place`` finds side files (set by the ``text`` fixture)
SIDE_SOURCE: list[Path] = [Path()]


@pytest.fixture(scope="module")
def text(baseline_dir: Path) -> str:
    SIDE_SOURCE[0] = baseline_dir
    return (baseline_dir / store.file_name(SEGMENT)).read_text()


def test_file_name_is_the_segment_made_safe() -> None:
    assert store.file_name("10.10.30.0/24") == "10.10.30.0_24.yaml"
    assert store.file_name("plant floor / cell 3") == "plant_floor_cell_3.yaml"
    assert store.file_name("fe80::/64") == "fe80_64.yaml"
    assert store.file_name("///") == "segment.yaml"


def test_layout_and_readable_times(text: str) -> None:
    lines = text.splitlines()
    first_key = next(line for line in lines if not line.startswith("#"))
    assert first_key == f"format_version: {FORMAT_VERSION}"
    assert f"segment: {SEGMENT}" in lines
    # times are plain ISO text, not quoted and never the wall clock
    assert "  first_packet: 2026-11-22T00:23:23.290183Z" in lines
    order = [
        text.index(k)
        for k in (
            "learning:",
            "  assets:",
            "  links:",
            "  functions:",
            "  addresses:",
            "  security:",
        )
    ]
    assert order == sorted(order)


def test_learning_twice_gives_the_same_bytes(tmp_path: Path, text: str) -> None:
    [baseline] = learn()
    assert store.dumps(baseline) == text
    store.save(baseline, tmp_path)
    assert (tmp_path / store.file_name(SEGMENT)).read_text() == text


def test_load_and_save_round_trip(tmp_path: Path, baseline_dir: Path, text: str) -> None:
    loaded = store.load_dir(baseline_dir)
    assert list(loaded) == [SEGMENT]
    baseline = loaded[SEGMENT]
    assert baseline.version == store.version_of(text.encode())
    assert store.dumps(baseline) == text
    assert baseline.info.events > 500 and not baseline.info.sufficient


def place(text: str, path: Path) -> Path:
    """Write a baseline file's text to ``path`` with the side files of the lab baseline (an
    aspect's model file) next to it."""
    path.write_text(text)
    stem = store.file_name(SEGMENT).removesuffix(store.SUFFIX)
    for side in SIDE_SOURCE[0].glob(f"{stem}.*"):
        if side.suffix != store.SUFFIX:
            shutil.copy(side, path.with_name(path.stem + side.name.removeprefix(stem)))
    return path


def broken(tmp_path: Path, text: str, old: str, new: str) -> Path:
    assert old in text
    return place(text.replace(old, new, 1), tmp_path / "bad.yaml")


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_a_bad_value_names_file_line_and_key(tmp_path: Path, text: str) -> None:
    path = broken(tmp_path, text, "server_port: 502", "server_port: five")
    with pytest.raises(store.BaselineError) as err:
        store.load(path)
    e = err.value
    assert isinstance(e, ConfigError)
    assert e.source == str(path) and e.line == line_of(text, "server_port: 502")
    assert e.key == "aspects.links.links[0].server_port"
    assert str(e).startswith(f"{path}:{e.line}: aspects.links.links[0].server_port: ")


def test_a_bad_range_and_a_bad_time(tmp_path: Path, text: str) -> None:
    path = broken(tmp_path, text, "          - 0-9\n", "          - 9-0\n")
    with pytest.raises(store.BaselineError, match="ascending") as err:
        store.load(path)
    assert err.value.line == line_of(text, "          - 0-9\n")
    assert err.value.key is not None and err.value.key.startswith("aspects.addresses.ranges[")
    path = broken(tmp_path, text, "first_packet: 2026", "first_packet: yesterday 2026")
    with pytest.raises(store.BaselineError, match=r"learning\.first_packet"):
        store.load(path)


def test_another_format_version_is_refused(tmp_path: Path, text: str) -> None:
    path = broken(tmp_path, text, f"format_version: {FORMAT_VERSION}", "format_version: 99")
    with pytest.raises(store.BaselineError, match="learn the baseline again") as err:
        store.load(path)
    assert err.value.key == "format_version"
    assert err.value.line == line_of(text, "format_version:")


def test_unknown_aspects_keys_and_yaml_errors(tmp_path: Path, text: str) -> None:
    path = broken(tmp_path, text, "  security:", "  secretsauce:")
    with pytest.raises(store.BaselineError, match="unknown aspect") as err:
        store.load(path)
    assert err.value.key == "aspects.secretsauce"
    assert err.value.line == line_of(text, "  security:")
    path = broken(tmp_path, text, "segment: ", "segment: [")
    with pytest.raises(store.BaselineError, match="YAML syntax error") as err:
        store.load(path)
    assert err.value.line is not None
    path.write_bytes(b"format_version: 1\nsegment: \xff\n")
    with pytest.raises(store.BaselineError, match="UTF-8") as err:
        store.load(path)
    assert err.value.line == 2


def test_directory_problems(tmp_path: Path, text: str) -> None:
    with pytest.raises(store.BaselineError, match="not a directory"):
        store.load_dir(tmp_path / "missing")
    with pytest.raises(store.BaselineError, match="no baseline files"):
        store.load_dir(tmp_path)
    place(text, tmp_path / "a.yaml")
    place(text, tmp_path / "b.yaml")
    with pytest.raises(store.BaselineError, match="also in"):
        store.load_dir(tmp_path)


def test_an_aspect_missing_from_the_file_is_not_checked(tmp_path: Path, text: str) -> None:
    start = text.index("  functions:")
    end = text.index("  addresses:")
    path = place(text[:start] + text[end:], tmp_path / "partial.yaml")
    baseline = store.load(path)
    assert "functions" not in baseline.aspects
    names = [a.name for a in baseline.route("modbus")]
    assert "functions" not in names and names[:3] == ["assets", "links", "addresses"]
