"""Record -> chip file bytes: codings, padding, TLV, and golden cards for the built-ins.

Golden files live in ``golden/card_<profile>.json``; after a deliberate change run
``CARDPERSO_UPDATE_GOLDEN=1 pytest tests/dataprep`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from dataprep_samples import DEBIT, EMPLOYEE, SIM

from cardperso.dataprep import magstripe as M
from cardperso.dataprep.cardbody import card_body_layout
from cardperso.dataprep.filedata import (
    encode_bcd,
    encode_cn,
    encode_element,
    encode_imsi,
    encode_tbcd,
    file_writes,
)
from cardperso.errors import InputError
from cardperso.profiles import Profile, load_builtin
from cardperso.profiles.schema import Element

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("CARDPERSO_UPDATE_GOLDEN") == "1"


def test_numeric_codings() -> None:
    assert encode_bcd("123").hex() == "0123"
    assert encode_bcd("2812").hex() == "2812"
    assert encode_cn("123").hex() == "123f"
    assert encode_cn("4761739001010010").hex() == "4761739001010010"
    assert encode_tbcd("123").hex() == "21f3"
    with pytest.raises(ValueError, match="bcd coding needs decimal digits"):
        encode_bcd("12a")


@pytest.mark.parametrize(
    "imsi,ef",
    [
        # osmocom pySim, pySim/ts_51_011.py EF_IMSI._test_de_encode (TS 51.011 §10.3.2)
        ("228062800000208", "082982608200002080"),
        ("262011106487504", "082926101160845740"),
        # even number of digits: parity nibble 1, last nibble F
        ("26201110648750", "0821261011608457f0"),
    ],
)
def test_imsi_coding(imsi: str, ef: str) -> None:
    assert encode_imsi(imsi).hex() == ef


def test_iccid_coding() -> None:
    # osmocom pySim, pySim/ts_51_011.py EF_ICCID._test_de_encode (TS 51.011 §10.1.1)
    el = Element(encoding="tbcd", field="iccid", length=10)
    p = load_builtin("sim")
    assert encode_element(el, p, {"iccid": "8988211000000430010"}).hex() == "988812010000400310f0"


def _enc(p: Profile, values: dict[str, str], **kw: Any) -> str:
    return encode_element(Element(**kw), p, values).hex().upper()


def test_padding_rules() -> None:
    p = load_builtin("debit")
    v = {"pan": "4761739001010010", "city": "Berlin"}
    assert _enc(p, v, encoding="ascii", field="city", length=8) == "4265726C696E2020"
    assert _enc(p, v, encoding="ascii", field="city", length=8, pad="left") == "20204265726C696E"
    assert _enc(p, v, encoding="ascii", field="city", length=8, pad_byte="FF") == "4265726C696EFFFF"
    assert _enc(p, v, encoding="bcd", literal="2812", length=4) == "00002812"
    assert _enc(p, v, encoding="cn", field="pan", length=10) == "4761739001010010FFFF"
    assert _enc(p, v, encoding="binary", literal="0102", length=4) == "01020000"
    assert _enc(p, v, encoding="ascii", literal="AB", tag="50") == "50024142"
    with pytest.raises(ValueError, match="value is 6 bytes, longer than the 5 allowed"):
        _enc(p, v, encoding="ascii", field="city", length=5)


def test_tlv_template() -> None:
    p = load_builtin("debit")
    el = Element(
        encoding="tlv",
        tag="70",
        children=[
            Element(tag="5A", encoding="cn", field="pan"),
            Element(tag="5F34", encoding="bcd", literal="00", length=1),
        ],
    )
    got = encode_element(el, p, {"pan": "4761739001010010"}).hex().upper()
    assert got == "700E" + "5A084761739001010010" + "5F340100"


def test_missing_derived_value_names_the_file() -> None:
    p = load_builtin("debit")
    with pytest.raises(InputError) as err:
        file_writes(p, dict(DEBIT[0]))
    assert str(err.value) == "EF.T2: derived value 'track2_equivalent' has not been computed"


def test_bad_value_names_the_field() -> None:
    p = load_builtin("debit")
    rec = dict(DEBIT[0], expiry="28")
    with pytest.raises(InputError) as err:
        file_writes(p, rec, {"track2_equivalent": b"\x00"})
    assert str(err.value) == "field 'expiry': EF.CH: filter yymmdd needs a YYMM value"


# -- golden cards ------------------------------------------------------------------

COMPUTED = {"pvv:PIN": "4096", "cvv": "123", "icvv": "987"}


def _card(profile: str, record: dict[str, str]) -> dict[str, Any]:
    p = load_builtin(profile)
    derived: dict[str, str | bytes] = {"chip_serial": bytes.fromhex("C0DE000000000001")}
    out: dict[str, Any] = {"profile": p.id, "version": p.version}
    if p.magstripe is not None:
        ms = p.magstripe
        tracks = M.tracks_from_profile(ms, record, COMPUTED)
        out["tracks"] = {str(n): {"data": t, "lrc": M.lrc(t)} for n, t in tracks.items()}
        out["track_bits"] = {str(n): M.encode_bits(t) for n, t in tracks.items()}
        dd = M.discretionary_data(ms.chip_discretionary or [], record, COMPUTED, chip=True)
        derived["track2_equivalent"] = M.track2_equivalent_data(
            record[ms.pan_field], record[ms.expiry_field], ms.service_code, dd
        )
    out["files"] = [
        {
            "file": w.file,
            "path": "/".join(f"{x:04X}" for x in w.path),
            "record": w.record,
            "offset": w.offset,
            "data": w.data.hex().upper(),
        }
        for w in file_writes(p, record, derived)
    ]
    body = card_body_layout(p.card_body, record)
    out["card_body"] = {
        "emboss": [[e.area.value, e.row, e.text] for e in body.emboss],
        "laser": [[t.side, t.x_mm, t.y_mm, t.text] for t in body.laser],
        "photo": None if body.photo is None else [body.photo.width_px, body.photo.height_px],
    }
    out["fcp"] = {f.name: f.fcp().hex().upper() for f in p.files}
    return out


@pytest.mark.parametrize(
    "profile,record", [("debit", DEBIT[1]), ("sim", SIM[0]), ("employee", EMPLOYEE[0])]
)
def test_golden_card(profile: str, record: dict[str, str]) -> None:
    got = _card(profile, record)
    path = GOLDEN / f"card_{profile}.json"
    text = json.dumps(got, indent=1, ensure_ascii=False) + "\n"
    if UPDATE or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_golden_debit_card_reads_right() -> None:
    """Spot-check the golden debit card against the standards by hand."""
    card = json.loads((GOLDEN / "card_debit.json").read_text(encoding="utf-8"))
    assert card["tracks"]["2"]["data"] == ";4761739001010028=290120114096123?"
    assert card["tracks"]["1"]["data"] == "%B4761739001010028^OBRIEN/SIOBHAN^290120114096123?"
    t2 = next(f for f in card["files"] if f["file"] == "EF.T2")
    assert t2["data"] == "5710" + "4761739001010028D290120114096987"  # tag 57, iCVV 987
    ch = next(f for f in card["files"] if f["file"] == "EF.CH")["data"]
    assert ch.startswith("70") and "5A084761739001010028" in ch and "5F2403290131" in ch
    assert card["card_body"]["emboss"] == [
        ["number", 1, "4761 7390 0101 0028"],
        ["name", 1, "VALID THRU 01/29"],
        ["name", 2, "SIOBHAN O'BRIEN"],
    ]


def test_golden_sim_card_reads_right() -> None:
    card = json.loads((GOLDEN / "card_sim.json").read_text(encoding="utf-8"))
    files = {f["file"]: f for f in card["files"]}
    assert files["EF.ICCID"]["path"] == "3F00/2FE2"
    assert files["EF.ICCID"]["data"] == "989400010000000010F7"
    assert files["EF.IMSI"]["path"] == "3F00/7F20/6F07"
    assert files["EF.IMSI"]["data"] == "080910100000000010"
    assert files["EF.SPN"]["data"] == "01" + b"CARDPERSO MOBILE".hex().upper()
