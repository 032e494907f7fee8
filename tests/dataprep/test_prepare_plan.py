"""The plan of a profile: initialization script, where each file is written, access
conditions, PUT PIN / PUT KEY data fields, and the profiles the card OS cannot serve."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from prep_kit import Keystore, lab_profile, make_keystore

from cardperso import tlv
from cardperso.dataprep.chipsteps import AccessState
from cardperso.dataprep.init_script import InitScript, build_init_script
from cardperso.dataprep.prepare import CardPreparer
from cardperso.dataprep.prepared import PreparedCard, StepKind
from cardperso.dataprep.secrets import diversifier, put_key_prefix, put_pin_prefix
from cardperso.errors import ConfigError
from cardperso.hsm import Hsm, HsmSession, Role
from cardperso.profiles.loader import load_builtin
from cardperso.profiles.schema import KeyAlgorithm, KeyUsage

TODAY = date(2026, 3, 15)


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    return make_keystore(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def dp(keystore: Keystore) -> Iterator[HsmSession]:
    hsm: Hsm = keystore.open()
    yield hsm.session(Role.DATAPREP, "dp")
    hsm.close()


def notes(steps: tuple[object, ...]) -> list[str]:
    return [s.note for s in steps]  # type: ignore[attr-defined]


def test_the_sim_initialization_script() -> None:
    script = build_init_script(load_builtin("sim"))
    assert notes(script.structure)[:6] == [
        "CREATE FILE MF",
        "SELECT MF",
        "CREATE FILE EF.ICCID",
        "SELECT MF",
        "CREATE FILE DF.TELECOM",
        "SELECT DF.TELECOM",
    ]
    constant = [n for n in notes(script.structure) if n.startswith("UPDATE")]
    assert constant == [
        "UPDATE BINARY EF.KC (9 bytes at 0)",
        "UPDATE BINARY EF.SPN (17 bytes at 0)",
        "UPDATE BINARY EF.AD (4 bytes at 0)",
        "UPDATE BINARY EF.LOCI (11 bytes at 0)",
    ]
    (kd,) = script.keys
    assert (kd.kind, kd.key_ref, kd.master_key, kd.diversifier) == (
        StepKind.LOAD_KD, 4, "KM.SIM.PERSO", "chip_serial"
    )  # fmt: skip
    assert kd.header.hex().upper() == "80D80004"
    assert tlv.to_dict(kd.data) == {0x80: b"\x03", 0x81: b"\x05", 0x82: b"\x01", 0x83: b"\x0a"}
    assert notes(script.finish) == ["SET LIFECYCLE INITIALIZED"]
    assert InitScript.from_json(script.to_json()) == script


def test_the_transport_pin_is_loaded_at_initialization() -> None:
    script = build_init_script(load_builtin("employee"))
    (put,) = [s for s in script.structure if s.note.startswith("PUT PIN")]
    assert put.note == "PUT PIN PIN (transport PIN, ref 1)"
    fields = tlv.to_dict(put.apdu[5:])
    assert fields[0x82] == b"\x01"  # the transport flag
    assert fields[0x81] == b"\x02"  # its PUK
    assert fields[0x8F].hex().upper() == "26000000FFFFFFFF"
    assert [s.note for s in script.keys] == [
        "PUT KEY KD_ADMIN (KD from KM.EMPLOYEE.ADMIN and the chip serial, ref 1)"
    ]


def test_put_pin_and_put_key_attributes() -> None:
    sim = load_builtin("sim")
    puk1 = sim.pin("PUK1")
    pin1 = sim.pin("PIN1")
    assert puk1 is not None and pin1 is not None
    assert tlv.to_dict(put_pin_prefix(sim, pin1)) == {
        0x80: b"\x03", 0x81: b"\x02", 0x82: b"\x00", 0x83: b"\x04", 0x84: b"\x08"
    }  # fmt: skip
    assert tlv.to_dict(put_pin_prefix(sim, puk1))[0x82] == b"\x02"  # is a PUK
    key = sim.key("KI")
    assert key is not None
    assert tlv.to_dict(put_key_prefix(key, "keys[0]")) == {
        0x80: b"\x03", 0x81: b"\x02", 0x82: b"\x01", 0x83: b"\x00"
    }  # fmt: skip
    strict = key.model_copy(update={"try_limit": 16})
    with pytest.raises(ConfigError, match="counts at most 15"):
        put_key_prefix(strict, "keys[0]")


def test_diversifiers() -> None:
    debit, sim = load_builtin("debit"), load_builtin("sim")
    mk_ac, adm = debit.key("MK_AC"), sim.key("ADM")
    assert mk_ac is not None and adm is not None
    assert diversifier(mk_ac, {"pan": "4761739001010010"}) == bytes.fromhex("6173900101001000")
    assert diversifier(adm, {"iccid": "8949001000000000017"}) == b"8949001000000000017"


def test_access_conditions() -> None:
    s = AccessState(sm=True, keys={1})
    assert s.allows("always") and not s.allows("never") and not s.allows(None)
    assert s.allows("sm+key:1") and s.allows("sm") and s.allows("key:1")
    assert not s.allows("sm+key:2") and not s.allows("pin:1") and s.allows("pin:1|key:1")
    assert AccessState(keys={1}).allows("sm+key:1") is False
    assert AccessState(open=True).allows(None)
    assert AccessState.key_named("sm+key:3") == 3 and AccessState.key_named("pin:1") is None


def test_where_each_file_is_written(dp: HsmSession) -> None:
    prep = CardPreparer(load_builtin("sim"), dp, batch_id="P")
    plans = {p.mapping.file: (p.phase, [k.name for k in p.auth], p.read_back) for p in prep._plans}
    assert plans == {
        "EF.ICCID": ("init", [], False),  # update never: before the card is INITIALIZED
        "EF.IMSI": ("perso", ["ADM"], False),  # key:3 after EXTERNAL AUTHENTICATE; read pin:1
    }
    debit = CardPreparer(load_builtin("debit"), dp, batch_id="P")
    assert {p.mapping.file: (p.phase, p.read_back) for p in debit._plans} == {
        "EF.CH": ("perso", True),
        "EF.T2": ("perso", True),
    }


def test_profiles_the_card_cannot_serve(dp: HsmSession) -> None:
    lab = lab_profile()
    keys = [k.model_copy(update={"diversifier": "pan"}) if k.name == "KD_PERSO" else k
            for k in lab.keys]  # fmt: skip
    with pytest.raises(ConfigError, match=r"loading\.key: KD-protected loading needs a key"):
        CardPreparer(lab.model_copy(update={"keys": keys}), dp, batch_id="P")
    keys = [k.model_copy(update={"algorithm": KeyAlgorithm.AES256}) if k.name == "KD_PERSO" else k
            for k in lab.keys]  # fmt: skip
    with pytest.raises(ConfigError, match=r"keys\[0\].algorithm: master key 'KM.LAB.PERSO'"):
        CardPreparer(lab.model_copy(update={"keys": keys}), dp, batch_id="P")
    employee = load_builtin("employee")
    no_sm = [KeyUsage.EXT_AUTH, KeyUsage.ADMIN]
    keys = [k.model_copy(update={"usage": no_sm}) if k.name == "KD_ADMIN" else k
            for k in employee.keys]  # fmt: skip
    with pytest.raises(ConfigError, match="ECDH-protected loading is not available"):
        CardPreparer(employee.model_copy(update={"keys": keys}), dp, batch_id="P")


def test_a_record_the_hsm_refuses_is_a_problem_not_a_crash(dp: HsmSession) -> None:
    from test_prepare_e2e import lab_record

    good = lab_record("1234", bytes(16), 1)
    bad = dict(lab_record("1234", bytes(16), 2), pin_block="11" * 8)
    prep = CardPreparer(lab_profile(), dp, batch_id="P", file="lab.jsonl")
    cards, problems = prep.prepare([(1, 2, good), (2, 3, bad)])
    assert [c.seq for c in cards] == [1]
    (p,) = problems
    assert (p.file, p.line, p.field) == ("lab.jsonl", 3, "pin_block")
    assert p.reason.startswith("the security module refused it: ")
    assert "request" not in p.reason
    cards, problems = prep.prepare([(2, 3, bad)])
    assert cards == [] and len(problems) == 1
    bad_hex = dict(good, pin_block="zz" * 8)
    cards, problems = prep.prepare([(3, 4, bad_hex)])
    assert cards == [] and problems[0].reason.startswith("cannot make its PINs and keys")


def test_prepared_json_round_trip(dp: HsmSession) -> None:
    from cardperso.dataprep.generator import generate_records

    p = load_builtin("employee")
    prep = CardPreparer(p, dp, batch_id="RT/1")
    cards, _ = prep.prepare([(1, 2, next(generate_records(p, 1, 4, TODAY)))])
    (card,) = cards
    assert card.record_id == "RT/1/0000001"
    again = PreparedCard.from_line(card.to_line())
    assert again == card and again.to_line() == card.to_line()
    assert card.card_body.photo is not None and card.card_body.photo["width_px"] > 0
    with pytest.raises(ValueError, match="not a prepared card"):
        PreparedCard.from_json({"format": "x"})
