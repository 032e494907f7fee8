"""Digit handling shared by the PIN and card-verification recipes.

Payment cryptography moves decimal data (PINs, PANs, expiry dates, service codes)
through 64- or 128-bit ciphers as packed BCD, and turns cipher output back into
decimal digits ("decimalization"). The helpers here do exactly that and nothing
else, so each recipe module reads as the steps of its standard.

Every check is strict ASCII: ``str.isdigit`` accepts superscripts and other
scripts' digits, which must never reach a cipher as a nibble. Error messages name
the field and the rule that failed, never the value (DESIGN.md §4).
"""

from __future__ import annotations

import hmac

from cardperso.crypto.rand import RandomSource
from cardperso.errors import CardpersoError

__all__ = [
    "PaymentInputError",
    "check_digits",
    "check_hex",
    "decimalize_table",
    "decimalize_visa",
    "digits_equal",
    "luhn_check_digit",
    "luhn_valid",
    "pack",
    "pan_digits_before_check",
    "random_digits",
    "random_from",
    "xor",
]

_DECIMAL = frozenset("0123456789")
_HEX = frozenset("0123456789ABCDEFabcdef")


class PaymentInputError(CardpersoError, ValueError):
    """Bad input to a payment recipe.

    The message says which field broke which rule; it never quotes a PIN, a PAN,
    a block or key material, so it is safe to log.
    """


def _plural(min_len: int, max_len: int) -> str:
    return f"{min_len}" if min_len == max_len else f"{min_len} to {max_len}"


def check_digits(
    value: str,
    field: str,
    min_len: int,
    max_len: int,
    error: type[PaymentInputError] = PaymentInputError,
) -> str:
    """Return ``value`` if it is ``min_len``..``max_len`` ASCII decimal digits, else raise."""
    if (
        not isinstance(value, str)
        or not min_len <= len(value) <= max_len
        or not all(c in _DECIMAL for c in value)
    ):
        raise error(f"{field} must be {_plural(min_len, max_len)} decimal digits")
    return value


def check_hex(
    value: str,
    field: str,
    min_len: int,
    max_len: int,
    error: type[PaymentInputError] = PaymentInputError,
) -> str:
    """Return ``value`` upper-cased if it is ``min_len``..``max_len`` hex digits, else raise."""
    if (
        not isinstance(value, str)
        or not min_len <= len(value) <= max_len
        or not all(c in _HEX for c in value)
    ):
        raise error(f"{field} must be {_plural(min_len, max_len)} hexadecimal digits")
    return value.upper()


def pack(nibbles: str) -> bytes:
    """Pack an even-length string of hex digits into bytes, one digit per nibble (BCD)."""
    return bytes.fromhex(nibbles)


def xor(a: bytes, b: bytes) -> bytes:
    """Bytewise XOR of two equal-length byte strings."""
    if len(a) != len(b):
        raise ValueError("xor operands differ in length")
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def pan_digits_before_check(pan: str, count: int) -> str:
    """The ``count`` rightmost PAN digits excluding the check digit, zero-padded on the left.

    This is the account-number selection of ISO 9564-1:2017 §9.3 (formats 0 and 3)
    and, with ``count`` = 11, of the Visa PVV transformed security parameter. The
    left padding applies only when the PAN without its check digit is shorter than
    ``count`` (ISO 9564-1 pads such PANs with zeros; Visa PANs are never that short).
    """
    return pan[:-1][-count:].rjust(count, "0")


def decimalize_table(hex_digits: str, table: str) -> str:
    """Map every hex digit through a 16-entry decimalization table (IBM 3624 step 2).

    ``table[i]`` is the decimal digit that hex digit ``i`` becomes (IBM CCA,
    Appendix E, "IBM 3624 PIN-calculation method").
    """
    return "".join(table[int(h, 16)] for h in hex_digits)


def decimalize_visa(hex_digits: str, count: int) -> str:
    """Visa decimalization: ``count`` digits from a hex string, digits first, then letters.

    Scan left to right keeping the decimal digits; if fewer than ``count`` were
    found, scan again keeping only A-F, each reduced by 10 (A->0 ... F->5). The
    same rule serves the Visa PVV and CVV (IBM CCA Appendix E, "VISA PVV
    calculation method" and "CVV and CVC method").
    """
    upper = hex_digits.upper()
    first = [c for c in upper if c in _DECIMAL]
    second = [str(int(c, 16) - 10) for c in upper if c not in _DECIMAL]
    digits = "".join(first + second)
    if len(digits) < count:
        raise ValueError("not enough digits to decimalize")
    return digits[:count]


def luhn_check_digit(digits: str) -> str:
    """The ISO/IEC 7812-1 Annex B (Luhn, modulus 10) check digit for ``digits``."""
    check_digits(digits, "Luhn payload", 1, 64)
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 0:  # the digit next to the check digit is doubled
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str(-total % 10)


def luhn_valid(digits: str) -> bool:
    """True if ``digits`` (at least two ASCII digits) ends in its own Luhn check digit."""
    if (
        not isinstance(digits, str)
        or len(digits) < 2
        or len(digits) > 65
        or not all(c in _DECIMAL for c in digits)
    ):
        return False
    return luhn_check_digit(digits[:-1]) == digits[-1]


def random_from(rng: RandomSource, alphabet: str, count: int) -> str:
    """``count`` symbols drawn uniformly from ``alphabet`` (at most 256 symbols).

    One random byte per candidate; bytes at or above the largest multiple of
    ``len(alphabet)`` are thrown away, so no symbol is favoured (modulo bias would
    otherwise make, e.g., PIN digits 0-5 likelier than 6-9).
    """
    size = len(alphabet)
    if not 1 <= size <= 256:
        raise ValueError("alphabet must hold 1 to 256 symbols")
    limit = 256 - 256 % size
    out: list[str] = []
    while len(out) < count:
        for b in rng.random_bytes(count - len(out)):
            if b < limit:
                out.append(alphabet[b % size])
    return "".join(out)


def random_digits(rng: RandomSource, count: int) -> str:
    """``count`` uniformly random decimal digits from ``rng``."""
    return random_from(rng, "0123456789", count)


def digits_equal(a: str, b: str) -> bool:
    """Compare two ASCII digit strings in time independent of where they differ."""
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))
