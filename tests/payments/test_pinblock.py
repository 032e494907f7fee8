"""ISO 9564-1 PIN blocks: published vectors, psec as an oracle, properties, errors."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psec.pinblock
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardperso.crypto.ciphers import AES, DES, TDES, BlockCipher
from cardperso.crypto.rand import SeededRandom
from cardperso.payments import pinblock as pb
from cardperso.payments.pinblock import PinBlockError, PinBlockFormat

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "payments_pinblock.json").read_text()
)["vectors"]

H = bytes.fromhex
# psec (the test-only oracle) still calls cryptography's deprecated TripleDES alias.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
DIFF_N = 1000


class FixedRandom:
    """A random source that yields a given byte string, then fails."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def random_bytes(self, n: int) -> bytes:
        out = self._data[self._pos : self._pos + n]
        if len(out) != n:
            raise AssertionError("fixed random source exhausted")
        self._pos += n
        return out


# -- published vectors ---------------------------------------------------------------


def _run_vector(v: dict[str, Any]) -> None:
    fn = v["function"]
    rng = FixedRandom(H(v.get("random_source_bytes", "")))
    if fn == "encode_format0":
        assert pb.encode_format0(v["pin"], v["pan"]) == H(v["block"])
        assert pb.decode_format0(H(v["block"]), v["pan"]) == v["pin"]
    elif fn == "decode_format0":
        assert pb.decode_format0(H(v["block"]), v["pan"]) == v["pin"]
        assert pb.encode_format0(v["pin"], v["pan"]) == H(v["block"])
    elif fn == "encode_format1":
        assert pb.encode_format1(v["pin"], rng) == H(v["block"])
        assert pb.decode_format1(H(v["block"])) == v["pin"]
    elif fn == "decode_format1":
        assert pb.decode_format1(H(v["block"])) == v["pin"]
    elif fn == "encode_format3":
        assert pb.encode_format3(v["pin"], v["pan"], rng) == H(v["block"])
        assert pb.decode_format3(H(v["block"]), v["pan"]) == v["pin"]
    elif fn == "decode_format3":
        assert pb.decode_format3(H(v["block"]), v["pan"]) == v["pin"]
    elif fn == "encode_format4_pin_field":
        assert pb.encode_format4_pin_field(v["pin"], rng) == H(v["field"])
        assert pb.decode_format4_pin_field(H(v["field"])) == v["pin"]
    elif fn == "encode_format4_pan_field":
        assert pb.encode_format4_pan_field(v["pan"]) == H(v["field"])
    elif fn == "decode_format4_pin_field":
        assert pb.decode_format4_pin_field(H(v["field"])) == v["pin"]
    elif fn == "encrypt_format4":
        key = AES(H(v["key"]))
        assert pb.encrypt_format4(key, v["pin"], v["pan"], rng) == H(v["block"])
        assert pb.decrypt_format4(key, H(v["block"]), v["pan"]) == v["pin"]
    elif fn == "decrypt_format4":
        assert pb.decrypt_format4(AES(H(v["key"])), H(v["block"]), v["pan"]) == v["pin"]
    elif fn == "reject_decode_format0":
        with pytest.raises(PinBlockError):
            pb.decode_format0(H(v["block"]), v["pan"])
    elif fn == "reject_decode_format3":
        with pytest.raises(PinBlockError):
            pb.decode_format3(H(v["block"]), v["pan"])
    elif fn == "reject_decode_format4_pin_field":
        with pytest.raises(PinBlockError):
            pb.decode_format4_pin_field(H(v["field"]))
    elif fn == "reject_decrypt_format4":
        with pytest.raises(PinBlockError):
            pb.decrypt_format4(AES(H(v["key"])), H(v["block"]), v["pan"])
    else:  # pragma: no cover - a typo in the vector file
        raise AssertionError(f"unknown vector function {fn}")


