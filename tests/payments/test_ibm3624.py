"""IBM 3624 natural PIN and offset: published vectors, psec as an oracle, properties."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psec.pin
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardperso.crypto.ciphers import AES, DES, TDES, BlockCipher
from cardperso.payments import ibm3624
from cardperso.payments._digits import decimalize_table
from cardperso.payments.ibm3624 import Ibm3624Error

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "payments_ibm3624.json").read_text())[
    "vectors"
]
H = bytes.fromhex
# psec (the test-only oracle) still calls cryptography's deprecated TripleDES alias.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
DIFF_N = 1000


def _key(hex_key: str) -> BlockCipher:
    raw = H(hex_key)
    return DES(raw) if len(raw) == 8 else TDES(raw)


@pytest.mark.parametrize("v", VECTORS, ids=[v["id"] for v in VECTORS])
def test_published_vector(v: dict[str, Any]) -> None:
    assert v["source"]
    fn = v["function"]
    if fn == "decimalize_table":
        digits = decimalize_table(v["enciphered"], v["decimalization_table"])
        assert digits == v["digits"]
        assert digits[: v["pin_length"]] == v["pin"]
        return
    key = _key(v["key"])
    args = (key, v["validation_data"], v["decimalization_table"])
    if "enciphered" in v:
        assert key.encrypt_ecb(H(v["validation_data"].ljust(16, v["pad"]))) == H(v["enciphered"])
    if fn == "natural_pin":
        assert ibm3624.natural_pin(*args, v["pin_length"], v["pad"]) == v["pin"]
        zero = "0" * v["pin_length"]
        assert ibm3624.pin_from_offset(*args, zero, v["pad"]) == v["pin"]
    elif fn == "pin_from_offset":
        assert ibm3624.pin_from_offset(*args, v["offset"], v["pad"]) == v["pin"]
        assert ibm3624.verify_offset(*args, v["pin"], v["offset"], v["pad"])
    elif fn == "offset_from_pin":
        assert ibm3624.offset_from_pin(*args, v["pin"], v["pad"]) == v["offset"]
        assert ibm3624.verify_offset(*args, v["pin"], v["offset"], v["pad"])
    else:  # pragma: no cover - a typo in the vector file
        raise AssertionError(f"unknown vector function {fn}")


def test_vectors_cover_every_function() -> None:
    functions = {v["function"] for v in VECTORS}
    assert {"natural_pin", "pin_from_offset", "offset_from_pin", "decimalize_table"} <= functions


# -- differential against psec ------------------------------------------------------------


def _digits(r: random.Random, n: int) -> str:
    return "".join(r.choice("0123456789") for _ in range(n))


def _case(r: random.Random) -> tuple[bytes, str, str, int, int, str]:
    key = r.randbytes(r.choice((8, 16, 24)))
    table = _digits(r, 16)
    pan = _digits(r, r.randint(12, 19))
    length = r.randint(1, min(16, len(pan)))
    start = r.randint(0, len(pan) - length)
    pad = r.choice("0123456789ABCDEF")
    return key, table, pan, start, length, pad


def test_diff_natural_pin_and_pin_from_offset_against_psec() -> None:
    r = random.Random(3624_1)
    for _ in range(DIFF_N):
        key, table, pan, start, length, pad = _case(r)
        data = pan[start : start + length]
        offset = _digits(r, r.randint(4, 16))
        theirs = psec.pin.generate_ibm3624_pin(key, table, offset, pan, start, length, pad)
        assert ibm3624.pin_from_offset(_key(key.hex()), data, table, offset, pad) == theirs
        natural = psec.pin.generate_ibm3624_pin(
            key, table, "0" * len(offset), pan, start, length, pad
        )
        assert ibm3624.natural_pin(_key(key.hex()), data, table, len(offset), pad) == natural


def test_diff_offset_against_psec() -> None:
    r = random.Random(3624_2)
    for _ in range(DIFF_N):
        key, table, pan, start, length, pad = _case(r)
        data = pan[start : start + length]
        pin = _digits(r, r.randint(4, 16))
        theirs = psec.pin.generate_ibm3624_offset(key, table, pin, pan, start, length, pad)
        cipher = _key(key.hex())
        assert ibm3624.offset_from_pin(cipher, data, table, pin, pad) == theirs
        assert ibm3624.verify_offset(cipher, data, table, pin, theirs, pad)


# -- properties ----------------------------------------------------------------------------

keys = st.sampled_from((8, 16, 24)).flatmap(lambda n: st.binary(min_size=n, max_size=n))
hex_data = st.text(alphabet="0123456789ABCDEFabcdef", min_size=1, max_size=16)
tables = st.text(alphabet="0123456789", min_size=16, max_size=16)
pins = st.text(alphabet="0123456789", min_size=4, max_size=16)
pads = st.sampled_from("0123456789ABCDEF")


@settings(max_examples=200, deadline=None)
@given(key=keys, data=hex_data, table=tables, pin=pins, pad=pads)
def test_offset_round_trip(key: bytes, data: str, table: str, pin: str, pad: str) -> None:
    cipher = _key(key.hex())
    offset = ibm3624.offset_from_pin(cipher, data, table, pin, pad)
    assert len(offset) == len(pin)
    assert ibm3624.pin_from_offset(cipher, data, table, offset, pad) == pin
    assert ibm3624.verify_offset(cipher, data, table, pin, offset, pad)
    wrong = str((int(pin[-1]) + 1) % 10)
    assert not ibm3624.verify_offset(cipher, data, table, pin[:-1] + wrong, offset, pad)
    if len(pin) < 16:  # a longer PIN is a wrong PIN, not an error
        assert not ibm3624.verify_offset(cipher, data, table, pin + "0", offset, pad)


@settings(max_examples=100, deadline=None)
@given(key=keys, data=hex_data, table=tables, length=st.integers(4, 16))
def test_natural_pin_is_prefix_stable(key: bytes, data: str, table: str, length: int) -> None:
    cipher = _key(key.hex())
    longest = ibm3624.natural_pin(cipher, data, table, 16)
    assert ibm3624.natural_pin(cipher, data, table, length) == longest[:length]
    assert set(longest) <= set(table)


# -- errors ---------------------------------------------------------------------------------

PDK = TDES(H("0123456789ABCDEFFEDCBA9876543210"))
TABLE = "0123456789012345"
DATA = "4111111111111111"

ERRORS: list[tuple[str, Callable[[], object], str | None]] = [
    ("pin-short", lambda: ibm3624.offset_from_pin(PDK, DATA, TABLE, "987"), "987"),
    ("pin-long", lambda: ibm3624.offset_from_pin(PDK, DATA, TABLE, "9" * 17), "9" * 17),
    ("pin-letters", lambda: ibm3624.verify_offset(PDK, DATA, TABLE, "98a6", "0000"), "98a6"),
    ("offset-letters", lambda: ibm3624.pin_from_offset(PDK, DATA, TABLE, "98b6"), "98b6"),
    ("length-3", lambda: ibm3624.natural_pin(PDK, DATA, TABLE, 3), None),
    ("length-17", lambda: ibm3624.natural_pin(PDK, DATA, TABLE, 17), None),
    ("data-empty", lambda: ibm3624.natural_pin(PDK, "", TABLE, 4), None),
    ("data-17", lambda: ibm3624.natural_pin(PDK, DATA + "1", TABLE, 4), None),
    ("data-not-hex", lambda: ibm3624.natural_pin(PDK, "41111111G", TABLE, 4), None),
    ("table-short", lambda: ibm3624.natural_pin(PDK, DATA, TABLE[:15], 4), None),
    ("table-hex", lambda: ibm3624.natural_pin(PDK, DATA, "0123456789ABCDEF", 4), None),
    ("pad-two", lambda: ibm3624.natural_pin(PDK, "4111", TABLE, 4, "FF"), None),
    ("pad-not-hex", lambda: ibm3624.natural_pin(PDK, "4111", TABLE, 4, "X"), None),
    (
        "aes-key",
        lambda: ibm3624.natural_pin(AES(H("00112233445566778899AABBCCDDEEFF")), DATA, TABLE, 4),
        None,
    ),
]


@pytest.mark.parametrize(("name", "call", "secret"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_are_typed_and_clean(
    name: str, call: Callable[[], object], secret: str | None
) -> None:
    with pytest.raises(Ibm3624Error) as err:
        call()
    assert isinstance(err.value, ValueError)
    text = str(err.value)
    assert DATA not in text
    if secret:
        assert secret not in text
