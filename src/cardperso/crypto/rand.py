"""Injected randomness: every consumer takes a :class:`RandomSource`.

Production uses :class:`SystemRandom` (the OS CSPRNG). Tests, golden runs and the
card-stock factory use :class:`SeededRandom`, so a seeded run is byte-for-byte
repeatable (DESIGN.md §5). SeededRandom is AES-256 in counter mode keyed by
SHA-256 of the seed: a deterministic generator of cryptographic quality, but its
output is only as secret as its seed, so it is never the production default.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["RandomSource", "SeededRandom", "SystemRandom"]


@runtime_checkable
class RandomSource(Protocol):
    """Something that yields random bytes."""

    def random_bytes(self, n: int) -> bytes: ...


class SystemRandom:
    """The operating system's CSPRNG."""

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def __repr__(self) -> str:
        return "SystemRandom()"


class SeededRandom:
    """Deterministic stream from a seed (AES-256-CTR over SHA-256(seed)); thread-safe."""

    def __init__(self, seed: bytes | str | int) -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes((seed.bit_length() + 8) // 8, "big", signed=True)
        elif isinstance(seed, str):
            seed = seed.encode()
        key = hashlib.sha256(b"cardperso-seeded-random|" + seed).digest()
        self._enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
        self._lock = threading.Lock()

    def random_bytes(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            return self._enc.update(bytes(n))

    def fork(self, label: str) -> SeededRandom:
        """An independent stream derived from this one (e.g. one per card)."""
        return SeededRandom(self.random_bytes(32) + label.encode())

    def __repr__(self) -> str:
        return "SeededRandom(...)"
