"""Rule files → compiled rules: line numbers, errors naming file and line, the built-in pack."""

from __future__ import annotations

from pathlib import Path

import pytest

from otsentry.detect.loader import (
    RuleError,
    builtin_rule_paths,
    collect_rules,
    load_rules,
    parse_document,
    read_document,
)
from tests.detect.conftest import HERE, RULES

GOOD = (RULES / "modbus_listen_only.yml").read_text()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_document_lines_point_at_keys_and_items() -> None:
    doc = parse_document("a: 1\nb:\n  c: [x, y]\n  d:\n    - 3\n    - 4\n", "f.yml")
    assert doc.data == {"a": 1, "b": {"c": ["x", "y"], "d": [3, 4]}}
    assert doc.line(("a",)) == 1
    assert doc.line(("b", "c")) == 3
    assert doc.line(("b", "d", 1)) == 6
    assert doc.line(("b", "d", 1, "missing")) == 6  # nearest ancestor


def test_dates_stay_text() -> None:
    assert parse_document("date: 2026-11-22\n").data == {"date": "2026-11-22"}


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("a: 1\nb: [1, 2\n", 3, "YAML syntax error"),
        ("a: 1\na: 2\n", 2, "duplicate key"),
        ("a: &x {b: 1}\nc:\n  <<: *x\n", 3, "merge keys"),
        ("a: !!python/name:os.system x\n", 1, "not supported"),
        ("1: x\n", 1, "expected a name as key"),
    ],
)
def test_yaml_problems_name_file_and_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_document(text, "bad.yml")
    assert err.value.source == "bad.yml"
    assert err.value.line == line
    assert problem in err.value.problem
    assert str(err.value).startswith(f"bad.yml:{line}: ")


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match="cannot read"):
        read_document(tmp_path / "nope.yml")
    bad = tmp_path / "latin1.yml"
    bad.write_bytes(b"id: x\ntitle: caf\xe9\n")
    with pytest.raises(RuleError) as err:
        read_document(bad)
    assert err.value.line == 2


def test_error_message_is_file_line_key_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yml", GOOD.replace("level: high", "level: severe"))
    with pytest.raises(RuleError) as err:
        load_rules([path], builtin=False)
    assert str(err.value) == (
        f"{path}:9: level: expected one of: informational, low, medium, high, critical; "
        "got 'severe'"
    )


def test_compile_errors_point_at_the_entry(tmp_path: Path) -> None:
    text = GOOD.replace("    sub_function: 4\n", "    sub_function|gte: four\n")
    path = write(tmp_path, "r.yml", text)
    with pytest.raises(RuleError) as err:
        load_rules([path], builtin=False)
    assert err.value.line == 14
    assert err.value.key == "detection.selection.sub_function|gte"
    assert "needs a number" in err.value.problem


def test_duplicate_ids_name_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a/one.yml", GOOD)
    second = write(tmp_path, "b/two.yaml", "# a copy\n" + GOOD)
    rules, errors = collect_rules([tmp_path], builtin=False)
    assert [r.rule.id for r in rules] == ["OTS-TEST-MODBUS-LISTEN-ONLY"]
    assert len(errors) == 1
    assert errors[0].source == str(second)
    assert errors[0].line == 2
    assert f"also in {first}:1" in errors[0].problem


def test_collect_keeps_every_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", GOOD.replace("rev: 2", "rev: 0").replace("status: test", "status: x"))
    write(tmp_path, "b.yml", "id: [\n")
    rules, errors = collect_rules([tmp_path, tmp_path / "missing"], builtin=False)
    assert rules == []
    keys = sorted((e.source.rsplit("/", 1)[-1], e.line, e.key) for e in errors)
    assert keys == [
        ("a.yml", 2, "rev"),
        ("a.yml", 4, "status"),
        ("b.yml", 2, None),
        ("missing", None, None),
    ]


