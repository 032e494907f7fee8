"""IBM 3624 PIN generation and PIN offset (IBM CCA Basic Services, Appendix E).

The 3624 method derives a *natural* PIN from account data under a PIN derivation
key (PDK), so the issuer never stores PINs. A customer-selected or random PIN is
related to the natural PIN by a public *offset*, stored on the card record:

1. Validation data (1-16 hex digits, usually taken from the PAN) is padded on the
   right with the pad character to 16 hex digits = one 64-bit block.
2. That block is enciphered with the PDK (single or double length DES).
3. Each hex digit of the ciphertext is mapped through the 16-digit
   decimalization table; the leftmost *n* digits are the natural PIN.
4. Offset = customer PIN - natural PIN, digit by digit modulo 10 (no borrow);
   customer PIN = natural PIN + offset, digit by digit modulo 10 (no carry).

Which PAN digits form the validation data, the pad character and the table are
issuer parameters from the card profile; the recipe takes them as given.
Decimalization tables are a known attack surface (Bond and Zieliński, 2003):
callers must not accept a table from an untrusted request.
"""

from __future__ import annotations

from cardperso.crypto.ciphers import BlockCipher
from cardperso.payments._digits import (
    PaymentInputError,
    check_digits,
    check_hex,
    decimalize_table,
    digits_equal,
    pack,
)

__all__ = [
    "PIN_MAX_LENGTH",
    "PIN_MIN_LENGTH",
    "Ibm3624Error",
    "natural_pin",
    "offset_from_pin",
    "pin_from_offset",
    "verify_offset",
]

PIN_MIN_LENGTH = 4
"""Shortest 3624 PIN (IBM CCA: 4 to 16 digits)."""
PIN_MAX_LENGTH = 16
"""Longest 3624 PIN; note an ISO 9564-1 PIN block carries at most 12 digits."""


class Ibm3624Error(PaymentInputError):
    """Bad input to the IBM 3624 recipes (never quotes a PIN, offset or account data)."""


def _natural_digits(
    pdk: BlockCipher, validation_data: str, decimalization_table: str, pad: str
) -> str:
    """Steps 1-3 for all 16 digits; callers keep the leftmost n."""
    if pdk.block_size != 8 or pdk.algorithm not in ("DES", "TDES"):
        raise Ibm3624Error("the PIN derivation key must be a DES or TDES key")
    data = check_hex(validation_data, "validation data", 1, 16, Ibm3624Error)
    pad = check_hex(pad, "pad character", 1, 1, Ibm3624Error)
    table = check_digits(decimalization_table, "decimalization table", 16, 16, Ibm3624Error)
    enciphered = pdk.encrypt_ecb(pack(data.ljust(16, pad)))
    return decimalize_table(enciphered.hex().upper(), table)


def _check_length(length: int) -> int:
    if not isinstance(length, int) or not PIN_MIN_LENGTH <= length <= PIN_MAX_LENGTH:
        raise Ibm3624Error(f"PIN length must be {PIN_MIN_LENGTH} to {PIN_MAX_LENGTH}")
    return length


def _add(a: str, b: str) -> str:
    return "".join(str((int(x) + int(y)) % 10) for x, y in zip(a, b, strict=True))


def _sub(a: str, b: str) -> str:
    return "".join(str((int(x) - int(y)) % 10) for x, y in zip(a, b, strict=True))


def natural_pin(
    pdk: BlockCipher,
    validation_data: str,
    decimalization_table: str,
    pin_length: int,
    pad: str = "F",
) -> str:
    """The natural (intermediate) PIN of ``pin_length`` digits: steps 1-3 above."""
    length = _check_length(pin_length)
    return _natural_digits(pdk, validation_data, decimalization_table, pad)[:length]


def offset_from_pin(
    pdk: BlockCipher,
    validation_data: str,
    decimalization_table: str,
    pin: str,
    pad: str = "F",
) -> str:
    """The offset that turns the natural PIN into ``pin`` (same length as ``pin``)."""
    pin = check_digits(pin, "PIN", PIN_MIN_LENGTH, PIN_MAX_LENGTH, Ibm3624Error)
    natural = _natural_digits(pdk, validation_data, decimalization_table, pad)[: len(pin)]
    return _sub(pin, natural)


def pin_from_offset(
    pdk: BlockCipher,
    validation_data: str,
    decimalization_table: str,
    offset: str,
    pad: str = "F",
) -> str:
    """The customer PIN for ``offset``: natural PIN + offset; its length is the offset's.

    An all-zero offset yields the natural PIN itself.
    """
    offset = check_digits(offset, "offset", PIN_MIN_LENGTH, PIN_MAX_LENGTH, Ibm3624Error)
    natural = _natural_digits(pdk, validation_data, decimalization_table, pad)[: len(offset)]
    return _add(natural, offset)


def verify_offset(
    pdk: BlockCipher,
    validation_data: str,
    decimalization_table: str,
    pin: str,
    offset: str,
    pad: str = "F",
) -> bool:
    """True if ``pin`` is the PIN that ``offset`` designates (constant-time compare).

    A PIN of a different length than the offset is simply a wrong PIN.
    """
    pin = check_digits(pin, "PIN", PIN_MIN_LENGTH, PIN_MAX_LENGTH, Ibm3624Error)
    expected = pin_from_offset(pdk, validation_data, decimalization_table, offset, pad)
    return digits_equal(expected, pin)
