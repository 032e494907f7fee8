"""The shared vocabulary: APDU cases (ISO/IEC 7816-4 §5.1) and BER-TLV (§6.3)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardperso import tlv
from cardperso.apdu import ApduFormatError, CommandAPDU, ResponseAPDU, parse_command, sw_text

CASES = [
    ("00A40000", CommandAPDU(0, 0xA4, 0, 0)),  # case 1
    ("00B0000000", CommandAPDU(0, 0xB0, 0, 0, b"", 256)),  # case 2S, Le 00 = 256
    ("00B0000010", CommandAPDU(0, 0xB0, 0, 0, b"", 16)),
    ("00D6000002AABB", CommandAPDU(0, 0xD6, 0, 0, b"\xaa\xbb")),  # case 3S
    ("00880000020102FF", CommandAPDU(0, 0x88, 0, 0, b"\x01\x02", 255)),  # case 4S
    ("00B00000000000", CommandAPDU(0, 0xB0, 0, 0, b"", 65536, True)),  # case 2E
    ("00B00000000100", CommandAPDU(0, 0xB0, 0, 0, b"", 256, True)),
    ("00D60000000002AABB", CommandAPDU(0, 0xD6, 0, 0, b"\xaa\xbb", 0, True)),  # case 3E
    ("00880000000002AABB0000", CommandAPDU(0, 0x88, 0, 0, b"\xaa\xbb", 65536, True)),  # 4E
]


@pytest.mark.parametrize(("hexstr", "cmd"), CASES)
def test_every_apdu_case_parses(hexstr: str, cmd: CommandAPDU) -> None:
    assert parse_command(bytes.fromhex(hexstr)) == cmd


@pytest.mark.parametrize(
    "hexstr",
    [
        "",
        "00",
        "00A400",
        "00D6000003AABB",
        "00D6000001AABBCCDD",
        "00B000000000",
        "00D6000000000000",
        "00D60000000003AABB",
    ],
)
def test_malformed_apdus_are_refused(hexstr: str) -> None:
    with pytest.raises(ApduFormatError):
        parse_command(bytes.fromhex(hexstr))


@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=600),
    st.one_of(st.just(0), st.integers(1, 65536)),
)
def test_encode_parse_round_trip(ins: int, p1: int, data: bytes, le: int) -> None:
    cmd = CommandAPDU(0x00, ins, p1, 0x00, data, le)
    back = parse_command(cmd.to_bytes())
    assert (back.data, back.le, back.ins, back.p1) == (data, le, ins, p1)


@given(st.binary(max_size=300))
def test_parser_raises_only_its_own_error(raw: bytes) -> None:
    with contextlib.suppress(ApduFormatError):
        parse_command(raw)


def test_reprs_hide_data() -> None:
    secret = bytes.fromhex("DEADBEEFCAFEBABE")
    assert "DEADBEEF" not in repr(CommandAPDU(0, 0x20, 0, 0x81, secret)).upper()
    assert "DEADBEEF" not in repr(ResponseAPDU(secret, 0x9000)).upper()


def test_status_word_text() -> None:
    assert sw_text(0x63C2) == "verification failed, 2 tries left"
    assert sw_text(0x6110) == "16 bytes still available"
    assert sw_text(0x6A82) == "file not found"


def test_tlv_known_encodings() -> None:
    # 7816-4 length forms: short, 81 xx, 82 xx xx; multi-byte tags such as 9F7F and 7F49
    assert tlv.encode(0x80, b"\x01") == bytes.fromhex("800101")
    assert tlv.encode(0x84, bytes(200))[:3] == bytes.fromhex("8481C8")
    assert tlv.encode(0x53, bytes(300))[:4] == bytes.fromhex("5382012C")
    assert tlv.decode(bytes.fromhex("9F7F02ABCD7F4903860101")) == [
        (0x9F7F, b"\xab\xcd"),
        (0x7F49, bytes.fromhex("860101")),
    ]
    assert tlv.find(bytes.fromhex("0000800101FF8A0105"), 0x8A) == b"\x05"  # padding skipped


@pytest.mark.parametrize(
    "hexstr", ["80", "8002AA", "9F", "8081", "808301", "80820001", "1F8080808001"]
)
def test_tlv_malformed(hexstr: str) -> None:
    with pytest.raises(tlv.TlvError):
        tlv.decode(bytes.fromhex(hexstr))


def test_tlv_repeated_tag_in_dict() -> None:
    with pytest.raises(tlv.TlvError):
        tlv.to_dict(bytes.fromhex("800101800102"))


@given(
    st.lists(
        st.tuples(st.sampled_from([0x80, 0x9F7F, 0x5F20, 0xDF01]), st.binary(max_size=400)),
        max_size=5,
    )
)
def test_tlv_round_trip(items: list[tuple[int, bytes]]) -> None:
    assert tlv.decode(b"".join(tlv.encode(t, v) for t, v in items)) == items


@given(st.binary(max_size=200))
def test_tlv_parser_raises_only_its_own_error(raw: bytes) -> None:
    with contextlib.suppress(tlv.TlvError):
        tlv.decode(raw)
