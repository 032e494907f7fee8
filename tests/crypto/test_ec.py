"""P-256: CAVS ECDH and RFC 6979 vectors, properties, invalid points and scalars."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardperso.crypto import (
    P256_ORDER,
    CipherError,
    SeededRandom,
    p256_ecdh,
    p256_generate_scalar,
    p256_public_key,
    p256_sign,
    p256_verify,
)

from ._vectors import assert_no_secret, h, load

EC = load("crypto_ec")
P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1


def _point(x: str, y: str) -> bytes:
    return b"\x04" + h(x) + h(y)


@pytest.mark.parametrize("v", EC["ecdh"], ids=[v["name"] for v in EC["ecdh"]])
def test_cavs_ecdh(v: dict[str, Any]) -> None:
    d = h(v["d_iut"])
    assert p256_ecdh(d, _point(v["qcavs_x"], v["qcavs_y"])) == h(v["z"])
    if "qiut_x" in v:
        assert p256_public_key(d) == _point(v["qiut_x"], v["qiut_y"])


@pytest.mark.parametrize("v", EC["ecdsa"], ids=[v["name"] for v in EC["ecdsa"]])
def test_rfc6979_deterministic_signature(v: dict[str, Any]) -> None:
    d, message = h(v["d"]), v["message_ascii"].encode("ascii")
    public = _point(v["ux"], v["uy"])
    expected = h(v["r"]) + h(v["s"])
    assert p256_public_key(d) == public
    assert p256_sign(d, message) == expected
    assert p256_verify(public, message, expected)
    assert not p256_verify(public, message + b"!", expected)


def _scalar(seed: int) -> bytes:
    return p256_generate_scalar(SeededRandom(seed))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**64), st.integers(0, 2**64))
def test_ecdh_is_symmetric(seed_a: int, seed_b: int) -> None:
    a, b = _scalar(seed_a), _scalar(seed_b + 2**65)
    shared = p256_ecdh(a, p256_public_key(b))
    assert shared == p256_ecdh(b, p256_public_key(a))
    assert len(shared) == 32


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**64), st.binary(max_size=200))
def test_sign_verify_round_trip(seed: int, message: bytes) -> None:
    d = _scalar(seed)
    public = p256_public_key(d)
    sig = p256_sign(d, message)
    assert len(sig) == 64
    assert p256_sign(d, message) == sig  # deterministic (RFC 6979)
    assert p256_verify(public, message, sig)
    assert not p256_verify(public, message + b"\x00", sig)
    flipped = bytes([sig[0] ^ 0x01]) + sig[1:]
    assert not p256_verify(public, message, flipped)


def test_verify_rejects_malformed_signatures() -> None:
    d = _scalar(1)
    public = p256_public_key(d)
    sig = p256_sign(d, b"m")
    n = P256_ORDER.to_bytes(32, "big")
    for bad in (b"", sig[:63], sig + b"\x00", bytes(64), sig[:32] + bytes(32), n + sig[32:]):
        assert not p256_verify(public, b"m", bad)


def test_generate_scalar_is_deterministic_and_in_range() -> None:
    a, b = _scalar(7), _scalar(7)
    assert a == b and len(a) == 32
    assert 1 <= int.from_bytes(a, "big") < P256_ORDER
    assert _scalar(8) != a


class _ScriptedRandom:
    def __init__(self, *chunks: bytes) -> None:
        self._chunks = list(chunks)

    def random_bytes(self, n: int) -> bytes:
        return self._chunks.pop(0)


def test_generate_scalar_rejects_out_of_range_candidates() -> None:
    good = (12345).to_bytes(32, "big")
    rng = _ScriptedRandom(bytes(32), P256_ORDER.to_bytes(32, "big"), b"\xff" * 32, good)
    assert p256_generate_scalar(rng) == good


def test_generate_scalar_gives_up_on_a_broken_source() -> None:
    class Zeros:
        def random_bytes(self, n: int) -> bytes:
            return bytes(n)

    with pytest.raises(CipherError):
        p256_generate_scalar(Zeros())


def test_generate_scalar_rejects_short_output() -> None:
    with pytest.raises(CipherError):
        p256_generate_scalar(_ScriptedRandom(b"\x01" * 31))


@pytest.mark.parametrize(
    "d",
    [
        bytes(32),  # zero
        P256_ORDER.to_bytes(32, "big"),  # n
        b"\xff" * 32,  # above n
        b"\x5a" * 31,  # too short
        b"\x5a" * 33,  # too long
    ],
)
def test_invalid_private_scalar(d: bytes) -> None:
    peer = p256_public_key(_scalar(3))
    ops: list[Callable[[], bytes]] = [
        lambda: p256_public_key(d),
        lambda: p256_ecdh(d, peer),
        lambda: p256_sign(d, b"m"),
    ]
    for op in ops:
        with pytest.raises(CipherError) as info:
            op()
        assert_no_secret(str(info.value), d)


def _off_curve_points() -> list[bytes]:
    good = p256_public_key(_scalar(4))
    x, y = good[1:33], int.from_bytes(good[33:], "big")
    return [
        b"\x04" + x + ((y + 1) % P256_P).to_bytes(32, "big"),  # same x, wrong y
        b"\x04" + bytes(64),  # (0, 0)
        b"\x04" + P256_P.to_bytes(32, "big") + good[33:],  # x not reduced mod p
        b"\x00",  # point at infinity encoding
        b"\x02" + x,  # compressed: not accepted here
        b"\x05" + good[1:],  # bad prefix
        good[:64],  # truncated
        good + b"\x00",  # too long
        b"",
    ]


@pytest.mark.parametrize("point", _off_curve_points())
def test_invalid_peer_point_raises(point: bytes) -> None:
    d = _scalar(5)
    with pytest.raises(CipherError) as info:
        p256_ecdh(d, point)
    assert_no_secret(str(info.value), d)
    with pytest.raises(CipherError):
        p256_verify(point, b"m", bytes(64))
