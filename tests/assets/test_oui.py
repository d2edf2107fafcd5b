"""MAC → OUI organisation, from the registry files read on demand."""

from __future__ import annotations

from pathlib import Path

import pytest

from otsentry.assets.oui import (
    WIRESHARK_MANUF,
    Format,
    OuiRegistry,
    Source,
    default_sources,
    mac_digits,
)

IEEE_MAL = """OUI/MA-L                                                    Organization
company_id                                                  Organization
                                                            Address

00-1B-1B   (hex)\t\tSiemens AG,
001B1B     (base 16)\t\tSiemens AG,
\t\t\t\tI IA SC MF-K PE 3
\t\t\t\t76187 Karlsruhe   Baden Wuerttemberg
\t\t\t\tDE

00-50-C2   (hex)\t\tIEEE REGISTRATION AUTHORITY
0050C2     (base 16)\t\tIEEE REGISTRATION AUTHORITY
"""
IEEE_IAB = """OUI                                                         Organization
IAB Range                                                   Organization

00-50-C2                      (hex)                         Hirotech inc.
9CC000-9CCFFF                 (base 16)                     Hirotech inc.
                                                            Yokohama City  Kanagawa  222-0033
"""


@pytest.fixture()
def small(tmp_path: Path) -> OuiRegistry:
    (tmp_path / "oui.txt").write_text(IEEE_MAL)
    (tmp_path / "iab.txt").write_text(IEEE_IAB)
    return OuiRegistry(
        [
            Source(tmp_path / "iab.txt", Format.IEEE_IAB),
            Source(tmp_path / "oui.txt", Format.IEEE_MAL),
        ]
    )


def test_ieee_files_longest_block_wins(small: OuiRegistry) -> None:
    found = small.vendors(
        ["00-1b-1b-3f-30-06", "00:50:C2:9C:C1:23", "00-50-C2-11-11-11", "00-11-22-33-44-55"]
    )
    assert found == {
        "00-1b-1b-3f-30-06": "Siemens AG",  # the trailing comma of the registry is dropped
        "00:50:C2:9C:C1:23": "Hirotech inc.",  # a 36-bit IAB block inside 00-50-C2
        "00-50-C2-11-11-11": "IEEE REGISTRATION AUTHORITY",
        "00-11-22-33-44-55": None,
    }


def test_one_pass_per_batch_then_cached(small: OuiRegistry) -> None:
    small.vendors(["00-1B-1B-00-00-01", "00-1B-1B-00-00-02", "00-50-C2-9C-C0-01"])
    assert small.passes == 1
    assert small.vendor("00-1B-1B-FF-FF-FF") == "Siemens AG"
    assert small.passes == 1  # the prefix is known: no new pass
    # another 36-bit block of a prefix already seen still needs its own look-up
    assert small.vendor("00-50-C2-11-10-00") == "IEEE REGISTRATION AUTHORITY"
    assert small.passes == 2


@pytest.mark.parametrize(
    "mac",
    ["02-00-5E-10-00-01", "01-00-5E-00-00-01", "FF-FF-FF-FF-FF-FF", "00-00-00-00-00-00", "xx", ""],
)
def test_no_vendor_for_local_group_zero_or_junk(small: OuiRegistry, mac: str) -> None:
    assert mac_digits(mac) is None
    assert small.vendor(mac) is None


def test_bundled_registry_names_ics_vendors() -> None:
    registry = OuiRegistry()
    assert registry.sources, "netaddr's IEEE registry (a dependency) should be found"
    assert registry.sources[0].format is Format.IEEE_IAB
    assert registry.vendors(["00-1B-1B-3F-30-06", "00-80-F4-0C-30-05", "00-30-DE-4B-30-08"]) == {
        "00-1B-1B-3F-30-06": "Siemens AG",
        "00-80-F4-0C-30-05": "TELEMECANIQUE ELECTRIQUE",
        "00-30-DE-4B-30-08": "WAGO Kontakttechnik GmbH",
    }
    assert registry.passes == 1


def test_wireshark_manuf_adds_ma_m_blocks() -> None:
    if not WIRESHARK_MANUF.is_file():
        pytest.skip("Wireshark's manuf file is not installed")
    manuf = OuiRegistry([Source(WIRESHARK_MANUF, Format.WIRESHARK)])
    assert manuf.vendor("00-1B-1B-3F-30-06") == "Siemens AG"
    # 00:55:DA:00:00:00/28 is an MA-M block; the IEEE MA-L list only says the IEEE holds 00:55:DA
    ma_m = manuf.vendor("00-55-DA-00-00-01")
    assert ma_m is not None and ma_m != "IEEE Registration Authority"
    both = OuiRegistry(default_sources())
    assert both.vendor("00-55-DA-00-00-01") == ma_m  # the longer block beats the MA-L entry
    assert both.vendor("00-80-F4-0C-30-05") == "TELEMECANIQUE ELECTRIQUE"  # the IEEE's own text


def test_missing_file_is_no_vendor(tmp_path: Path) -> None:
    registry = OuiRegistry([Source(tmp_path / "absent.txt", Format.IEEE_MAL)])
    assert registry.vendor("00-1B-1B-3F-30-06") is None
