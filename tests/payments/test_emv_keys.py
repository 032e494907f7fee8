"""EMV ICC master keys and session keys: published vectors, pyemv as an oracle, errors."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyemv.ac
import pyemv.kd
import pytest

from cardperso.crypto.ciphers import AES, TDES
from cardperso.crypto.parity import has_odd_parity
from cardperso.payments.emv_keys import (
    EmvKeyError,
    derive_common_session_key,
    derive_icc_mk_a,
    derive_icc_mk_b,
    derive_session_key,
    generate_ac,
)

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "payments_emv_keys.json").read_text()
)["vectors"]
H = bytes.fromhex
# pyemv (the test-only oracle) still calls cryptography's deprecated TripleDES alias.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
DIFF_N = 1000
IMK = H("0123456789ABCDEFFEDCBA9876543210")


def _kcv(key: bytes, n: int) -> str:
    return TDES(key).encrypt_ecb(bytes(8))[:n].hex().upper()


@pytest.mark.parametrize("v", VECTORS, ids=[v["id"] for v in VECTORS])
def test_published_vector(v: dict[str, Any]) -> None:
    assert v["source"]
    if v["method"] == "session":
        icc_mk = H(v["icc_mk"])
    else:
        derive = derive_icc_mk_a if v["method"] == "A" else derive_icc_mk_b
        icc_mk = derive(TDES(H(v["imk"])), v["pan"], v["psn"])
        assert len(icc_mk) == 16 and has_odd_parity(icc_mk)
        if "icc_mk" in v:
            assert icc_mk.hex().upper() == v["icc_mk"]
        if "icc_mk_kcv" in v:
            assert _kcv(icc_mk, len(v["icc_mk_kcv"]) // 2) == v["icc_mk_kcv"]
    if "r" not in v:
        return
    sk = derive_common_session_key(TDES(icc_mk), H(v["r"]))
    if "atc" in v:
        assert derive_session_key(TDES(icc_mk), H(v["atc"])) == sk
    if "session_key" in v:
        assert sk.hex().upper() == v["session_key"]
    if "session_key_kcv" in v:
        assert _kcv(sk, len(v["session_key_kcv"]) // 2) == v["session_key_kcv"]
    if "ac" in v:
        ac = generate_ac(sk, H(v["ac_data"]), padding=v["ac_padding"])
        assert ac.hex().upper() == v["ac"]


def test_psn_defaults_to_00() -> None:
    imk = TDES(IMK)
    assert derive_icc_mk_a(imk, "12345678901234567") == derive_icc_mk_a(
        imk, "12345678901234567", "00"
    )
    assert derive_icc_mk_b(imk, "1234567890123456789") == derive_icc_mk_b(
        imk, "1234567890123456789", "00"
    )


def test_option_b_is_option_a_up_to_16_digits() -> None:
    imk = TDES(IMK)
    for pan in ("123456789012", "1234567890123", "1234567890123456"):
        assert derive_icc_mk_b(imk, pan, "07") == derive_icc_mk_a(imk, pan, "07")
    assert derive_icc_mk_b(imk, "12345678901234567", "07") != derive_icc_mk_a(
        imk, "12345678901234567", "07"
    )


def test_short_pan_is_left_padded() -> None:
    # Option A pads PAN || PSN on the left with zeros to 16 digits (A1.4.1).
    imk = TDES(IMK)
    assert derive_icc_mk_a(imk, "12345", "01") == derive_icc_mk_a(imk, "0000000012345", "01")


def _pan(r: random.Random, lo: int, hi: int) -> str:
    return "".join(r.choice("0123456789") for _ in range(r.randint(lo, hi)))


def test_option_a_against_pyemv() -> None:
    r = random.Random(0xA1)
    for _ in range(DIFF_N):
        imk = r.randbytes(16)
        pan, psn = _pan(r, 12, 19), f"{r.randrange(100):02d}"
        assert derive_icc_mk_a(TDES(imk), pan, psn) == pyemv.kd.derive_icc_mk_a(imk, pan, psn)


def test_option_b_against_pyemv() -> None:
    r = random.Random(0xB1)
    for _ in range(DIFF_N):
        imk = r.randbytes(16)
        pan, psn = _pan(r, 12, 19), f"{r.randrange(100):02d}"
        assert derive_icc_mk_b(TDES(imk), pan, psn) == pyemv.kd.derive_icc_mk_b(imk, pan, psn)


def test_session_key_against_pyemv() -> None:
    r = random.Random(0x5E)
    for _ in range(DIFF_N):
        mk, atc = r.randbytes(16), r.randbytes(2)
        expected = pyemv.kd.derive_common_sk(mk, atc + bytes(6))
        assert derive_session_key(TDES(mk), atc) == expected
        rr = r.randbytes(8)
        assert derive_common_session_key(TDES(mk), rr) == pyemv.kd.derive_common_sk(mk, rr)


def test_generate_ac_against_pyemv() -> None:
    r = random.Random(0xAC)
    kinds = {1: pyemv.ac.PaddingType.VISA, 2: pyemv.ac.PaddingType.EMV}
    for _ in range(DIFF_N):
        sk, data, padding = r.randbytes(16), r.randbytes(r.randint(1, 64)), r.choice((1, 2))
        expected = pyemv.ac.generate_ac(sk, data, kinds[padding])
        assert generate_ac(sk, data, padding=padding) == expected


@pytest.mark.parametrize(
    ("pan", "psn"),
    [
        ("", "00"),
        ("1234a678901234", "00"),
        ("1" * 20, "00"),
        ("123456789012", "0"),
        ("123456789012", "001"),
        ("123456789012", "0x"),
        ("１２３４５６７８９０１２", "00"),
    ],
)
def test_bad_pan_or_psn(pan: str, psn: str) -> None:
    for derive in (derive_icc_mk_a, derive_icc_mk_b):
        with pytest.raises(EmvKeyError) as exc:
            derive(TDES(IMK), pan, psn)
        assert pan not in str(exc.value) or not pan


def test_wrong_key_algorithm_rejected() -> None:
    with pytest.raises(EmvKeyError, match="TDES"):
        derive_icc_mk_a(AES(bytes(16)), "1234567890123456", "00")
    with pytest.raises(EmvKeyError, match="TDES"):
        derive_session_key(AES(bytes(16)), b"\x00\x01")


def test_bad_lengths_and_no_key_bytes_in_errors() -> None:
    mk = H("0123456789ABCDEFFEDCBA9876543210")
    with pytest.raises(EmvKeyError) as exc:
        derive_session_key(TDES(mk), b"\x00")
    assert "ATC" in str(exc.value)
    with pytest.raises(EmvKeyError):
        derive_common_session_key(TDES(mk), bytes(7))
    with pytest.raises(EmvKeyError) as exc2:
        generate_ac(mk[:15], b"data")
    with pytest.raises(EmvKeyError):
        generate_ac(mk, b"data", padding=3)
    for e in (exc.value, exc2.value):
        text = str(e).upper()
        assert mk.hex().upper() not in text and mk[:8].hex().upper() not in text


def test_docstring_examples() -> None:
    import doctest

    from cardperso.payments import emv_keys

    assert doctest.testmod(emv_keys).failed == 0
