"""Visa PIN Verification Value (PVV), the "Visa method" of PIN verification.

The issuer keeps a 4-digit PVV (on track 2 or in its database) instead of the PIN:

1. Transformed security parameter (TSP), 16 decimal digits = one 64-bit block:
   the 11 rightmost PAN digits excluding the check digit, the PIN verification
   key index (PVKI, one digit) and the 4 leftmost PIN digits.
2. Encipher the TSP with the double-length PIN verification key (2-key TDES).
3. Decimalize the 16 hex digits the Visa way: take the decimal digits left to
   right; if fewer than four, continue with the letters A-F left to right, each
   minus 10. The first four digits are the PVV.

Sources: IBM CCA Basic Services, Appendix E, "VISA PIN Validation Value (PVV)
calculation method"; Visa's PIN verification service (the PVKI selects one of
the issuer's PVK pairs; Visa defines 1-6, 0 meaning "no PVV", which is a profile
rule, not checked here).
"""

from __future__ import annotations

from cardperso.crypto.ciphers import BlockCipher
from cardperso.payments._digits import (
    PaymentInputError,
    check_digits,
    decimalize_visa,
    digits_equal,
    pack,
    pan_digits_before_check,
)

__all__ = ["PvvError", "pvv", "verify_pvv"]


class PvvError(PaymentInputError):
    """Bad input to the PVV recipes (never quotes the PIN, PAN or PVV)."""


def _tsp(pan: str, pvki: str, pin: str) -> bytes:
    pan = check_digits(pan, "PAN", 12, 19, PvvError)
    pvki = check_digits(pvki, "PVKI", 1, 1, PvvError)
    pin = check_digits(pin, "PIN", 4, 12, PvvError)
    return pack(pan_digits_before_check(pan, 11) + pvki + pin[:4])


def pvv(pvk: BlockCipher, pan: str, pvki: str, pin: str) -> str:
    """The 4-digit Visa PVV of ``pin`` for ``pan`` under the PVK pair selected by ``pvki``.

    Only the 4 leftmost PIN digits take part (so longer PINs share a PVV with
    their first four digits).
    """
    if pvk.algorithm != "TDES" or pvk.block_size != 8:
        raise PvvError("the PIN verification key must be a double-length TDES key")
    return decimalize_visa(pvk.encrypt_ecb(_tsp(pan, pvki, pin)).hex(), 4)


def verify_pvv(pvk: BlockCipher, pan: str, pvki: str, pin: str, reference_pvv: str) -> bool:
    """True if ``pin`` reproduces ``reference_pvv`` (constant-time compare)."""
    reference = check_digits(reference_pvv, "PVV", 4, 4, PvvError)
    return digits_equal(pvv(pvk, pan, pvki, pin), reference)
