"""EC P-256 with the private key as a raw 32-byte big-endian scalar.

The simulated card keeps its key pair in EEPROM as bytes, and ECDH-protected
personalization exchanges SEC 1 points in APDUs, so this module speaks bytes at its
edges and leaves all curve arithmetic to the ``cryptography`` package:

* private scalar d: 32 bytes, big-endian, 1 <= d < n (SEC 1 v2 §2.3.7 and §3.2.1);
* public key: 65-byte uncompressed point 04 || X || Y (SEC 1 v2 §2.3.3);
* ECDH (SEC 1 v2 §3.3.1): the 32-byte X coordinate of d * Q, after full public-key
  validation of Q (§3.2.2.1), so an off-curve "invalid curve" point is refused;
* ECDSA-SHA256 signatures as raw r || s (32 + 32 bytes), with the nonce derived
  deterministically per RFC 6979 so a signing run is repeatable (DESIGN.md §5)
  and never depends on the quality of a card's random source.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cardperso.crypto.ciphers import CipherError
from cardperso.crypto.rand import RandomSource

__all__ = [
    "P256_ORDER",
    "p256_ecdh",
    "p256_generate_scalar",
    "p256_public_key",
    "p256_sign",
    "p256_verify",
]

#: Order n of the P-256 base point (NIST SP 800-186, curve P-256).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

_SCALAR_LEN = 32
_POINT_LEN = 65
# A healthy source rejects a candidate with probability ~2^-32; this many in a row
# means the source is broken (e.g. stuck at zero), not unlucky.
_MAX_DRAWS = 64


def p256_generate_scalar(rng: RandomSource) -> bytes:
    """Draw a private scalar from ``rng`` by rejection sampling (cf. FIPS 186-5 A.2.2).

    Candidates are 32 bytes read big-endian; one is kept when 1 <= d < n. Nothing
    is reduced mod n, so the result is unbiased and, for a seeded source, the same
    on every run.
    """
    for _ in range(_MAX_DRAWS):
        candidate = rng.random_bytes(_SCALAR_LEN)
        if len(candidate) != _SCALAR_LEN:
            raise CipherError("random source returned the wrong number of bytes")
        if 1 <= int.from_bytes(candidate, "big") < P256_ORDER:
            return candidate
    raise CipherError("random source yielded no valid P-256 scalar; it looks broken")


def _private_key(d: bytes) -> ec.EllipticCurvePrivateKey:
    if len(d) != _SCALAR_LEN:
        raise CipherError(f"P-256 private scalar must be {_SCALAR_LEN} bytes, not {len(d)}")
    value = int.from_bytes(d, "big")
    if not 1 <= value < P256_ORDER:
        raise CipherError("P-256 private scalar is out of range [1, n-1]")
    return ec.derive_private_key(value, ec.SECP256R1())


def _public_key(public: bytes) -> ec.EllipticCurvePublicKey:
    if len(public) != _POINT_LEN or public[0] != 0x04:
        raise CipherError(
            f"P-256 public key must be a {_POINT_LEN}-byte uncompressed point (04||X||Y)"
        )
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(public))
    except ValueError:
        raise CipherError("P-256 public key is not a point on the curve") from None


def p256_public_key(d: bytes) -> bytes:
    """Q = d * G as a 65-byte uncompressed SEC 1 point 04 || X || Y."""
    return _private_key(d).public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def p256_ecdh(d: bytes, peer_public: bytes) -> bytes:
    """ECDH primitive (SEC 1 v2 §3.3.1; SP 800-56A r3 ECC CDH): X coordinate of d * Q.

    The peer point is validated first; an off-curve or malformed point raises
    :class:`CipherError` rather than leaking bits of d through a weak-curve result.
    The output is a raw shared secret: feed it to a KDF, never use it as a key.
    """
    private = _private_key(d)
    peer = _public_key(peer_public)
    try:
        return private.exchange(ec.ECDH(), peer)
    except ValueError:
        raise CipherError("P-256 ECDH failed for this peer point") from None


def p256_sign(d: bytes, message: bytes) -> bytes:
    """ECDSA over SHA-256 with an RFC 6979 deterministic nonce; returns r || s (64 bytes)."""
    der = _private_key(d).sign(
        bytes(message), ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    )
    r, s = decode_dss_signature(der)
    return r.to_bytes(_SCALAR_LEN, "big") + s.to_bytes(_SCALAR_LEN, "big")


def p256_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Check an r || s ECDSA-SHA256 signature; False for any wrong or malformed one.

    A malformed *public key* is a configuration fault, not a forgery, so it raises
    :class:`CipherError` instead of quietly returning False.
    """
    key = _public_key(public)
    if len(signature) != 2 * _SCALAR_LEN:
        return False
    r = int.from_bytes(signature[:_SCALAR_LEN], "big")
    s = int.from_bytes(signature[_SCALAR_LEN:], "big")
    if not (1 <= r < P256_ORDER and 1 <= s < P256_ORDER):
        return False
    try:
        key.verify(encode_dss_signature(r, s), bytes(message), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