def test_directories_are_searched_recursively_for_yaml_only(tmp_path: Path) -> None:
    write(tmp_path, "deep/er/x.yaml", GOOD)
    write(tmp_path, "notes.txt", "not a rule")
    rules = load_rules([tmp_path], builtin=False)
    assert [r.rule.source for r in rules] == [str(tmp_path / "deep/er/x.yaml")]


def test_rules_load_with_their_metadata() -> None:
    rules = {r.rule.id: r for r in load_rules([RULES], builtin=False)}
    assert set(rules) == {
        "OTS-TEST-MODBUS-LISTEN-ONLY",
        "OTS-TEST-MODBUS-WRITE-OUTSIDE",
        "OTS-TEST-ANY-ANOMALY",
        "OTS-TEST-MODBUS-ADDRESS-SCAN",
    }
    rule = rules["OTS-TEST-MODBUS-LISTEN-ONLY"].rule
    assert (rule.rev, rule.level, rule.protocol, rule.severity, rule.risk_score) == (
        2,
        "high",
        "modbus",
        73,
        73.0,
    )
    assert [t.id for t in rule.techniques] == ["T0814"]
    assert rule.attack_version == "18.0"
    assert rule.date == "2026-01-01"
    assert rule.source.endswith("modbus_listen_only.yml")
    assert rule.raw["fixtures"]["match"][0]["sub_function"] == 4


def test_disabled_ids_are_left_out() -> None:
    rules = load_rules([RULES], builtin=False, disabled=["OTS-TEST-ANY-ANOMALY"])
    assert "OTS-TEST-ANY-ANOMALY" not in {r.rule.id for r in rules}
    assert len(rules) == 3


def test_builtin_pack_is_the_rules_directory() -> None:
    paths = builtin_rule_paths()
    root = HERE.parent.parent / "rules"
    assert paths == sorted(p for p in root.rglob("*") if p.suffix in (".yml", ".yaml"))
    rules = load_rules()
    assert len(rules) == len(paths)
    with_tests = load_rules([RULES])
    assert len(with_tests) == len(paths) + 4


def test_a_file_changed_since_the_last_load_is_read_again(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yml", GOOD)
    (first,) = load_rules([path], builtin=False)
    (again,) = load_rules([path], builtin=False)
    assert again is first  # unchanged: the compiled rule is reused
    changed = GOOD.replace("rev: 2", "rev: 3")
    path.write_text(changed + "\n" * (len(GOOD) == len(changed)))
    (fresh,) = load_rules([path], builtin=False)
    assert (first.rule.rev, fresh.rule.rev) == (2, 3)
    path.write_text("id: [\n")
    with pytest.raises(RuleError, match=r"r\.yml:2"):
        load_rules([path], builtin=False)


def test_the_builtin_pack_is_held_to_the_schema_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the built-in files are held to the schema by test_schema.py, not at each start
    import otsentry.detect.loader as loader_module

    off_schema = write(tmp_path, "pack/a.yml", GOOD.replace("rev: 2", "rev: 0"))  # compiles
    monkeypatch.setattr(loader_module, "builtin_rule_paths", lambda: [off_schema])
    rules, errors = collect_rules([])
    assert [r.rule.source for r in rules] == [str(off_schema)] and errors == []
    rules, errors = collect_rules([], check_builtin=True)
    assert rules == [] and [(e.line, e.key) for e in errors] == [(2, "rev")]
    rules, errors = collect_rules([off_schema], builtin=False)  # a file given is always checked
    assert rules == [] and [(e.line, e.key) for e in errors] == [(2, "rev")]
    # a built-in file the compiler refuses is reported as a checked one would be
    both = GOOD.replace("rev: 2", "rev: 0").replace(
        "    sub_function: 4\n", "    sub_function|gte: four\n"
    )
    refused = write(tmp_path, "pack/b.yml", both)
    monkeypatch.setattr(loader_module, "builtin_rule_paths", lambda: [refused])
    _rules, unchecked = collect_rules([])
    _rules, checked = collect_rules([refused], builtin=False)
    assert [str(e) for e in unchecked] == [str(e) for e in checked] and checked
