"""EMV card keys: ICC master keys from an issuer master key, and session keys.

An issuer keeps one *issuer master key* (IMK) per purpose (application
cryptograms, secure-messaging integrity, secure-messaging confidentiality). At
personalization every card gets its own *ICC master key* derived from the IMK and
the card's PAN and PAN sequence number, so a key pulled out of one card opens no
other card. For each transaction the card and the issuer then derive a *session
key* from the ICC master key and the Application Transaction Counter (ATC).

Methods (EMV 4.4 Book 2, Annex A1):

* :func:`derive_icc_mk_a` - Option A (A1.4.1): the 16 rightmost digits of
  PAN || PSN, enciphered with the IMK, once as they are and once inverted.
* :func:`derive_icc_mk_b` - Option B (A1.4.2), for PANs longer than 16 digits:
  SHA-1 of PAN || PSN, decimalized to 16 digits, then Option A on those digits.
  For PANs of 16 digits or fewer Option B *is* Option A.
* :func:`derive_common_session_key` - the common session key derivation
  (A1.3.1) from an 8-byte diversification value R; :func:`derive_session_key`
  is its ATC form, R = ATC || 00 00 00 00 00 00 (the application cryptogram key).
* :func:`generate_ac` - an application cryptogram (ARQC/TC/AAC, Book 2 §8.1.2):
  ISO/IEC 9797-1 MAC algorithm 3 with single DES under the session key.

Master keys arrive as :class:`~cardperso.crypto.ciphers.BlockCipher` objects
(possibly a security-module handle). The derived keys come back as bytes with
odd DES parity; they never appear in an exception message.
"""

from __future__ import annotations

import hashlib

from cardperso.crypto.ciphers import DES, BlockCipher
from cardperso.crypto.mac import mac_alg3
from cardperso.crypto.parity import adjust_des_parity
from cardperso.payments._digits import (
    PaymentInputError,
    check_digits,
    decimalize_visa,
    pack,
    xor,
)

__all__ = [
    "EmvKeyError",
    "derive_common_session_key",
    "derive_icc_mk_a",
    "derive_icc_mk_b",
    "derive_session_key",
    "generate_ac",
]

_PAN_MIN = 1
_PAN_MAX = 19  # ISO/IEC 7812-1: at most 19 digits
_INVERT = b"\xff" * 8


class EmvKeyError(PaymentInputError):
    """Bad input to an EMV key derivation (never shows key, PAN or PSN values)."""


def _require_tdes(cipher: BlockCipher, role: str) -> None:
    if cipher.algorithm != "TDES":
        raise EmvKeyError(f"{role} must be a double-length TDES key, not {cipher.algorithm}")


def _check_pan_psn(pan: str, psn: str) -> None:
    check_digits(pan, "PAN", _PAN_MIN, _PAN_MAX, EmvKeyError)
    check_digits(psn, "PAN sequence number", 2, 2, EmvKeyError)


def _option_a_from_digits(imk: BlockCipher, digits16: str) -> bytes:
    """Annex A1.4.1 steps 2-3: Z_L = E(Y), Z_R = E(Y xor FF..FF), odd parity."""
    y = pack(digits16)
    z = imk.encrypt_ecb(y + xor(y, _INVERT))
    return adjust_des_parity(z)


def derive_icc_mk_a(imk: BlockCipher, pan: str, psn: str = "00") -> bytes:
    """ICC master key by EMV Book 2 Annex A1.4.1 (Option A).

    ``Y`` is the 16 rightmost digits of ``PAN || PSN`` (left-padded with zeros
    when shorter), packed into 8 bytes. The master key is
    ``DES3(IMK)[Y] || DES3(IMK)[Y xor FF..FF]`` with each byte set to odd
    parity: a 16-byte, double-length TDES key.

    ``psn`` is the two-digit PAN sequence number, ``"00"`` when the card has
    none. ``imk`` must be a TDES cipher.

    >>> from cardperso.crypto.ciphers import TDES
    >>> imk = TDES(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"))
    >>> derive_icc_mk_a(imk, "12345678901234567", "01").hex().upper()
    '73AD54688CEF2934B0979857E3C719F1'
    """
    _require_tdes(imk, "issuer master key")
    _check_pan_psn(pan, psn)
    digits = (pan + psn)[-16:].rjust(16, "0")
    return _option_a_from_digits(imk, digits)