@pytest.mark.parametrize("v", VECTORS, ids=[v["id"] for v in VECTORS])
def test_published_vector(v: dict[str, Any]) -> None:
    assert v["source"]
    _run_vector(v)


def test_vectors_cover_every_format() -> None:
    functions = {v["function"] for v in VECTORS}
    for needed in (
        "encode_format0",
        "decode_format0",
        "encode_format1",
        "decode_format1",
        "encode_format3",
        "decode_format3",
        "encrypt_format4",
        "decrypt_format4",
    ):
        assert needed in functions


def test_vector_encrypted_format0_round_trip_through_tdes() -> None:
    # The enciphered path is ECB over the clear block: check it against the primitive.
    key = TDES(H("0123456789ABCDEFFEDCBA9876543210"))
    clear = H("041274EDCBA9876F")
    block = pb.encrypt_pin_block(key, 0, "1234", "4012345678909")
    assert block == key.encrypt_ecb(clear)
    assert pb.decrypt_pin_block(key, PinBlockFormat.ISO_0, block, "4012345678909") == "1234"


# -- differential against psec ------------------------------------------------------------


def _rand_digits(r: random.Random, lo: int, hi: int) -> str:
    return "".join(r.choice("0123456789") for _ in range(r.randint(lo, hi)))


def test_diff_format0_against_psec() -> None:
    r = random.Random(9564_0)
    for _ in range(DIFF_N):
        pin, pan = _rand_digits(r, 4, 12), _rand_digits(r, 13, 19)
        ours = pb.encode_format0(pin, pan)
        assert ours == psec.pinblock.encode_pinblock_iso_0(pin, pan)
        assert psec.pinblock.decode_pinblock_iso_0(ours, pan) == pin
        assert pb.decode_format0(ours, pan) == pin


def _mutate(r: random.Random, block: bytes) -> bytes:
    nibbles = list(block.hex().upper())
    nibbles[r.randrange(len(nibbles))] = r.choice("0123456789ABCDEF")
    return bytes.fromhex("".join(nibbles))


def _accepts(fn: Callable[..., str], *args: object) -> str | None:
    try:
        return fn(*args)
    except ValueError:
        return None


def test_diff_format0_and_3_rejection_agrees_with_psec() -> None:
    # Mutated blocks: both decoders must accept the same ones and return the same PIN.
    r = random.Random(9564_03)
    rng = SeededRandom(b"diff-reject")
    seen_accept = seen_reject = 0
    for i in range(DIFF_N):
        pin, pan = _rand_digits(r, 4, 12), _rand_digits(r, 13, 19)
        if i % 2:
            block = _mutate(r, pb.encode_format0(pin, pan))
            ours = _accepts(pb.decode_format0, block, pan)
            theirs = _accepts(psec.pinblock.decode_pinblock_iso_0, block, pan)
        else:
            block = _mutate(r, pb.encode_format3(pin, pan, rng))
            ours = _accepts(pb.decode_format3, block, pan)
            theirs = _accepts(psec.pinblock.decode_pinblock_iso_3, block, pan)
        assert ours == theirs
        seen_accept += ours is not None
        seen_reject += ours is None
    assert seen_accept > 100 and seen_reject > 100


class _ScriptedChoice:
    """Stands in for psec's ``secrets`` module so its format 3 fill is ours."""

    def __init__(self) -> None:
        self.queue: list[str] = []

    def choice(self, seq: str) -> str:
        return self.queue.pop(0) if self.queue else seq[0]


