"""Block ciphers behind one small interface (the "hazmat" layer).

Everything above this module (MACs, KDFs, payment recipes, the card OS) is
written against :class:`BlockCipher`, so the same recipe code runs over an
in-process key or, later, a key handle inside a security module.

This is the single place that touches the ``cryptography`` package's
TripleDES, which lives in its ``decrepit`` module; single DES (still needed
by ISO/IEC 9797-1 MAC algorithm 3 and Visa CVV/PVV) is run as 3DES with
K1 = K2 = K3, which is the same permutation (FIPS 46-3 / SP 800-67 keying
option 3).
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES as _TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["AES", "DES", "TDES", "BlockCipher", "CipherError"]


class CipherError(ValueError):
    """Bad key length or data not a whole number of blocks (never shows key bytes)."""


@runtime_checkable
class BlockCipher(Protocol):
    """A keyed block cipher. Implementations never expose their key bytes."""

    @property
    def block_size(self) -> int:
        """Block size in bytes (8 for DES/3DES, 16 for AES)."""
        ...

    @property
    def algorithm(self) -> str:
        """Short algorithm name: "DES", "TDES" or "AES"."""
        ...

    @property
    def key_length(self) -> int:
        """Key length in bytes (8, 16, 24 or 32): recipes need it for derivation
        lengths and algorithm indicators; it reveals nothing about the key."""
        ...

    def encrypt_ecb(self, data: bytes) -> bytes: ...

    def decrypt_ecb(self, data: bytes) -> bytes: ...

    def encrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes: ...

    def decrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes: ...


class _Cipher:
    """Shared ECB/CBC plumbing over one ``cryptography`` algorithm object.

    ECB is stateless between whole blocks, so one encryptor and one decryptor
    context per key are kept and reused (building a context costs ~15x a block);
    a lock keeps a shared key safe under threads."""

    __slots__ = ("_algo", "_dec", "_enc", "_lock")
    _name = "?"
    _block = 0

    def __init__(self, algo: algorithms.AES | _TripleDES) -> None:
        self._algo = algo
        self._enc: Any = None
        self._dec: Any = None
        self._lock = threading.Lock()

    @property
    def block_size(self) -> int:
        return self._block

    @property
    def algorithm(self) -> str:
        return self._name

    @property
    def key_length(self) -> int:
        """Key length in bytes as the caller gave it (for checks, not secret)."""
        return len(self._algo.key) if self._name != "DES" else 8

    def __repr__(self) -> str:
        return f"<{self._name} key=[redacted]>"

    __str__ = __repr__

    def _check(self, data: bytes) -> None:
        if len(data) % self._block:
            raise CipherError(
                f"{self._name}: data length {len(data)} is not a multiple of {self._block}"
            )

    def _iv(self, iv: bytes | None) -> bytes:
        if iv is None:
            return bytes(self._block)
        if len(iv) != self._block:
            raise CipherError(f"{self._name}: IV must be {self._block} bytes")
        return iv

    def encrypt_ecb(self, data: bytes) -> bytes:
        self._check(data)
        with self._lock:
            if self._enc is None:
                self._enc = Cipher(self._algo, modes.ECB()).encryptor()  # noqa: S305 - block primitive
            out: bytes = self._enc.update(data)
        return out

    def decrypt_ecb(self, data: bytes) -> bytes:
        self._check(data)
        with self._lock:
            if self._dec is None:
                self._dec = Cipher(self._algo, modes.ECB()).decryptor()  # noqa: S305 - block primitive
            out: bytes = self._dec.update(data)
        return out

    def encrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes:
        self._check(data)
        enc = Cipher(self._algo, modes.CBC(self._iv(iv))).encryptor()
        return enc.update(data) + enc.finalize()

    def decrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes:
        self._check(data)
        dec = Cipher(self._algo, modes.CBC(self._iv(iv))).decryptor()
        return dec.update(data) + dec.finalize()


class AES(_Cipher):
    """AES-128/192/256 (FIPS 197)."""

    __slots__ = ()
    _name = "AES"
    _block = 16

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise CipherError(f"AES key must be 16, 24 or 32 bytes, not {len(key)}")
        super().__init__(algorithms.AES(bytes(key)))


class TDES(_Cipher):
    """Triple DES, 2-key (16 bytes, K3 = K1) or 3-key (24 bytes) (NIST SP 800-67)."""

    __slots__ = ("_len",)
    _name = "TDES"
    _block = 8

    def __init__(self, key: bytes) -> None:
        if len(key) == 16:
            full = bytes(key) + bytes(key[:8])
        elif len(key) == 24:
            full = bytes(key)
        else:
            raise CipherError(f"TDES key must be 16 or 24 bytes, not {len(key)}")
        super().__init__(_TripleDES(full))
        self._len = len(key)

    @property
    def key_length(self) -> int:
        return self._len


class DES(_Cipher):
    """Single DES (FIPS 46-3), only where a standard still requires it."""

    __slots__ = ()
    _name = "DES"
    _block = 8

    def __init__(self, key: bytes) -> None:
        if len(key) != 8:
            raise CipherError(f"DES key must be 8 bytes, not {len(key)}")
        super().__init__(_TripleDES(bytes(key) * 3))
