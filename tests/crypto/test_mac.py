"""ISO/IEC 9797-1 padding and MACs, CMAC: published vectors, oracles, properties, errors."""

from __future__ import annotations

import random
from typing import Any

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC
from hypothesis import given
from hypothesis import strategies as st
from psec import mac as psec_mac
from pyemv import mac as pyemv_mac

from cardperso.crypto import (
    AES,
    DES,
    TDES,
    BlockCipher,
    CipherError,
    cmac,
    mac_alg1,
    mac_alg3,
    pad_iso9797,
    retail_mac,
    unpad_m2,
    verify_mac,
)

from ._vectors import assert_no_secret, h, load

# psec and pyemv still call the deprecated TripleDES location; that is their business.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

ISO = load("crypto_mac_iso9797")
CMAC_VECTORS = load("crypto_cmac")["vectors"]
ORACLE_ROUNDS = 1000


def _make(algorithm: str, key: bytes) -> BlockCipher:
    return {"AES": AES, "TDES": TDES, "DES": DES}[algorithm](key)


# --- published vectors -----------------------------------------------------------


@pytest.mark.parametrize("v", ISO["padding"], ids=[v["name"] for v in ISO["padding"]])
def test_padding_vectors(v: dict[str, Any]) -> None:
    assert pad_iso9797(h(v["data"]), v["block_size"], v["method"]) == h(v["padded"])


@pytest.mark.parametrize("v", ISO["alg1"], ids=[v["name"] for v in ISO["alg1"]])
def test_alg1_vectors(v: dict[str, Any]) -> None:
    expected = h(v["mac"])
    got = mac_alg1(_make(v["cipher"], h(v["key"])), h(v["message"]), v["padding"])
    assert got[: len(expected)] == expected


@pytest.mark.parametrize("v", ISO["alg3"], ids=[v["name"] for v in ISO["alg3"]])
def test_alg3_vectors(v: dict[str, Any]) -> None:
    key, msg, expected = h(v["key"]), h(v["message"]), h(v["mac"])
    if "message_ascii" in v:
        assert msg == v["message_ascii"].encode("ascii")
    half = len(key) // 2
    k1, k2 = _make(v["cipher"], key[:half]), _make(v["cipher"], key[half:])
    assert mac_alg3(k1, k2, msg, v["padding"])[: len(expected)] == expected
    if v["cipher"] == "DES":
        assert retail_mac(key, msg, v["padding"])[: len(expected)] == expected


@pytest.mark.parametrize(
    "v", CMAC_VECTORS, ids=[f"{v['algorithm']}-{v['name']}" for v in CMAC_VECTORS]
)
def test_cmac_vectors(v: dict[str, Any]) -> None:
    assert cmac(_make(v["algorithm"], h(v["key"])), h(v["message"])) == h(v["tag"])


# --- padding rules -----------------------------------------------------------------


def test_method1_empty_is_one_zero_block() -> None:
    assert pad_iso9797(b"", 8, 1) == bytes(8)
    assert pad_iso9797(b"", 16, 1) == bytes(16)


def test_method1_full_block_unchanged() -> None:
    assert pad_iso9797(bytes(range(16)), 8, 1) == bytes(range(16))


def test_method3_empty_is_length_block_only() -> None:
    # ISO/IEC 9797-1 method 3 pads D with "as few (possibly none)" zero bits, so empty
    # data is just the length block. (psec 1.3 appends an extra zero block here.)
    assert pad_iso9797(b"", 8, 3) == bytes(8)


def test_method3_length_is_in_bits() -> None:
    assert pad_iso9797(b"\xaa" * 9, 8, 3) == (72).to_bytes(8, "big") + b"\xaa" * 9 + bytes(7)


@given(data=st.binary(max_size=80), bs=st.sampled_from([8, 16]), method=st.sampled_from([1, 2, 3]))
def test_padded_length_is_block_multiple(data: bytes, bs: int, method: int) -> None:
    padded = pad_iso9797(data, bs, method)
    assert padded and len(padded) % bs == 0
    assert data in padded


@given(data=st.binary(max_size=80), bs=st.sampled_from([8, 16]))
def test_pad_unpad_round_trip(data: bytes, bs: int) -> None:
    assert unpad_m2(pad_iso9797(data, bs, 2), bs) == data


@pytest.mark.parametrize(
    "bad",
    [
        b"",  # nothing at all
        bytes(8),  # no 0x80 marker
        b"\x01\x02\x03\x04\x05\x06\x07\x08",  # last byte not 0x80/0x00
        b"\x80" + bytes(8),  # marker outside the last block
        b"\x11\x22\x80\x00\x00\x00\x00\x01",  # non-zero after the marker
        b"\x11\x22\x33\x80\x00\x00",  # not a whole block
        b"\x11\x22\x33\x80\x00\x00\x00\x00\x00",  # one byte too many
    ],
)
def test_unpad_m2_rejects_bad_padding(bad: bytes) -> None:
    with pytest.raises(CipherError):
        unpad_m2(bad, 8)