def derive_icc_mk_b(imk: BlockCipher, pan: str, psn: str = "00") -> bytes:
    """ICC master key by EMV Book 2 Annex A1.4.2 (Option B).

    For a PAN of at most 16 digits this is Option A (A1.4.2: "If the PAN is 16
    digits or less, Option A is used"). Otherwise:

    1. ``X = PAN || PSN``, left-padded with one ``0`` to an even number of
       digits and packed as BCD; ``Y = SHA-1(X)``, 20 bytes.
    2. Decimalize ``Y``: scan its 40 hex digits left to right keeping the
       decimal digits; if fewer than 16 are found, scan again converting the
       letters A-F to 0-5; keep the first 16 digits.
    3. Run Option A with those 16 digits as ``Y``.

    >>> from cardperso.crypto.ciphers import TDES
    >>> imk = TDES(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"))
    >>> derive_icc_mk_b(imk, "12345678901234567", "01").hex().upper()
    'AD406D7F6D7570916D75E5DCAB8CF737'
    """
    _require_tdes(imk, "issuer master key")
    _check_pan_psn(pan, psn)
    if len(pan) <= 16:
        return _option_a_from_digits(imk, (pan + psn)[-16:].rjust(16, "0"))
    x = pan + psn
    if len(x) % 2:
        x = "0" + x
    digest = hashlib.sha1(pack(x)).hexdigest()  # noqa: S324 - A1.4.2 specifies SHA-1
    return _option_a_from_digits(imk, decimalize_visa(digest, 16))


def derive_common_session_key(icc_mk: BlockCipher, r: bytes) -> bytes:
    """Session key by the EMV common session key derivation (Book 2 Annex A1.3.1).

    With the 8-byte diversification value ``R = R0 .. R7``::

        SK = DES3(MK)[R0 R1 F0 R3 .. R7] || DES3(MK)[R0 R1 0F R3 .. R7]

    returned as 16 bytes with odd parity. For application cryptograms R is the
    ATC followed by six zero bytes (:func:`derive_session_key`); for secure
    messaging it is the ARQC.
    """
    _require_tdes(icc_mk, "ICC master key")
    if len(r) != 8:
        raise EmvKeyError(f"diversification value R must be 8 bytes, not {len(r)}")
    left = bytes(r[:2]) + b"\xf0" + bytes(r[3:])
    right = bytes(r[:2]) + b"\x0f" + bytes(r[3:])
    return adjust_des_parity(icc_mk.encrypt_ecb(left + right))


def derive_session_key(icc_mk: BlockCipher, atc: bytes) -> bytes:
    """Application-cryptogram session key for one transaction (Book 2 A1.3.1).

    ``atc`` is the 2-byte Application Transaction Counter; the diversification
    value is ``R = ATC || 00 00 00 00 00 00``.
    """
    if len(atc) != 2:
        raise EmvKeyError(f"ATC must be 2 bytes, not {len(atc)}")
    return derive_common_session_key(icc_mk, bytes(atc) + bytes(6))


def generate_ac(sk_ac: bytes, data: bytes, *, padding: int = 2) -> bytes:
    """Application cryptogram (ARQC, TC or AAC) per EMV Book 2 §8.1.2 and Annex A1.2.

    ISO/IEC 9797-1 MAC algorithm 3 with single DES: CBC-MAC under the left half
    of the 16-byte session key ``sk_ac``, output transformation with the right
    half. ``padding`` is the ISO/IEC 9797-1 padding method: 2 (``80 00 ..``, the
    method of Annex A1.2) by default, or 1 (zeros) for cryptogram versions that
    use it (e.g. Visa CVN 10). The cryptogram is the 8-byte MAC.
    """
    if len(sk_ac) != 16:
        raise EmvKeyError(f"session key must be 16 bytes, not {len(sk_ac)}")
    if padding not in (1, 2):
        raise EmvKeyError(f"padding method must be 1 or 2, not {padding}")
    return mac_alg3(DES(sk_ac[:8]), DES(sk_ac[8:]), data, padding)
