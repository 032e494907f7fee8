"""Property tests: long random APDU sequences (well-formed commands with random
parameters, mixed with raw random bytes, resets and power cuts) never make the
card raise, never produce 6F00 (an internal fault), and never corrupt memory: the
full EEPROM consistency check passes after every single command."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardperso import tlv
from cardperso.card import CardOS, new_card
from cardperso.card.check import check_card
from cardperso.errors import ReaderError
from cardperso.readers import VirtualReader, cos

EXAMPLES = int(os.environ.get("CARDPERSO_PROPERTY_EXAMPLES", "40"))

FIDS = [0x3F00, 0x5000, 0x5001, 0x5002, 0x5003, 0x6000, 0x6001, 0x0000, 0xFFFF, 0x1234]
byte = st.integers(0, 255)
fid = st.sampled_from(FIDS)
small = st.binary(max_size=40)


@st.composite
def fcp(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["df", "t", "l", "junk"]))
    sec = draw(
        st.none()
        | st.binary(min_size=1, max_size=8)
        | st.builds(cos.ac, byte, byte, byte, byte, byte, byte, byte)
    )
    f = draw(fid)
    if kind == "df":
        return cos.fcp_df(f, draw(st.binary(max_size=18)), sec)
    if kind == "t":
        return cos.fcp_transparent(f, draw(st.integers(1, 3000)), draw(st.integers(0, 31)), sec)
    if kind == "l":
        return cos.fcp_linear(
            f,
            draw(st.integers(1, 255)),
            draw(st.integers(1, 254)),
            draw(st.integers(0, 31)),
            sec,
        )
    return tlv.encode(0x62, draw(st.binary(max_size=30)))


def pin_block() -> st.SearchStrategy[bytes]:
    good = st.from_regex(r"\A[0-9]{4,12}\Z", fullmatch=True).map(cos.format2)
    return st.one_of(good, st.binary(min_size=8, max_size=8), st.just(cos.format2("1234")))


@st.composite
def command(draw: st.DrawFn) -> bytes:
    c = draw(st.integers(0, 24))
    if c == 0:
        return draw(st.binary(max_size=300))  # raw noise
    if c == 1:
        return cos.select_fid(draw(fid), draw(st.sampled_from([0x00, 0x04, 0x0C, 0x02, 0x10])))
    if c == 2:
        return cos.select_path(*draw(st.lists(fid, min_size=1, max_size=3)))
    if c == 3:
        sfi = draw(st.integers(0, 3))
        return cos.read_binary(
            draw(st.integers(0, 255 if sfi else 600)), draw(st.integers(1, 256)), sfi
        )
    if c == 4:
        sfi = draw(st.integers(0, 3))
        return cos.update_binary(
            draw(st.binary(min_size=1, max_size=255)),
            draw(st.integers(0, 255 if sfi else 600)),
            sfi,
        )
    if c == 5:
        return cos.read_record(draw(st.integers(0, 6)), draw(st.integers(0, 3)))
    if c == 6:
        return cos.update_record(draw(st.integers(1, 6)), draw(small), draw(st.integers(0, 3)))
    if c == 7:
        return cos.append_record(draw(small), draw(st.integers(0, 3)))
    if c == 8:
        return cos.create_file(draw(fcp()))
    if c == 9:
        return cos.delete_file(draw(st.none() | fid))
    if c == 10:
        op = draw(
            st.sampled_from([cos.activate, cos.deactivate, cos.terminate_ef, cos.terminate_df])
        )
        return op(draw(st.none() | fid))
    if c == 11:
        return cos.verify(draw(st.integers(0, 3)), draw(pin_block() | st.just(b"")))
    if c == 12:
        return cos.change_reference_data(
            draw(st.integers(1, 3)), draw(pin_block()), draw(pin_block())
        )
    if c == 13:
        return cos.reset_retry_counter(
            draw(st.integers(1, 3)), draw(pin_block()), draw(pin_block() | st.just(b""))
        )
    if c == 14:
        return cos.get_challenge(draw(st.sampled_from([8, 16, 4, 40])))
    if c == 15:
        return cos.external_authenticate(
            draw(st.integers(1, 3)), draw(st.binary(min_size=8, max_size=16))
        )
    if c == 16:
        return cos.internal_authenticate(
            draw(st.integers(1, 3)), draw(st.binary(min_size=1, max_size=48))
        )
    if c == 17:
        return cos.put_key(
            draw(st.integers(1, 4)),
            draw(st.sampled_from([1, 2, 3, 5, 9])),
            draw(byte),
            draw(st.binary(min_size=8, max_size=32)),
        )
    if c == 18:
        return cos.put_pin(
            draw(st.integers(1, 4)),
            draw(pin_block()),
            draw(st.integers(0, 16)),
            draw(st.integers(0, 4)),
            draw(st.booleans()),
            draw(st.booleans()),
        )
    if c == 19:
        return cos.set_lifecycle(draw(st.sampled_from([1, 7, 0x0F, 0x7F, 0xFF, 3])))
    if c == 20:
        return cos.get_data(draw(st.sampled_from([0xDF01, 0xDF02, 0xDF04, 0x9F7F, 0x1234])))
    if c == 21:  # the bytes are filled in at run time from the card's own EEPROM
        return (
            b"WM"
            + draw(st.integers(0, 0x8100)).to_bytes(2, "big")
            + bytes([draw(st.integers(1, 64))])
        )
    if c == 22:
        return draw(
            st.sampled_from(
                [
                    cos.depersonalize(),
                    cos.read_memory(0x100),
                    cos.checksum_memory(0, 64),
                    cos.generate_key_pair(3),
                ]
            )
        )
    if c == 23:
        return cos.general_authenticate_1(draw(st.integers(1, 3)), draw(st.binary(max_size=20)))
    # SM-class command with random data objects
    return (
        bytes([0x0C, draw(byte), draw(byte), draw(byte)])
        + bytes([20])
        + draw(st.binary(min_size=20, max_size=20))
    )


def fresh() -> tuple[CardOS, VirtualReader]:
    card = new_card(bytes.fromhex("0102030405060708"), seed=1)
    reader = VirtualReader(card)
    reader.reset()
    for apdu in [
        cos.create_file(cos.fcp_df(0x3F00)),
        cos.create_file(cos.fcp_df(0x5000, b"APP1")),
        cos.create_file(cos.fcp_transparent(0x5001, 300, sfi=1)),
        cos.create_file(cos.fcp_linear(0x5002, 20, 4, sfi=2)),
        cos.select_path(0x5000),
        cos.put_key(1, cos.ALG_AES128, 0x0F, bytes(16), tries=5),
        cos.put_pin(1, cos.format2("1234"), tries=3, puk_ref=2),
        cos.put_pin(2, cos.format2("12345678"), tries=5, is_puk=True),
    ]:
        assert reader.transmit(apdu)[-2:] == b"\x90\x00"
    return card, reader


action = st.one_of(
    command().map(lambda a: ("apdu", a)),
    st.just(("reset", b"")),
    st.integers(0, 12).map(lambda k: ("cut", k.to_bytes(1, "big"))),
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(action, min_size=20, max_size=120), st.sampled_from([0, 1]))
def test_random_sequences_never_crash_or_corrupt(actions: list[tuple[str, bytes]], t: int) -> None:
    card, reader = fresh()
    reader.protocol = t
    reader.reset()
    armed = False
    for kind, payload in actions:
        if kind == "reset":
            reader.reset()
        elif kind == "cut":
            card.eeprom.arm_power_loss(payload[0])
            armed = True
            continue
        else:
            try:
                resp = reader.transmit(payload)
            except ReaderError:
                assert armed, "the card went mute without a power cut"
                card.eeprom.arm_power_loss(None)
                armed = False
                reader.reset()
            else:
                assert len(resp) >= 2
                assert resp[-2:] != b"\x6f\x00", f"internal fault on {payload.hex()}"
        if armed and kind != "apdu":
            continue
        if card.powered:
            problems = check_card(card)
            assert problems == [], f"after {kind} {payload.hex()}: {problems}"


@settings(max_examples=EXAMPLES * 5, deadline=None)
@given(st.binary(max_size=600))
def test_any_byte_string_gets_a_status_word(raw: bytes) -> None:
    card = new_card(bytes(8), seed=3)
    reader = VirtualReader(card)
    reader.reset()
    resp = reader.transmit(raw)
    assert len(resp) >= 2 and resp[-2:] != b"\x6f\x00"


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.integers(0x80, 0x7FFF), st.binary(min_size=1, max_size=64), st.lists(command(), max_size=20)
)
def test_corrupt_image_write_is_answered_not_crashed(
    addr: int, junk: bytes, after: list[bytes]
) -> None:
    """Garbage written by WRITE MEMORY (a torn or wrong image) may damage the
    structures; the card then answers 6581 where it must, and never faults."""
    _card, reader = fresh()
    reader.transmit(cos.write_memory(addr, junk))
    for apdu in after:
        if apdu[:2] == b"WM":
            continue
        try:
            resp = reader.transmit(apdu)
        except ReaderError:
            raise AssertionError("mute without a power cut") from None
        assert len(resp) >= 2 and resp[-2:] != b"\x6f\x00", apdu.hex()
    reader.reset()
    resp = reader.transmit(cos.get_data(0xDF01))
    assert resp[-2:] == b"\x90\x00" and resp[3:11] == bytes.fromhex("0102030405060708")
