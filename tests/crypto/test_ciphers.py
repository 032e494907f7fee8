"""Block ciphers: published known answers, error cases, redaction."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardperso.crypto import AES, DES, TDES, BlockCipher, CipherError

from ._vectors import assert_no_secret, h, load

VECTORS = load("crypto_ciphers")["vectors"]
_MAKERS = {"AES": AES, "TDES": TDES, "DES": DES}


def _cipher(v: dict[str, Any]) -> BlockCipher:
    return _MAKERS[v["algorithm"]](h(v["key"]))


@pytest.mark.parametrize("v", VECTORS, ids=[f"{v['algorithm']}-{v['name']}" for v in VECTORS])
def test_known_answer(v: dict[str, Any]) -> None:
    c = _cipher(v)
    pt, ct = h(v["plaintext"]), h(v["ciphertext"])
    if "iv" in v:
        assert c.encrypt_cbc(pt, h(v["iv"])) == ct
        assert c.decrypt_cbc(ct, h(v["iv"])) == pt
    else:
        assert c.encrypt_ecb(pt) == ct
        assert c.decrypt_ecb(ct) == pt


def test_protocol_and_properties() -> None:
    for c, algo, bs in (
        (AES(bytes(16)), "AES", 16),
        (TDES(bytes(range(16))), "TDES", 8),
        (DES(bytes(8)), "DES", 8),
    ):
        assert isinstance(c, BlockCipher)
        assert c.algorithm == algo
        assert c.block_size == bs


def test_two_key_tdes_is_three_key_with_k3_equal_k1() -> None:
    key = h("0123456789abcdeffedcba9876543210")
    block = h("4e6f772069732074")
    assert TDES(key).encrypt_ecb(block) == TDES(key + key[:8]).encrypt_ecb(block)


def test_des_equals_tdes_with_three_equal_keys() -> None:
    key = h("133457799bbcdff1")
    block = h("0123456789abcdef")
    assert DES(key).encrypt_ecb(block) == TDES(key * 3).encrypt_ecb(block) == h("85e813540f0ab405")


@pytest.mark.parametrize(
    ("maker", "length"),
    [
        (AES, 0),
        (AES, 15),
        (AES, 17),
        (AES, 33),
        (TDES, 8),
        (TDES, 15),
        (TDES, 32),
        (DES, 7),
        (DES, 16),
    ],
)
def test_wrong_key_length(maker: type, length: int) -> None:
    key = bytes(range(0x41, 0x41 + length))
    with pytest.raises(CipherError) as info:
        maker(key)
    assert_no_secret(str(info.value), key)


@pytest.mark.parametrize(
    "cipher", [AES(h("2b7e151628aed2a6abf7158809cf4f3c")), DES(h("0123456789abcdef"))]
)
def test_data_not_block_multiple(cipher: BlockCipher) -> None:
    for op in (cipher.encrypt_ecb, cipher.decrypt_ecb, cipher.encrypt_cbc, cipher.decrypt_cbc):
        with pytest.raises(CipherError) as info:
            op(bytes(cipher.block_size + 1))
        assert_no_secret(str(info.value), h("2b7e151628aed2a6abf7158809cf4f3c"))
        assert_no_secret(str(info.value), h("0123456789abcdef"))


def test_bad_iv_length() -> None:
    with pytest.raises(CipherError):
        AES(bytes(16)).encrypt_cbc(bytes(16), bytes(8))


def test_repr_hides_key() -> None:
    key = h("2b7e151628aed2a6abf7158809cf4f3c")
    for c in (AES(key), TDES(key), DES(key[:8])):
        for text in (repr(c), str(c), f"{c}"):
            assert "redacted" in text
            assert_no_secret(text, key)


@given(
    key=st.binary(min_size=16, max_size=16),
    iv=st.binary(min_size=16, max_size=16),
    blocks=st.binary(max_size=64).map(lambda b: b[: len(b) - len(b) % 16]),
)
def test_aes_cbc_round_trip(key: bytes, iv: bytes, blocks: bytes) -> None:
    c = AES(key)
    assert c.decrypt_cbc(c.encrypt_cbc(blocks, iv), iv) == blocks