def test_diff_format3_against_psec(monkeypatch: pytest.MonkeyPatch) -> None:
    scripted = _ScriptedChoice()
    monkeypatch.setattr(psec.pinblock, "_secrets", scripted)
    r = random.Random(9564_3)
    rng = SeededRandom(b"diff-format3")
    for _ in range(DIFF_N):
        pin, pan = _rand_digits(r, 4, 12), _rand_digits(r, 13, 19)
        ours = pb.encode_format3(pin, pan, rng)
        # Our clear fill nibbles: the clear PIN field is the block XOR the PAN field.
        clear = bytes(a ^ b for a, b in zip(ours, _pan_field(pan), strict=True))
        fill = clear.hex().upper()[2 + len(pin) :]
        scripted.queue = list(fill) + ["A"] * (10 - len(fill))
        assert psec.pinblock.encode_pinblock_iso_3(pin, pan) == ours
        assert psec.pinblock.decode_pinblock_iso_3(ours, pan) == pin
        assert pb.decode_format3(ours, pan) == pin


def _pan_field(pan: str) -> bytes:
    return H("0000" + pan[:-1][-12:].rjust(12, "0"))


def test_diff_format4_against_psec(monkeypatch: pytest.MonkeyPatch) -> None:
    r = random.Random(9564_4)
    for _ in range(DIFF_N):
        pin, pan = _rand_digits(r, 4, 12), _rand_digits(r, 1, 19)
        key_bytes = r.randbytes(r.choice((16, 24, 32)))
        pad = r.randbytes(8)
        monkeypatch.setattr(psec.pinblock, "_urandom", lambda n, pad=pad: pad[:n])
        ours = pb.encrypt_format4(AES(key_bytes), pin, pan, FixedRandom(pad))
        assert ours == psec.pinblock.encipher_pinblock_iso_4(key_bytes, pin, pan)
        assert psec.pinblock.decipher_pinblock_iso_4(key_bytes, ours, pan) == pin
        assert pb.decrypt_format4(AES(key_bytes), ours, pan) == pin


# -- properties -----------------------------------------------------------------------

pins = st.text(alphabet="0123456789", min_size=4, max_size=12)
pans = st.text(alphabet="0123456789", min_size=1, max_size=19)
seeds = st.binary(min_size=1, max_size=16)
tdes_keys = st.sampled_from((16, 24)).flatmap(lambda n: st.binary(min_size=n, max_size=n))
aes_keys = st.sampled_from((16, 24, 32)).flatmap(lambda n: st.binary(min_size=n, max_size=n))
FORMATS = (PinBlockFormat.ISO_0, PinBlockFormat.ISO_1, PinBlockFormat.ISO_3, PinBlockFormat.ISO_4)


def _key_for(fmt: PinBlockFormat, tdes: bytes, aes: bytes) -> BlockCipher:
    return AES(aes) if fmt is PinBlockFormat.ISO_4 else TDES(tdes)


@settings(max_examples=200, deadline=None)
@given(pin=pins, pan=pans, seed=seeds)
def test_clear_round_trips(pin: str, pan: str, seed: bytes) -> None:
    rng = SeededRandom(seed)
    assert pb.decode_format0(pb.encode_format0(pin, pan), pan) == pin
    assert pb.decode_format1(pb.encode_format1(pin, rng)) == pin
    assert pb.decode_format3(pb.encode_format3(pin, pan, rng), pan) == pin
    assert pb.decode_format4_pin_field(pb.encode_format4_pin_field(pin, rng)) == pin


@settings(max_examples=200, deadline=None)
@given(pin=pins, pan=pans, seed=seeds, tdes=tdes_keys, aes=aes_keys)
def test_encrypted_round_trips(pin: str, pan: str, seed: bytes, tdes: bytes, aes: bytes) -> None:
    rng = SeededRandom(seed)
    for fmt in FORMATS:
        key = _key_for(fmt, tdes, aes)
        block = pb.encrypt_pin_block(key, fmt, pin, pan, rng)
        assert len(block) == (16 if fmt is PinBlockFormat.ISO_4 else 8)
        assert pb.decrypt_pin_block(key, fmt, block, pan) == pin


