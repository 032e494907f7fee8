"""Static key diversification of a card's GlobalPlatform keys from a master key.

A bureau does not store one key set per card: it keeps a master key (KMC) and
derives each card's K_ENC, K_MAC and K_DEK from it and the *key diversification
data* the card returns in the first 10 bytes of its INITIALIZE UPDATE response
(GlobalPlatform Card Specification v2.3.1 §11.8, INITIALIZE UPDATE). Two layouts of the
16-byte derivation block are in use; both encipher it with the 3DES master key in
ECB mode and take the 16-byte result as the card key:

* **EMV CPS** (EMV Card Personalization Specification v1.1 §5.3, derivation of
  KENC/KMAC/KDEK from KMC and "KEYDATA"): the six rightmost bytes of the
  diversification data::

      KDD[4..9] || F0 || type || KDD[4..9] || 0F || type

* **VISA2** (Visa GlobalPlatform 2.1.1 Card Implementation Requirements; the
  diversification data there is the last two bytes of the card manager AID, then
  two bytes of IC fabrication data, then the four-byte IC serial number)::

      KDD[0..1] || KDD[4..7] || F0 || type || KDD[0..1] || KDD[4..7] || 0F || type

``type`` is 01 for K_ENC, 02 for K_MAC and 03 for K_DEK (:class:`KeyType`).

The card keys come back as bytes exactly as enciphered (the parity bits are not
adjusted: cards and the published vectors use the raw result, and DES ignores
parity). They never appear in an exception message.
"""

from __future__ import annotations

from enum import IntEnum

from cardperso.crypto.ciphers import BlockCipher
from cardperso.payments._digits import PaymentInputError

__all__ = [
    "DIVERSIFICATION_DATA_LENGTH",
    "DiversificationError",
    "KeyType",
    "diversify_emv",
    "diversify_keyset",
    "diversify_visa2",
]

DIVERSIFICATION_DATA_LENGTH = 10


class DiversificationError(PaymentInputError):
    """Bad input to a key diversification (never shows key material)."""


class KeyType(IntEnum):
    """The card key a diversification produces (its derivation constant)."""

    ENC = 1
    MAC = 2
    DEK = 3


def _check(master: BlockCipher, div_data: bytes, key_type: int) -> KeyType:
    if master.algorithm != "TDES":
        raise DiversificationError(f"master key must be a TDES key, not {master.algorithm}")
    if len(div_data) != DIVERSIFICATION_DATA_LENGTH:
        raise DiversificationError(
            f"key diversification data must be {DIVERSIFICATION_DATA_LENGTH} bytes, "
            f"not {len(div_data)}"
        )
    try:
        return KeyType(key_type)
    except ValueError:
        raise DiversificationError("key type must be 1 (ENC), 2 (MAC) or 3 (DEK)") from None


def _derive(master: BlockCipher, seed: bytes, key_type: KeyType) -> bytes:
    t = bytes([key_type])
    return master.encrypt_ecb(seed + b"\xf0" + t + seed + b"\x0f" + t)


def diversify_emv(master: BlockCipher, div_data: bytes, key_type: int) -> bytes:
    """Card key by the EMV CPS v1.1 §5.3 method (GlobalPlatformPro calls it "emv").

    ``DES3(KMC)[KDD[4..9] || F0 || t || KDD[4..9] || 0F || t]`` with ``t`` the key
    type (1 ENC, 2 MAC, 3 DEK) and ``KDD`` the 10-byte diversification data.
    """
    kt = _check(master, div_data, key_type)
    return _derive(master, bytes(div_data[4:10]), kt)


def diversify_visa2(master: BlockCipher, div_data: bytes, key_type: int) -> bytes:
    """Card key by the Visa "VISA2" method (Visa GP 2.1.1 Card Implementation Req.).

    ``DES3(KMC)[KDD[0..1] || KDD[4..7] || F0 || t || KDD[0..1] || KDD[4..7] || 0F || t]``:
    the two bytes of the card manager AID and the four-byte IC serial number.
    """
    kt = _check(master, div_data, key_type)
    seed = bytes(div_data[0:2]) + bytes(div_data[4:8])
    return _derive(master, seed, kt)


def diversify_keyset(master: BlockCipher, div_data: bytes, method: str) -> dict[KeyType, bytes]:
    """All three card keys (ENC, MAC, DEK) by ``method`` ``"emv"`` or ``"visa2"``."""
    if method == "emv":
        fn = diversify_emv
    elif method == "visa2":
        fn = diversify_visa2
    else:
        raise DiversificationError("diversification method must be 'emv' or 'visa2'")
    return {kt: fn(master, div_data, kt) for kt in KeyType}
