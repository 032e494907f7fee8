"""Visa PVV: published vectors, psec as an oracle, properties, errors; digit helpers."""

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

from cardperso.crypto.ciphers import DES, TDES
from cardperso.payments import pvv as pvv_mod
from cardperso.payments._digits import decimalize_visa, luhn_check_digit, luhn_valid
from cardperso.payments.pvv import PvvError, pvv, verify_pvv

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "payments_pvv.json").read_text())[
    "vectors"
]
H = bytes.fromhex
# psec (the test-only oracle) still calls cryptography's deprecated TripleDES alias.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
DIFF_N = 1000


@pytest.mark.parametrize("v", VECTORS, ids=[v["id"] for v in VECTORS])
def test_published_vector(v: dict[str, Any]) -> None:
    assert v["source"]
    key = TDES(H(v["key"]))
    assert pvv(key, v["pan"], v["pvki"], v["pin"]) == v["pvv"]
    assert verify_pvv(key, v["pan"], v["pvki"], v["pin"], v["pvv"])
    other = str((int(v["pvv"][0]) + 1) % 10) + v["pvv"][1:]
    assert not verify_pvv(key, v["pan"], v["pvki"], v["pin"], other)


def _digits(r: random.Random, n: int) -> str:
    return "".join(r.choice("0123456789") for _ in range(n))


def test_diff_pvv_against_psec() -> None:
    r = random.Random(4_0_2_1)
    for _ in range(DIFF_N):
        key = r.randbytes(r.choice((16, 24)))
        pan = _digits(r, r.randint(12, 19))
        pvki = _digits(r, 1)
        pin = _digits(r, r.randint(4, 12))
        theirs = psec.pin.generate_visa_pvv(key, pvki, pin[:4], pan)
        assert pvv(TDES(key), pan, pvki, pin) == theirs


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=16, max_size=16),
    pan=st.text(alphabet="0123456789", min_size=12, max_size=19),
    pvki=st.sampled_from("0123456789"),
    pin=st.text(alphabet="0123456789", min_size=4, max_size=12),
)
def test_pvv_shape_and_verification(key: bytes, pan: str, pvki: str, pin: str) -> None:
    cipher = TDES(key)
    value = pvv(cipher, pan, pvki, pin)
    assert len(value) == 4 and value.isdecimal()
    assert verify_pvv(cipher, pan, pvki, pin, value)
    # Only the first four PIN digits and the 11 digits before the check digit matter.
    assert pvv(cipher, pan, pvki, pin[:4]) == value
    assert pvv(cipher, pan[:-1] + str((int(pan[-1]) + 1) % 10), pvki, pin) == value


KEY = TDES(H("0123456789ABCDEFFEDCBA9876543210"))
PAN = "4111111111111111"

ERRORS: list[tuple[str, Callable[[], object], str | None]] = [
    ("pin-short", lambda: pvv(KEY, PAN, "1", "987"), "987"),
    ("pin-letters", lambda: pvv(KEY, PAN, "1", "98x6"), "98x6"),
    ("pvki-two", lambda: pvv(KEY, PAN, "12", "9876"), "9876"),
    ("pvki-letter", lambda: pvv(KEY, PAN, "A", "9876"), "9876"),
    ("pan-short", lambda: pvv(KEY, "41111111111", "1", "9876"), "9876"),
    ("pan-long", lambda: pvv(KEY, PAN + "1234", "1", "9876"), "9876"),
    ("pan-letters", lambda: pvv(KEY, "4111111111111D11", "1", "9876"), "9876"),
    ("pvv-short", lambda: verify_pvv(KEY, PAN, "1", "9876", "123"), "9876"),
    ("single-des", lambda: pvv(DES(H("0123456789ABCDEF")), PAN, "1", "9876"), "9876"),
]


@pytest.mark.parametrize(("name", "call", "pin"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_are_typed_and_clean(name: str, call: Callable[[], object], pin: str) -> None:
    with pytest.raises(PvvError) as err:
        call()
    assert isinstance(err.value, ValueError)
    assert pin not in str(err.value)
    assert PAN not in str(err.value)


def test_module_exports() -> None:
    assert set(pvv_mod.__all__) == {"PvvError", "pvv", "verify_pvv"}


# -- shared digit helpers (payments/_digits.py) ------------------------------------------------


def test_visa_decimalization_two_passes() -> None:
    # IBM CCA Appendix E (VISA PVV method): decimal digits first, then A-F minus 10.
    assert decimalize_visa("8D5625FA78011A0C", 16) == "8562578011035002"
    assert decimalize_visa("ABCDEF0123456789", 4) == "0123"
    assert decimalize_visa("ABCDEFABCDEFABC1", 4) == "1012"


@pytest.mark.parametrize(
    "number",
    ["1234567890123445", "4111111111111111", "4012345678909"],
)
def test_luhn_known_valid_numbers(number: str) -> None:
    # 1234567890123445: L. Padilla's magnetic stripe example card (Luhn worked example);
    # 4111111111111111 and 4012345678909: the standard Visa test numbers.
    assert luhn_valid(number)
    assert luhn_check_digit(number[:-1]) == number[-1]


@settings(max_examples=200, deadline=None)
@given(payload=st.text(alphabet="0123456789", min_size=1, max_size=30), pos=st.integers(0, 30))
def test_luhn_detects_single_digit_errors(payload: str, pos: int) -> None:
    number = payload + luhn_check_digit(payload)
    assert luhn_valid(number)
    i = pos % len(number)
    changed = number[:i] + str((int(number[i]) + 1) % 10) + number[i + 1 :]
    assert not luhn_valid(changed)


def test_luhn_rejects_non_digits() -> None:
    assert not luhn_valid("4111 1111 1111 1111")
    assert not luhn_valid("4")
    assert not luhn_valid("")