@pytest.mark.parametrize("src", FORMATS, ids=lambda f: f"from{int(f)}")
@pytest.mark.parametrize("dst", FORMATS, ids=lambda f: f"to{int(f)}")
@settings(max_examples=40, deadline=None)
@given(pin=pins, pan=pans, seed=seeds, k1=tdes_keys, k2=tdes_keys, a1=aes_keys, a2=aes_keys)
def test_translate_preserves_pin(
    src: PinBlockFormat,
    dst: PinBlockFormat,
    pin: str,
    pan: str,
    seed: bytes,
    k1: bytes,
    k2: bytes,
    a1: bytes,
    a2: bytes,
) -> None:
    rng = SeededRandom(seed)
    src_key, dst_key = _key_for(src, k1, a1), _key_for(dst, k2, a2)
    block = pb.encrypt_pin_block(src_key, src, pin, pan, rng)
    out = pb.translate_pin_block(src_key, src, dst_key, dst, block, pan, rng)
    assert pb.decrypt_pin_block(dst_key, dst, out, pan) == pin


def test_seeded_blocks_are_repeatable() -> None:
    key = AES(H("00112233445566778899AABBCCDDEEFF"))
    a = [pb.encrypt_pin_block(key, 4, "1234", "4111111111111111", SeededRandom(7))]
    b = [pb.encrypt_pin_block(key, 4, "1234", "4111111111111111", SeededRandom(7))]
    assert a == b
    c = pb.encrypt_pin_block(key, 4, "1234", "4111111111111111", SeededRandom(8))
    assert c != a[0]


# Which nibble positions of a clear 64-bit PIN field each mutation touches, and the
# values that make the block malformed for that format.
def _corrupt_64(field: str, pin_len: int, fmt: int, where: str, pick: int) -> str | None:
    nib = list(field)
    if where == "control":
        nib[0] = "0123456789ABCDEF".replace(str(fmt), "")[pick % 15]
    elif where == "length":
        nib[1] = "0123DEF"[pick % 7]
    elif where == "pin":
        nib[2 + pick % pin_len] = "ABCDEF"[pick % 6]
    elif where == "fill":
        if pin_len == 14 or fmt == 1:
            return None  # format 1 accepts any fill
        bad = "0123456789ABCDE" if fmt == 0 else "0123456789"
        nib[2 + pin_len + pick % (14 - pin_len)] = bad[pick % len(bad)]
    return "".join(nib)


@settings(max_examples=300, deadline=None)
@given(
    pin=pins,
    pan=pans,
    seed=seeds,
    fmt=st.sampled_from((0, 1, 3)),
    where=st.sampled_from(("control", "length", "pin", "fill")),
    pick=st.integers(min_value=0, max_value=1000),
)
def test_malformed_64bit_blocks_are_rejected(
    pin: str, pan: str, seed: bytes, fmt: int, where: str, pick: int
) -> None:
    rng = SeededRandom(seed)
    clear_field = pb.encode_format1(pin, rng).hex().upper()  # 1, len, pin, fill
    fill = {0: "F" * (14 - len(pin)), 1: clear_field[2 + len(pin) :], 3: "ABCDEF"[pick % 6] * 14}
    field = f"{fmt}{len(pin):X}{pin}{fill[fmt][: 14 - len(pin)]}"
    bad = _corrupt_64(field, len(pin), fmt, where, pick)
    if bad is None:
        return
    pan_field = _pan_field(pan) if fmt in (0, 3) else bytes(8)
    block = bytes(a ^ b for a, b in zip(H(bad), pan_field, strict=True))
    decoders: dict[int, Callable[[], str]] = {
        0: lambda: pb.decode_format0(block, pan),
        1: lambda: pb.decode_format1(block),
        3: lambda: pb.decode_format3(block, pan),
    }
    with pytest.raises(PinBlockError) as err:
        decoders[fmt]()
    _assert_clean(err.value, pin, pan, block)
    # The well-formed original still decodes.
    good = bytes(a ^ b for a, b in zip(H(field), pan_field, strict=True))
    assert {0: pb.decode_format0, 3: pb.decode_format3}.get(fmt, lambda b, p: pin)(good, pan) == pin


