"""DES key parity (FIPS 46-3; NIST SP 800-67r2, the key bundle's parity bits).

Each byte of a DES key carries seven key bits and, in its least significant bit, a
parity bit chosen so that the byte has an odd number of ones. The cipher ignores
the parity bits, but key-entry ceremonies, HSMs and card personalization checks
reject keys whose parity is wrong, so derived and combined keys are adjusted.
"""

from __future__ import annotations

__all__ = ["adjust_des_parity", "has_odd_parity"]


def adjust_des_parity(key: bytes) -> bytes:
    """Return ``key`` with each byte's low bit set so the byte has odd parity."""
    return bytes(b ^ 1 if b.bit_count() % 2 == 0 else b for b in key)


def has_odd_parity(key: bytes) -> bool:
    """True if every byte of ``key`` has an odd number of one bits (empty key: False)."""
    return len(key) > 0 and all(b.bit_count() % 2 for b in key)
