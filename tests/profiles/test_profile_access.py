"""Symbolic access conditions -> this card OS's compact 8C bytes, and the card obeys them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cardperso.profiles import load_builtin
from cardperso.profiles.schema import Access, FileNode, condition_byte
from cardperso.readers import cos
from cardperso.readers.virtual import virtual_reader

SC_ALL = 0x80  # 7816-4 Table 20 b8: all conditions (card/access.py SC_ALL)


@pytest.mark.parametrize(
    "text,byte",
    [
        ("always", cos.ALWAYS),
        ("never", cos.NEVER),
        ("pin:1", cos.pin_sc(1)),
        ("pin:15", cos.pin_sc(15)),
        ("key:1", cos.key_sc(1)),
        ("key:3", cos.key_sc(3)),
        ("sm", cos.SM_SC),
        ("sm+key:1", SC_ALL | cos.SM_SC | cos.key_sc(1)),
        ("sm|key:1", cos.SM_SC | cos.key_sc(1)),
        ("pin:2|key:2", cos.pin_sc(2) | cos.key_sc(2)),
        ("pin:2+key:2", SC_ALL | cos.pin_sc(2) | cos.key_sc(2)),
        (" SM + KEY:4 ", 0xE4),
    ],
)
def test_condition_bytes(text: str, byte: int) -> None:
    assert condition_byte(text) == byte


@pytest.mark.parametrize(
    "text,reason",
    [
        ("sometimes", "bad condition term 'sometimes'"),
        ("pin:0", "pin reference must be 1 to 15"),
        ("key:16", "key reference must be 1 to 15"),
        ("pin:1+key:2", "PIN and key in one condition must share one reference number"),
        ("sm+pin:1|key:1", "join terms with '+' (all) or '|' (any), not both"),
        ("pin:1+pin:1", "'pin' appears twice in one condition"),
        ("sm+pin:15+key:15", "this combination encodes as FF, which means 'never'"),
    ],
)
def test_bad_conditions(text: str, reason: str) -> None:
    with pytest.raises(ValidationError) as err:
        Access(read=text)
    assert reason in str(err.value)


def test_compact_matches_cos_ac_for_an_ef() -> None:
    a = Access(read="always", update="sm+key:1", append="pin:1|key:1", delete="key:2")
    assert a.compact(is_df=False) == cos.ac(
        read=cos.ALWAYS,
        update=SC_ALL | cos.SM_SC | cos.key_sc(1),
        append=cos.pin_sc(1) | cos.key_sc(1),
        deactivate=cos.NEVER,
        activate=cos.NEVER,
        terminate=cos.NEVER,
        delete=cos.key_sc(2),
    )


def test_compact_matches_cos_ac_for_a_df() -> None:
    a = Access(create_ef="key:2", create_df="key:2", delete_child="never")
    assert a.compact(is_df=True) == cos.ac(
        read=cos.NEVER,
        update=cos.key_sc(2),
        append=cos.key_sc(2),
        deactivate=cos.NEVER,
        activate=cos.NEVER,
        terminate=cos.NEVER,
        delete=cos.NEVER,
    )


def test_left_out_operations_are_never() -> None:
    assert Access().compact(is_df=False) == bytes([0x7F]) + bytes([0xFF] * 7)


@pytest.mark.parametrize("name", ["debit", "sim", "employee"])
def test_builtin_fcps_match_the_cos_builders(name: str) -> None:
    for f in load_builtin(name).files:
        sec = f.access.compact(f.is_df)
        if f.is_df:
            want = cos.fcp_df(f.fid_value, bytes.fromhex(f.aid or ""), sec=sec)
        elif f.type == "transparent":
            want = cos.fcp_transparent(f.fid_value, f.size or 0, f.sfi or 0, sec=sec)
        else:
            want = cos.fcp_linear(
                f.fid_value, f.record_length or 0, f.records or 0, f.sfi or 0, sec=sec
            )
        assert f.fcp() == want


def _send(reader: object, apdu: bytes) -> int:
    r = reader.transmit(apdu)  # type: ignore[attr-defined]
    return int.from_bytes(r[-2:], "big")


def test_simulated_card_enforces_the_debit_access_conditions() -> None:
    """Create the debit tree from its profile on a simulated card; check the OS obeys it."""
    p = load_builtin("debit")
    reader = virtual_reader(7, serial=bytes.fromhex("C0DE0000000000AA"))
    reader.reset()
    for f in p.files:
        parent = p.file_path(f.parent) if f.parent else ()
        if parent:
            sel = cos.select_mf() if len(parent) == 1 else cos.select_path(*parent[1:])
            assert _send(reader, sel) == 0x9000
        assert _send(reader, cos.create_file(f.fcp())) == 0x9000, f.name
    kd = bytes(range(16))
    assert (
        _send(reader, cos.put_key(1, cos.ALG_AES128, cos.USE_EXT_AUTH | cos.USE_SM, kd)) == 0x9000
    )
    assert _send(reader, cos.put_pin(1, cos.format2("1234"), tries=3)) == 0x9000
    assert _send(reader, cos.set_lifecycle(cos.INITIALIZED)) == 0x9000

    assert _send(reader, cos.select_path(0x5000, 0x5001)) == 0x9000
    assert _send(reader, cos.read_binary(0, 4)) == 0x9000  # read: always
    assert _send(reader, cos.update_binary(b"\x70\x00")) == 0x6982  # sm+key:1 not met

    from cardperso.crypto.ciphers import AES

    rc = reader.transmit(cos.get_challenge(16))[:-2]
    assert _send(reader, cos.external_authenticate(1, AES(kd).encrypt_ecb(rc))) == 0x9000
    # key 1 authenticated but no secure messaging: b8 "all conditions" still refuses
    assert _send(reader, cos.update_binary(b"\x70\x00")) == 0x6982

    assert _send(reader, cos.select_path(0x5000, 0x5003)) == 0x9000
    assert _send(reader, cos.read_record(1)) == 0x6982  # pin:1 not verified
    assert _send(reader, cos.verify(1, cos.format2("1234"))) == 0x9000
    assert _send(reader, cos.read_record(1)) != 0x6982


def test_file_node_fcp_for_linear_file() -> None:
    node = FileNode(
        name="EF.ADN",
        fid="6F3A",
        type="linear_fixed",
        parent="DF.TELECOM",
        record_length=30,
        records=10,
        access=Access(read="pin:1", update="pin:1"),
    )
    assert node.fcp() == cos.fcp_linear(
        0x6F3A,
        30,
        10,
        sec=cos.ac(
            read=0x11,
            update=0x11,
            append=0xFF,
            deactivate=0xFF,
            activate=0xFF,
            terminate=0xFF,
            delete=0xFF,
        ),
    )