@settings(max_examples=200, deadline=None)
@given(
    pin=pins,
    seed=seeds,
    where=st.sampled_from(("control", "length", "pin", "fill")),
    pick=st.integers(min_value=0, max_value=1000),
)
def test_malformed_format4_fields_are_rejected(
    pin: str, seed: bytes, where: str, pick: int
) -> None:
    field = list(pb.encode_format4_pin_field(pin, SeededRandom(seed)).hex().upper())
    if where == "control":
        field[0] = "0123567"[pick % 7]
    elif where == "length":
        field[1] = "0123DEF"[pick % 7]
    elif where == "pin":
        field[2 + pick % len(pin)] = "ABCDEF"[pick % 6]
    else:
        if len(pin) == 14:
            return
        field[2 + len(pin) + pick % (14 - len(pin))] = "0123456789BCDEF"[pick % 15]
    bad = H("".join(field))
    with pytest.raises(PinBlockError) as err:
        pb.decode_format4_pin_field(bad)
    _assert_clean(err.value, pin, None, bad)


@settings(max_examples=200, deadline=None)
@given(block=st.binary(min_size=8, max_size=8), pan=pans)
def test_any_decoded_format0_block_re_encodes_exactly(block: bytes, pan: str) -> None:
    # Decoding is the exact inverse of encoding: no malformed block slips through.
    try:
        pin = pb.decode_format0(block, pan)
    except PinBlockError:
        return
    assert pb.encode_format0(pin, pan) == block


@settings(max_examples=100, deadline=None)
@given(
    block=st.binary(min_size=8, max_size=8),
    pan=pans,
    tdes=tdes_keys,
    fmt=st.sampled_from((0, 1, 3)),
)
def test_random_enciphered_blocks_are_rejected_or_well_formed(
    block: bytes, pan: str, tdes: bytes, fmt: int
) -> None:
    key = TDES(tdes)
    try:
        pin = pb.decrypt_pin_block(key, fmt, block, pan)
    except PinBlockError as err:
        _assert_clean(err, None, pan, block)
        return
    assert pin.isdecimal() and 4 <= len(pin) <= 12


# -- errors ---------------------------------------------------------------------------------


def _assert_clean(err: BaseException, pin: str | None, pan: str | None, block: bytes) -> None:
    text = str(err) + repr(err.args)
    if pin:
        assert pin not in text
    if pan and len(pan) >= 4:
        assert pan not in text
    if block:
        assert block.hex() not in text.lower()
        assert repr(block) not in text


TDES_KEY = TDES(H("0123456789ABCDEFFEDCBA9876543210"))
AES_KEY = AES(H("00112233445566778899AABBCCDDEEFF"))
GOOD_PAN = "4111111111111111"
GOOD_F0 = pb.encode_format0("1234", GOOD_PAN)
RNG = SeededRandom(b"errors")
NOT_A_STR: Any = 1234
HEX_NOT_BYTES: Any = GOOD_F0.hex()

