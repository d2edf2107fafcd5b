"""The quick reader of baseline YAML: exactly PyYAML's data for what the store writes, and
``Unsupported`` (never other data) for anything else."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.baseline import quickyaml, store

ROOT = Path(__file__).resolve().parents[2]


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types (``1`` is not ``1.0`` nor ``True``), NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def pyyaml(text: str) -> Any:
    return yaml.load(text, Loader=store._Loader)


def quick(text: str) -> Any:
    return quickyaml.parse(text, store._Loader)


def agrees(text: str) -> bool:
    """Whether the quick reader gives PyYAML's data (False: it declined)."""
    try:
        data = quick(text)
    except quickyaml.Unsupported:
        return False
    assert same(data, pyyaml(text)), text
    return True


def dump(data: Any) -> str:
    return yaml.dump(
        data,
        Dumper=store._Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )


def test_learned_baselines_read_quickly_and_exactly(baseline_dir: Path) -> None:
    files = [*baseline_dir.glob("*.yaml"), *(ROOT / "baselines").glob("*.yaml")]
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert agrees(text), path  # no fallback for what the store writes


def test_folded_long_text_and_comment_lines() -> None:
    long = " ".join(f"word{i}" for i in range(40))
    text = "# header\n" + dump({"a": {"label": long, "n": [1, long, "x"]}}) + "# trailer\n"
    assert len(text.splitlines()) > 5  # folded by the dumper's width
    assert agrees(text)


SCALARS = [
    "yes", "No", "on", "OFF", "~", "null", "Null", "true", "True", "0x1F", "0o17", "017",
    "1_000", "+12", "-7", "1:20", "1e3", "1.5e-3", ".inf", "-.inf", ".NaN", ".5", "5.",
    "0.0", "10.10.30.0/24", "00-D0-C9-1A-30-0A", "2026-11-22T00:23:23.290152Z", "2026-11-22",
    "a:b", "a#b", "http://x/y", "-x", "x-", "ünïcödé", "=", "<<", "",
]  # fmt: skip


@pytest.mark.parametrize("value", SCALARS)
def test_plain_scalars_mean_what_they_mean_to_pyyaml(value: str) -> None:
    for text in (f"k: {value}\n", f"k:\n  - {value}\n", f"{value}: 1\n"):
        agrees(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1 # trailing comment\n",
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "a: |\n  text\n",
        "a: >\n  text\n",
        "a: [1, 2]\n",
        "a: {b: 1}\n",
        "a:\n- 1\n- 2\n",
        "a:\n\tb: 1\n",
        "---\na: 1\n",
        "a: 'one\n  two'\n",
        'a: "tab\\tstop"\n',
        "a: plain\n  # comment inside\n  more\n",
        "? a\n: 1\n",
        "a:  two spaces\n",
        "a: 1\r\nb: 2\r\n",
        "a: 1 \n",
        "\ufeffa: 1\n",
        "<<: {a: 1}\n",
        "- a\n",  # a top-level list is fine, but shows the document form is checked below
    ],
)
def test_what_it_declines_is_left_to_pyyaml(text: str) -> None:
    if text == "- a\n":
        assert agrees(text)
        return
    with pytest.raises(quickyaml.Unsupported):
        quick(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\n b: 2\n",
        "a:\n  b: 1\n c: 2\n",
        "a: x\n  - y\n",
        "- a\nb: 1\n",
        "a: 'unclosed\n",
        "a: b: c\n",
        "a:\n  - 1\n    - 2\n",
        "a: 1\nb\n",
        "  a: 1\n",
        "",
        "# only a comment\n",
    ],
)
def test_broken_yaml_is_declined_not_guessed(text: str) -> None:
    with pytest.raises(quickyaml.Unsupported):
        quick(text)


_text = st.text(
    alphabet=st.sampled_from(list("ab z:#-'\"\\,[]{}!&*|>%@`?~.0123456789eEx_+ü\t")), max_size=12
) | st.sampled_from(SCALARS)
_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _text
    | st.builds(lambda n: " ".join(["word"] * n), st.integers(10, 40))
)
_data = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_text | st.integers(-5, 5) | st.booleans(), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_text, _data, min_size=1, max_size=4))
def test_whatever_the_dumper_writes_reads_back_exactly_or_is_declined(data: Any) -> None:
    agrees(dump(data))
