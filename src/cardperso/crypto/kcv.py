"""Key check values: short, public fingerprints that name a key without revealing it.

Custodians compare KCVs when they enter key components, audit records carry them in
place of key bytes (DESIGN.md §4), and key blocks carry them for verification.

Two methods are in use:

* :func:`kcv` — encrypt a constant block and keep the leading bytes. For DES/TDES
  the constant is all zeros (the "legacy" method of ANSI X9.24-1:2017 §7.7.2,
  PCI PIN requirement 15-1). For AES it is 16 bytes of 0x01, the convention of the
  GlobalPlatform Card Specification (SCP03 keys) that several HSM vendors also
  show for AES keys.
* :func:`kcv_cmac` — the leading bytes of CMAC over an all-zero block (ANSI
  X9.24-1:2017 Annex A.3, used by TR-31/X9.143 key blocks); X9.24 requires this
  method for AES.
"""

from __future__ import annotations

from cardperso.crypto.ciphers import BlockCipher, CipherError
from cardperso.crypto.mac import cmac

__all__ = ["kcv", "kcv_cmac"]


def _check_length(length: int, block_size: int) -> None:
    if not 1 <= length <= block_size:
        raise CipherError(f"KCV length must be 1 to {block_size} bytes, not {length}")


def kcv(cipher: BlockCipher, length: int = 3) -> bytes:
    """Encryption KCV: E(0^8)[:length] for DES/TDES, E(0x01 * 16)[:length] for AES.

    Three bytes (six hex digits) is the customary length: enough to catch a typing
    error, too short to help an attacker search for the key.
    """
    bs = cipher.block_size
    _check_length(length, bs)
    block = b"\x01" * bs if bs == 16 else bytes(bs)
    return cipher.encrypt_ecb(block)[:length]


def kcv_cmac(cipher: BlockCipher, length: int = 5) -> bytes:
    """CMAC KCV: the leading ``length`` bytes of CMAC_K(0^b) (X9.24-1:2017 A.3; 5 bytes)."""
    bs = cipher.block_size
    _check_length(length, bs)
    return cmac(cipher, bytes(bs))[:length]