ERROR_CASES: list[tuple[str, Callable[[], object], str | None, str | None, bytes]] = [
    ("pin-too-short", lambda: pb.encode_format0("123", GOOD_PAN), "123", GOOD_PAN, b""),
    (
        "pin-too-long",
        lambda: pb.encode_format0("1234567890123", GOOD_PAN),
        "1234567890123",
        GOOD_PAN,
        b"",
    ),
    ("pin-not-digits", lambda: pb.encode_format1("12a4", RNG), "12a4", None, b""),
    ("pin-unicode-digits", lambda: pb.encode_format1("١٢٣٤", RNG), "١٢٣٤", None, b""),
    ("pin-not-str", lambda: pb.encode_format1(NOT_A_STR, RNG), "1234", None, b""),
    (
        "pan-not-digits",
        lambda: pb.encode_format0("9876", "4111-1111-1111"),
        "9876",
        "4111-1111-1111",
        b"",
    ),
    ("pan-too-long", lambda: pb.encode_format3("9876", "4" * 20, RNG), "9876", "4" * 20, b""),
    ("pan-empty", lambda: pb.encode_format4_pan_field(""), None, None, b""),
    ("pan-missing", lambda: pb.encrypt_pin_block(TDES_KEY, 0, "9876", None), "9876", None, b""),
    (
        "rng-missing",
        lambda: pb.encrypt_pin_block(TDES_KEY, 3, "9876", GOOD_PAN),
        "9876",
        GOOD_PAN,
        b"",
    ),
    ("block-short", lambda: pb.decode_format0(GOOD_F0[:7], GOOD_PAN), None, GOOD_PAN, GOOD_F0[:7]),
    ("block-long", lambda: pb.decode_format1(GOOD_F0 + b"\x00"), None, None, GOOD_F0 + b"\x00"),
    (
        "block-not-bytes",
        lambda: pb.decode_format0(HEX_NOT_BYTES, GOOD_PAN),
        None,
        GOOD_PAN,
        GOOD_F0,
    ),
    (
        "wrong-pan",
        lambda: pb.decode_format0(GOOD_F0, "5555555551234567"),
        "1234",
        GOOD_PAN,
        GOOD_F0,
    ),
    (
        "format-2",
        lambda: pb.encrypt_pin_block(TDES_KEY, 2, "9876", GOOD_PAN),
        "9876",
        GOOD_PAN,
        b"",
    ),
    (
        "format-4-tdes",
        lambda: pb.encrypt_format4(TDES_KEY, "9876", GOOD_PAN, RNG),
        "9876",
        GOOD_PAN,
        b"",
    ),
    (
        "format-0-aes",
        lambda: pb.encrypt_pin_block(AES_KEY, 0, "9876", GOOD_PAN),
        "9876",
        GOOD_PAN,
        b"",
    ),
    (
        "format-0-single-des",
        lambda: pb.encrypt_pin_block(DES(H("0123456789ABCDEF")), 0, "9876", GOOD_PAN),
        "9876",
        GOOD_PAN,
        b"",
    ),
    (
        "format-4-block-short",
        lambda: pb.decrypt_format4(AES_KEY, GOOD_F0, GOOD_PAN),
        None,
        GOOD_PAN,
        GOOD_F0,
    ),
    ("random-pin-length", lambda: pb.random_pin(RNG, 3), None, None, b""),
]


@pytest.mark.parametrize(
    ("name", "call", "pin", "pan", "block"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES]
)
def test_errors_are_typed_and_clean(
    name: str, call: Callable[[], object], pin: str | None, pan: str | None, block: bytes
) -> None:
    with pytest.raises(PinBlockError) as err:
        call()
    assert isinstance(err.value, ValueError)
    _assert_clean(err.value, pin, pan, block)


def test_decode_failures_share_one_message_per_format() -> None:
    # No error oracle: control, length, digit and fill failures read the same.
    pan = "5555555551234567"
    messages = set()
    for hex_block in (
        "241261AAAAEDCBA9",
        "0F1261AAAAEDCBA9",
        "041261AAAAEDCBAA",
        "051261AAAAEDCBA9",
    ):
        with pytest.raises(PinBlockError) as err:
            pb.decode_format0(H(hex_block), pan)
        messages.add(str(err.value))
    assert len(messages) == 1


def test_random_pin_is_uniform_and_seeded() -> None:
    assert pb.random_pin(SeededRandom(1), 6) == pb.random_pin(SeededRandom(1), 6)
    counts = [0] * 10
    for ch in "".join(pb.random_pin(SeededRandom(i), 12) for i in range(2000)):
        counts[int(ch)] += 1
    # 24,000 digits: each should be near 2,400 (a 6-sigma band is about +-280).
    assert all(2100 < c < 2700 for c in counts)
