"""Visa Card Verification Value: CVV (CVV1), CVV2 and iCVV (Mastercard: CVC1/CVC2/chip CVC).

One algorithm, three uses, told apart only by the service code fed into it:

* **CVV** - the track 1/2 value; uses the card's real service code (e.g. 101, 201).
* **CVV2** - the value printed on the card; service code ``000``.
* **iCVV** - the value in the chip's track 2 equivalent data; service code ``999``,
  so a track skimmed from the chip does not carry a valid magnetic-stripe CVV.

The algorithm (IBM CCA Basic Services, Appendix E, "CVV and CVC method"), with
CVK-A and CVK-B the two halves of the issuer's card verification key pair:

1. Write PAN, expiry date (YYMM) and service code one after another as decimal
   digits and pad on the right with ``0`` to 32 digits; pack them as BCD into two
   8-byte blocks, *left* and *right*.
2. Encipher *left* with single DES under CVK-A.
3. XOR the result with *right*.
4. Encipher that with 2-key triple DES under CVK-A||CVK-B (encipher A, decipher
   B, encipher A).
5. Decimalize the 16 hex digits of the result the Visa way (decimal digits left
   to right, then the letters A-F left to right each minus 10) and keep the first
   three digits.

The recipe receives the keys as two cipher objects made by a security-module
backend from one CVK pair: ``key_a`` (single DES, CVK-A) for step 2 and
``key_ab`` (TDES, CVK-A||CVK-B) for step 4. Most schemes compute CVV2 over the
YYMM expiry as well; an issuer whose profile says MMYY passes that instead - the
recipe only checks for four digits.
"""

from __future__ import annotations

from cardperso.crypto.ciphers import BlockCipher
from cardperso.payments._digits import (
    PaymentInputError,
    check_digits,
    decimalize_visa,
    digits_equal,
    pack,
    xor,
)

__all__ = [
    "CVV2_SERVICE_CODE",
    "ICVV_SERVICE_CODE",
    "CvvError",
    "cvv",
    "cvv2",
    "icvv",
    "verify_cvv",
]

CVV2_SERVICE_CODE = "000"
"""Service code that turns the CVV algorithm into CVV2."""
ICVV_SERVICE_CODE = "999"
"""Service code that turns the CVV algorithm into iCVV."""


class CvvError(PaymentInputError):
    """Bad input to the CVV recipes (never quotes the PAN or a CVV)."""


def cvv(
    key_a: BlockCipher,
    key_ab: BlockCipher,
    pan: str,
    expiry_yymm: str,
    service_code: str,
) -> str:
    """The 3-digit CVV of ``pan``/``expiry_yymm``/``service_code`` (steps 1-5 above)."""
    if key_a.algorithm != "DES" or key_a.block_size != 8:
        raise CvvError("key_a must be the single-length DES key CVK-A")
    if key_ab.algorithm != "TDES" or key_ab.block_size != 8:
        raise CvvError("key_ab must be the double-length TDES key CVK-A||CVK-B")
    pan = check_digits(pan, "PAN", 12, 19, CvvError)
    expiry = check_digits(expiry_yymm, "expiry date", 4, 4, CvvError)
    code = check_digits(service_code, "service code", 3, 3, CvvError)
    data = pack((pan + expiry + code).ljust(32, "0"))
    left, right = data[:8], data[8:]
    result = key_ab.encrypt_ecb(xor(key_a.encrypt_ecb(left), right))
    return decimalize_visa(result.hex(), 3)


def cvv2(key_a: BlockCipher, key_ab: BlockCipher, pan: str, expiry_yymm: str) -> str:
    """CVV2: the CVV with service code ``000``."""
    return cvv(key_a, key_ab, pan, expiry_yymm, CVV2_SERVICE_CODE)


def icvv(key_a: BlockCipher, key_ab: BlockCipher, pan: str, expiry_yymm: str) -> str:
    """iCVV: the CVV with service code ``999``."""
    return cvv(key_a, key_ab, pan, expiry_yymm, ICVV_SERVICE_CODE)


def verify_cvv(
    key_a: BlockCipher,
    key_ab: BlockCipher,
    pan: str,
    expiry_yymm: str,
    service_code: str,
    value: str,
) -> bool:
    """True if ``value`` is the CVV for these data (constant-time compare).

    Verify a CVV2 with service code ``000`` and an iCVV with ``999``.
    """
    value = check_digits(value, "CVV", 3, 3, CvvError)
    return digits_equal(cvv(key_a, key_ab, pan, expiry_yymm, service_code), value)
