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
from cryptography.hazmat.primitives.cmac import CMAC as _CMAC

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
    """Shared ECB/CBC/CMAC plumbing over one ``cryptography`` algorithm object.

    Building a ``cryptography`` cipher context costs far more than the few blocks
    a card protocol feeds it (~15x an ECB block), so each key keeps, built on
    first use and reused for the object's lifetime:

    * one ECB encryptor and one ECB decryptor (ECB is stateless between blocks);
    * one CBC encryptor and one CBC decryptor, each a running chain. A running CBC
      chain stands at its last ciphertext block S; fixing up the first block with
      S XOR IV turns the next call into a fresh CBC under IV (encrypt: feed
      P1 XOR S XOR IV; decrypt: XOR the first output block with S XOR IV);
    * one CMAC context that is never fed, only copied (``cryptography``'s CMAC).

    A lock per key serializes the chained contexts, so a shared key is safe under
    threads; a context whose call failed is dropped and rebuilt."""

    __slots__ = (
        "_algo",
        "_cbc_d",
        "_cbc_d_s",
        "_cbc_e",
        "_cbc_e_s",
        "_cmac_base",
        "_dec",
        "_enc",
        "_lock",
    )
    _name = "?"
    _block = 0

    def __init__(self, algo: algorithms.AES | _TripleDES) -> None:
        self._algo = algo
        self._enc: Any = None
        self._dec: Any = None
        self._cbc_e: Any = None
        self._cbc_d: Any = None
        self._cbc_e_s = 0  # the running CBC chains' last ciphertext block, as an int
        self._cbc_d_s = 0
        self._cmac_base: _CMAC | None = None
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

    def _iv(self, iv: bytes | None) -> int:
        """The IV as an int (0 for none), after checking its length."""
        if iv is None:
            return 0
        if len(iv) != self._block:
            raise CipherError(f"{self._name}: IV must be {self._block} bytes")
        return int.from_bytes(iv, "big")

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

    def _cbc(self, decrypt: bool) -> Any:
        """A new CBC context with a zero IV (its chain starts at S = 0)."""
        c = Cipher(self._algo, modes.CBC(bytes(self._block)))
        return c.decryptor() if decrypt else c.encryptor()

    def encrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes:
        self._check(data)
        v = self._iv(iv)
        bs = self._block
        if not data:
            return b""
        with self._lock:
            ctx = self._cbc_e
            if ctx is None:
                ctx, self._cbc_e_s = self._cbc(False), 0
            self._cbc_e = None  # only a call that completes puts the chain back
            first = int.from_bytes(data[:bs], "big") ^ v ^ self._cbc_e_s
            out: bytes = ctx.update(first.to_bytes(bs, "big") + data[bs:])
            self._cbc_e, self._cbc_e_s = ctx, int.from_bytes(out[-bs:], "big")
        return out

    def decrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes:
        self._check(data)
        v = self._iv(iv)
        bs = self._block
        if not data:
            return b""
        with self._lock:
            ctx = self._cbc_d
            if ctx is None:
                ctx, self._cbc_d_s = self._cbc(True), 0
            self._cbc_d = None  # only a call that completes puts the chain back
            out: bytes = ctx.update(data)
            first = int.from_bytes(out[:bs], "big") ^ v ^ self._cbc_d_s
            self._cbc_d, self._cbc_d_s = ctx, int.from_bytes(data[-bs:], "big")
        return first.to_bytes(bs, "big") + out[bs:]

    def _cmac(self, data: bytes) -> bytes:
        """Full-block CMAC by ``cryptography`` (SP 800-38B); see :func:`cardperso.crypto.mac.cmac`.

        The base context holds only the key schedule and subkeys and is never fed;
        each call works on a copy of it, so no lock is needed.
        """
        base = self._cmac_base
        if base is None:
            base = self._cmac_base = _CMAC(self._algo)
        ctx = base.copy()
        ctx.update(data if isinstance(data, bytes) else bytes(data))
        return ctx.finalize()


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
