"""The parsed-baseline cache: keyed by the file's content, never beside the files, safe to lose
or damage, off when asked."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from otsentry.baseline import loadcache, store
from otsentry.baseline.store import BaselineError


def entries(directory: Path) -> set[str]:
    return {p.name for p in directory.glob("*.marshal")}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("OTSENTRY_CACHE_DIR", str(directory))
    return directory


@pytest.fixture
def copy(baseline_dir: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "baseline"
    shutil.copytree(baseline_dir, directory)
    return directory


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_read_fills_the_cache_and_the_next_read_uses_it(cache: Path, copy: Path) -> None:
    (path,) = copy.glob("*.yaml")
    listing = sorted(p.name for p in copy.iterdir())
    first = store.load(path)
    assert entries(cache) == {f"{digest(path)}.marshal"}
    hit, data = loadcache.get(digest(path))
    assert hit and data["segment"] == first.segment
    again = store.load(path)
    assert store.dumps(again) == store.dumps(first) == path.read_text(encoding="utf-8")
    assert again.version == first.version
    assert sorted(p.name for p in copy.iterdir()) == listing  # nothing beside the baseline


def test_saving_fills_the_cache(cache: Path, copy: Path, tmp_path: Path) -> None:
    (path,) = copy.glob("*.yaml")
    baseline = store.load(path)
    shutil.rmtree(cache)
    (saved,) = store.save_all([baseline], tmp_path / "saved")
    assert entries(cache) == {f"{digest(saved)}.marshal"}


def test_an_edited_file_is_read_from_its_text(cache: Path, copy: Path) -> None:
    (path,) = copy.glob("*.yaml")
    store.load(path)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("format_version: 1", "format_version: 99"), encoding="utf-8")
    with pytest.raises(BaselineError, match=r":3: format_version: 99 is not a baseline format"):
        store.load(path)


def test_damaged_or_foreign_entries_count_as_misses(cache: Path, copy: Path) -> None:
    (path,) = copy.glob("*.yaml")
    expected = store.dumps(store.load(path))
    (entry,) = cache.glob("*.marshal")
    blob = entry.read_bytes()
    for damaged in (blob[:-1], blob[:-5] + b"XXXXX", b"", b"junk" * 10):
        entry.write_bytes(damaged)
        assert loadcache.get(digest(path)) == (False, None)
        assert store.dumps(store.load(path)) == expected
    assert loadcache.get(digest(path))[0]  # written again by the last read


def test_the_cache_errors_in_a_file_still_name_its_line(cache: Path, copy: Path) -> None:
    (path,) = copy.glob("*.yaml")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("first_seen:"))
    lines[at] = lines[at].split(":")[0] + ": yesterday\n"
    path.write_text("".join(lines), encoding="utf-8")
    for _ in range(2):  # a miss, then a hit: the same message
        with pytest.raises(BaselineError) as error:
            store.load(path)
        assert f":{at + 1}: aspects." in str(error.value)
        assert "'yesterday' is not an ISO time" in str(error.value)


def test_an_empty_setting_turns_it_off(
    copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTSENTRY_CACHE_DIR", "")
    assert loadcache.cache_dir() is None
    (path,) = copy.glob("*.yaml")
    assert store.load(path).segment
    assert loadcache.get(digest(path)) == (False, None)


def test_an_unwritable_cache_is_no_error(
    copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("OTSENTRY_CACHE_DIR", str(blocker / "cache"))
    (path,) = copy.glob("*.yaml")
    assert store.load(path).segment


def test_default_place_is_the_users_cache_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("OTSENTRY_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert loadcache.cache_dir() == tmp_path / "otsentry" / "baselines"


def test_the_cache_keeps_the_most_recently_written_entries(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loadcache, "MAX_ENTRIES", 3)
    names = [hashlib.sha256(bytes([n])).hexdigest() for n in range(5)]
    for n, name in enumerate(names):
        loadcache.put(name, {"n": n})
        path = cache / f"{name}.marshal"
        os.utime(path, ns=(n * 10**9, n * 10**9))  # written in this order, whatever the clock
    assert entries(cache) == {f"{name}.marshal" for name in names[2:]}
    assert loadcache.get(names[4]) == (True, {"n": 4})
    assert loadcache.get(names[0]) == (False, None)