def test_unpad_m2_marker_in_last_byte_and_first_byte() -> None:
    assert unpad_m2(b"\x01\x02\x03\x04\x05\x06\x07\x80", 8) == bytes(range(1, 8))
    assert unpad_m2(b"\x01" * 8 + b"\x80" + bytes(7), 8) == b"\x01" * 8


@pytest.mark.parametrize("method", [0, 4, -1])
def test_bad_padding_method(method: int) -> None:
    with pytest.raises(CipherError):
        pad_iso9797(b"abc", 8, method)
    with pytest.raises(CipherError):
        mac_alg1(DES(bytes(8)), b"abc", method)


@pytest.mark.parametrize("bs", [0, -8])
def test_bad_block_size(bs: int) -> None:
    with pytest.raises(CipherError):
        pad_iso9797(b"abc", bs, 1)
    with pytest.raises(CipherError):
        unpad_m2(b"\x80", bs)


# --- errors that must not show key bytes ---------------------------------------------


@pytest.mark.parametrize("length", [0, 8, 15, 17, 24])
def test_retail_mac_wrong_key_length(length: int) -> None:
    key = bytes(range(0x30, 0x30 + length))
    with pytest.raises(CipherError) as info:
        retail_mac(key, b"data")
    assert_no_secret(str(info.value), key)


def test_mac_alg3_block_size_mismatch() -> None:
    with pytest.raises(CipherError):
        mac_alg3(DES(bytes(8)), AES(bytes(16)), b"data")


class _FourByteCipher:
    """A toy 32-bit block cipher (XOR): CMAC is not defined for it."""

    block_size = 4
    algorithm = "TOY"

    def encrypt_ecb(self, data: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in data)

    decrypt_ecb = encrypt_ecb

    def encrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes:
        return self.encrypt_ecb(data)

    decrypt_cbc = encrypt_cbc


def test_cmac_rejects_unsupported_block_size() -> None:
    with pytest.raises(CipherError):
        cmac(_FourByteCipher(), b"abc")


def test_verify_mac() -> None:
    assert verify_mac(b"\x01\x02\x03\x04", b"\x01\x02\x03\x04")
    assert not verify_mac(b"\x01\x02\x03\x04", b"\x01\x02\x03\x05")
    assert not verify_mac(b"\x01\x02\x03\x04", b"\x01\x02\x03")


# --- differential tests against independent implementations ---------------------------


def _messages(seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    return [rnd.randbytes(rnd.randrange(0, 70)) for _ in range(ORACLE_ROUNDS)]


def test_padding_matches_psec_and_pyemv() -> None:
    for i, data in enumerate(_messages(1)):
        bs = 8 if i % 2 else 16
        assert (
            pad_iso9797(data, bs, 1)
            == psec_mac.pad_iso_1(data, bs)
            == pyemv_mac.pad_iso9797_1(data, bs)
        )
        assert (
            pad_iso9797(data, bs, 2)
            == psec_mac.pad_iso_2(data, bs)
            == pyemv_mac.pad_iso9797_2(data, bs)
        )
        if data:  # psec differs from the standard only on empty data (see above)
            assert pad_iso9797(data, bs, 3) == psec_mac.pad_iso_3(data, bs)


def test_retail_mac_matches_psec_and_pyemv() -> None:
    rnd = random.Random(2)
    for data in _messages(3):
        key = rnd.randbytes(16)
        padding = rnd.choice((1, 2))
        ours = retail_mac(key, data, padding)
        assert ours == pyemv_mac.mac_iso9797_3(key[:8], key[8:], data, padding)
        assert ours == psec_mac.generate_retail_mac(key[:8], key[8:], data, padding)


def test_mac_alg3_padding3_matches_psec() -> None:
    rnd = random.Random(4)
    for data in _messages(5):
        if not data:
            continue
        key = rnd.randbytes(16)
        assert retail_mac(key, data, 3) == psec_mac.generate_retail_mac(key[:8], key[8:], data, 3)


def test_mac_alg1_matches_psec() -> None:
    rnd = random.Random(6)
    for i, data in enumerate(_messages(7)):
        padding = rnd.choice((1, 2, 3)) if data else rnd.choice((1, 2))
        if i % 2:
            key = rnd.randbytes(rnd.choice((16, 24)))
            ours = mac_alg1(TDES(key), data, padding)
            theirs = psec_mac.generate_cbc_mac(key, data, padding)
        else:
            key = rnd.randbytes(rnd.choice((16, 24, 32)))
            ours = mac_alg1(AES(key), data, padding)
            theirs = psec_mac.generate_cbc_mac(key, data, padding, algorithm=psec_mac.Algorithm.AES)
        assert ours == theirs


def test_cmac_matches_cryptography() -> None:
    rnd = random.Random(8)
    for i, data in enumerate(_messages(9)):
        if i % 2:
            key = rnd.randbytes(rnd.choice((16, 24, 32)))
            ours = cmac(AES(key), data)
            oracle = CMAC(algorithms.AES(key))
        else:
            key = rnd.randbytes(24)
            ours = cmac(TDES(key), data)
            oracle = CMAC(TripleDES(key))
        oracle.update(data)
        assert ours == oracle.finalize()
