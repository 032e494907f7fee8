"""Cardholder data at rest: sealed fields, masked PANs, keyed digests.

The production database never holds a clear cardholder record or PAN (DESIGN.md §4).
A :class:`FieldCipher` seals each record (AEAD, with associated data naming the row
it belongs to, so a sealed blob moved to another row no longer opens) and computes
a keyed digest of the PAN, which finds duplicates without storing the PAN.

:class:`SoftFieldCipher` does this in-process with AES-256-GCM and HMAC-SHA-256 over
keys handed in as a :class:`FieldKeys` parameter object. The HSM replaces it with
an implementation holding key *handles*; nothing here imports the HSM, and nothing
above this module sees which one it has.

Sealed format (version 1)::

    0x01 | len(key_id) (1 byte) | key_id (ASCII) | nonce (12) | ciphertext | tag (16)

The header (version and key id) is part of the associated data, so it cannot be
edited either. The key id says which key opens a blob during a key rotation.
"""

from __future__ import annotations

import hashlib
import hmac
from abc import ABC, abstractmethod
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cardperso.crypto.rand import RandomSource, SystemRandom
from cardperso.crypto.secret import SecretBytes
from cardperso.errors import CardpersoError, InputError

__all__ = [
    "FieldCipher",
    "FieldCipherError",
    "FieldKeys",
    "SoftFieldCipher",
    "mask_pan",
    "normalize_pan",
    "pan_digest",
]

FORMAT_V1 = 0x01
NONCE_LEN = 12
TAG_LEN = 16
PAN_MIN, PAN_MAX = 12, 19  # ISO/IEC 7812-1 PAN lengths (8 to 19; card schemes use 12+)


class FieldCipherError(CardpersoError):
    """A sealed field cannot be opened (wrong key, wrong row, or tampered)."""

    exit_code = 5


class FieldCipher(ABC):
    """Seal/open cardholder fields and compute keyed digests; keys never leave it."""

    @property
    @abstractmethod
    def key_id(self) -> str:
        """Short public name of the key in use (label; never key material)."""

    @abstractmethod
    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext``, bound to ``aad``."""

    @abstractmethod
    def open(self, sealed: bytes, aad: bytes) -> bytes:
        """Inverse of :meth:`seal`; raises :class:`FieldCipherError` on any mismatch."""

    @abstractmethod
    def digest(self, purpose: str, data: bytes) -> bytes:
        """A 32-byte keyed digest of ``data`` (deterministic, not reversible)."""


@dataclass(frozen=True, repr=False)
class FieldKeys:
    """The soft cipher's keys: 32-byte AES-GCM and HMAC keys and their public id."""

    key_id: str
    enc_key: SecretBytes
    mac_key: SecretBytes

    def __post_init__(self) -> None:
        if not (1 <= len(self.key_id) <= 64 and self.key_id.isascii()):
            raise ValueError("key_id must be 1..64 ASCII characters")
        if len(self.enc_key) != 32 or len(self.mac_key) != 32:
            raise ValueError("field keys must be 32 bytes each")
        if self.enc_key == self.mac_key:
            raise ValueError("the encryption and digest keys must differ")

    @classmethod
    def generate(cls, key_id: str, rng: RandomSource | None = None) -> FieldKeys:
        rng = rng or SystemRandom()
        return cls(key_id, SecretBytes(rng.random_bytes(32)), SecretBytes(rng.random_bytes(32)))

    def __repr__(self) -> str:
        return f"FieldKeys(key_id={self.key_id!r}, <redacted>)"


class SoftFieldCipher(FieldCipher):
    """AES-256-GCM sealing and HMAC-SHA-256 digests with in-process keys."""

    def __init__(self, keys: FieldKeys, rng: RandomSource | None = None) -> None:
        self._keys = keys
        self._aead = AESGCM(keys.enc_key.reveal())
        self._rng = rng or SystemRandom()
        kid = keys.key_id.encode("ascii")
        self._header = bytes([FORMAT_V1, len(kid)]) + kid

    @property
    def key_id(self) -> str:
        return self._keys.key_id

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = self._rng.random_bytes(NONCE_LEN)
        return self._header + nonce + self._aead.encrypt(nonce, plaintext, self._header + aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        head = len(self._header)
        if len(sealed) < head + NONCE_LEN + TAG_LEN or sealed[:1] != bytes([FORMAT_V1]):
            raise FieldCipherError("sealed field: unknown format")
        if not hmac.compare_digest(sealed[:head], self._header):
            raise FieldCipherError("sealed field: sealed under another key")
        nonce = sealed[head : head + NONCE_LEN]
        try:
            return self._aead.decrypt(nonce, sealed[head + NONCE_LEN :], self._header + aad)
        except InvalidTag:
            raise FieldCipherError("sealed field: authentication failed") from None

    def digest(self, purpose: str, data: bytes) -> bytes:
        msg = b"cardperso-field-digest|" + purpose.encode() + b"|" + data
        return hmac.new(self._keys.mac_key.reveal(), msg, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"SoftFieldCipher(key_id={self.key_id!r})"


def normalize_pan(pan: str) -> str:
    """The PAN's digits (spaces and dashes removed); refuses anything else.

    The error names the field, never the value.
    """
    digits = pan.replace(" ", "").replace("-", "")
    if not (digits.isascii() and digits.isdigit() and PAN_MIN <= len(digits) <= PAN_MAX):
        raise InputError(f"PAN must be {PAN_MIN} to {PAN_MAX} digits", field="pan")
    return digits


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits shown, every other digit as ``*``."""
    digits = normalize_pan(pan)
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def pan_digest(cipher: FieldCipher, pan: str) -> bytes:
    """The keyed digest used to find a PAN again (duplicate detection, look-ups)."""
    return cipher.digest("pan", normalize_pan(pan).encode("ascii"))
