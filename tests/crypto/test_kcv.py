"""Key check values: published KCVs, psec/pyemv oracles, errors."""

from __future__ import annotations

import random
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from psec import des as psec_des
from pyemv import tools as pyemv_tools

from cardperso.crypto import AES, DES, TDES, BlockCipher, CipherError, kcv, kcv_cmac

from ._vectors import h, load

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

VECTORS = load("crypto_kcv")["vectors"]
ORACLE_ROUNDS = 1000


def _make(algorithm: str, key: bytes) -> BlockCipher:
    return AES(key) if algorithm == "AES" else TDES(key)


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_published_kcv(v: dict[str, Any]) -> None:
    expected = h(v["kcv"])
    cipher = _make(v["algorithm"], h(v["key"]))
    fn = kcv if v["method"] == "encrypt" else kcv_cmac
    assert fn(cipher, len(expected)) == expected


def test_default_lengths() -> None:
    assert len(kcv(TDES(bytes(range(16))))) == 3
    assert len(kcv(AES(bytes(16)))) == 3
    assert len(kcv_cmac(AES(bytes(16)))) == 5
    assert len(kcv_cmac(TDES(bytes(range(16))))) == 5


def test_single_des_kcv_is_encrypted_zero_block() -> None:
    key = h("0123456789abcdef")
    assert kcv(DES(key), 8) == DES(key).encrypt_ecb(bytes(8))


def test_aes_kcv_encrypts_block_of_ones() -> None:
    key = h("2b7e151628aed2a6abf7158809cf4f3c")
    assert kcv(AES(key), 16) == AES(key).encrypt_ecb(b"\x01" * 16)


def test_tdes_kcv_matches_psec_and_pyemv() -> None:
    rnd = random.Random(24)
    for _ in range(ORACLE_ROUNDS):
        key = rnd.randbytes(rnd.choice((16, 24)))
        ours = kcv(TDES(key), 3)
        assert ours == psec_des.generate_kcv(key, 3) == pyemv_tools.key_check_digits(key, 3)


def test_cmac_kcv_matches_cryptography() -> None:
    rnd = random.Random(25)
    for _ in range(ORACLE_ROUNDS):
        key = rnd.randbytes(rnd.choice((16, 24, 32)))
        oracle = CMAC(algorithms.AES(key))
        oracle.update(bytes(16))
        assert kcv_cmac(AES(key)) == oracle.finalize()[:5]


@pytest.mark.parametrize("length", [0, -1, 9])
def test_bad_length_des(length: int) -> None:
    with pytest.raises(CipherError):
        kcv(TDES(bytes(range(16))), length)
    with pytest.raises(CipherError):
        kcv_cmac(TDES(bytes(range(16))), length)


def test_bad_length_aes() -> None:
    with pytest.raises(CipherError):
        kcv(AES(bytes(16)), 17)
    assert len(kcv(AES(bytes(16)), 16)) == 16
