"""SP 800-108r1 counter-mode KDF with CMAC: CAVP vectors, an independent oracle, errors."""

from __future__ import annotations

import random
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode

from cardperso.crypto import AES, TDES, CipherError, counter_mode_cmac, sp800_108_counter_cmac

from ._vectors import h, load

VECTORS = load("crypto_kdf")["vectors"]
ORACLE_ROUNDS = 1000


@pytest.mark.parametrize("v", VECTORS, ids=[v["name"] for v in VECTORS])
def test_cavp_counter_mode_vectors(v: dict[str, Any]) -> None:
    fixed = h(v["fixed_input"])
    r = v["counter_bytes"]
    out = counter_mode_cmac(
        AES(h(v["ki"])), v["l_bits"] // 8, lambda i: i.to_bytes(r, "big") + fixed
    )
    assert out == h(v["ko"])


def test_fixed_input_layout() -> None:
    """[i]_r || Label || 0x00 || Context || [L]_32, spelled out by hand."""
    cipher = AES(bytes(range(16)))
    label, context, length = b"ENC", b"\x01\x02\x03", 20
    seen: list[bytes] = []

    def record(i: int) -> bytes:
        block = i.to_bytes(2, "big") + label + b"\x00" + context + (length * 8).to_bytes(4, "big")
        seen.append(block)
        return block

    expected = counter_mode_cmac(cipher, length, record)
    assert sp800_108_counter_cmac(cipher, label, context, length, counter_bytes=2) == expected
    assert [b[:2] for b in seen] == [b"\x00\x01", b"\x00\x02"]
    assert len(expected) == length


def test_length_is_bound_into_every_block() -> None:
    cipher = AES(bytes(16))
    short = sp800_108_counter_cmac(cipher, b"L", b"C", 16)
    long = sp800_108_counter_cmac(cipher, b"L", b"C", 32)
    assert long[:16] != short


def test_works_over_tdes_cmac() -> None:
    out = sp800_108_counter_cmac(TDES(bytes(range(24))), b"label", b"ctx", 24)
    assert len(out) == 24


def test_matches_cryptography_kbkdf() -> None:
    rnd = random.Random(108)
    for _ in range(ORACLE_ROUNDS):
        key = rnd.randbytes(rnd.choice((16, 24, 32)))
        label = rnd.randbytes(rnd.randrange(0, 20))
        context = rnd.randbytes(rnd.randrange(0, 20))
        length = rnd.randrange(1, 70)
        r = rnd.choice((1, 2, 3, 4))
        oracle = KBKDFCMAC(
            algorithms.AES,
            Mode.CounterMode,
            length,
            r,
            4,
            CounterLocation.BeforeFixed,
            label,
            context,
            None,
        )
        assert sp800_108_counter_cmac(AES(key), label, context, length, counter_bytes=r) == (
            oracle.derive(key)
        )


@pytest.mark.parametrize("length", [0, -1])
def test_bad_length(length: int) -> None:
    with pytest.raises(CipherError):
        sp800_108_counter_cmac(AES(bytes(16)), b"", b"", length)
    with pytest.raises(CipherError):
        counter_mode_cmac(AES(bytes(16)), length, lambda i: bytes(4))


@pytest.mark.parametrize("counter_bytes", [0, 5, 8])
def test_bad_counter_width(counter_bytes: int) -> None:
    with pytest.raises(CipherError):
        sp800_108_counter_cmac(AES(bytes(16)), b"", b"", 16, counter_bytes=counter_bytes)


def test_counter_may_not_wrap() -> None:
    cipher = AES(bytes(16))
    assert len(sp800_108_counter_cmac(cipher, b"", b"", 255 * 16, counter_bytes=1)) == 255 * 16
    with pytest.raises(CipherError):
        sp800_108_counter_cmac(cipher, b"", b"", 255 * 16 + 1, counter_bytes=1)


def test_l_field_may_not_overflow() -> None:
    with pytest.raises(CipherError):
        sp800_108_counter_cmac(AES(bytes(16)), b"", b"", 1 << 29)
