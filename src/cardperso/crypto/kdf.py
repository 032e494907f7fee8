"""Key derivation in counter mode with CMAC as the PRF (NIST SP 800-108r1 §4.1).

:func:`sp800_108_counter_cmac` lays the fixed input out the way SP 800-108r1 §4
recommends (``[i]_r || Label || 0x00 || Context || [L]_32``). Some recipes put the
counter or length elsewhere (GlobalPlatform SCP03 derivation data, for one); they
build their own fixed input and call :func:`counter_mode_cmac`, which only runs the
counter loop.
"""

from __future__ import annotations

from collections.abc import Callable

from cardperso.crypto.ciphers import BlockCipher, CipherError
from cardperso.crypto.mac import cmac

__all__ = ["counter_mode_cmac", "sp800_108_counter_cmac", "sp800_108_fixed_inputs"]


def counter_mode_cmac(
    cipher: BlockCipher, length: int, fixed_input: Callable[[int], bytes]
) -> bytes:
    """Concatenate CMAC(fixed_input(i)) for i = 1, 2, ... and keep ``length`` bytes.

    This is the loop of SP 800-108r1 §4.1 steps 3-5; ``fixed_input(i)`` must
    already contain the encoded counter wherever the recipe puts it.
    """
    if length <= 0:
        raise CipherError(f"KDF output length must be positive, not {length}")
    bs = cipher.block_size
    rounds = -(-length // bs)
    out = b"".join(cmac(cipher, fixed_input(i)) for i in range(1, rounds + 1))
    return out[:length]


def sp800_108_counter_cmac(
    cipher: BlockCipher,
    label: bytes,
    context: bytes,
    length: int,
    *,
    counter_bytes: int = 4,
) -> bytes:
    """SP 800-108r1 KDF in counter mode, PRF = CMAC, returning ``length`` bytes.

    Each PRF input is ``[i]_r || Label || 0x00 || Context || [L]_32`` with the
    counter ``i`` in ``counter_bytes`` big-endian bytes (r = 8, 16, 24 or 32 bits)
    and L the output length in *bits*, 32-bit big-endian. Binding L into every
    block means a shorter request is never a prefix of a longer one. The counter
    may not wrap (SP 800-108r1 §4.1 step 2: n <= 2^r - 1).
    """
    return counter_mode_cmac(
        cipher, length, _fixed_inputs(cipher.block_size, label, context, length, counter_bytes)
    )


def sp800_108_fixed_inputs(
    block_size: int, label: bytes, context: bytes, length: int, *, counter_bytes: int = 4
) -> list[bytes]:
    """The PRF inputs of :func:`sp800_108_counter_cmac`, one per output block, in order.

    A security module that offers CMAC but no SP 800-108 mechanism runs the KDF
    from these (see :func:`cardperso.crypto.mac.cmac_final_inputs`).
    """
    fixed = _fixed_inputs(block_size, label, context, length, counter_bytes)
    return [fixed(i) for i in range(1, -(-length // block_size) + 1)]


def _fixed_inputs(
    block_size: int, label: bytes, context: bytes, length: int, counter_bytes: int
) -> Callable[[int], bytes]:
    if counter_bytes not in (1, 2, 3, 4):
        raise CipherError(f"counter width must be 1 to 4 bytes, not {counter_bytes}")
    if length <= 0:
        raise CipherError(f"KDF output length must be positive, not {length}")
    bits = length * 8
    if bits >= 1 << 32:
        raise CipherError("KDF output length does not fit the 32-bit [L] field")
    rounds = -(-length // block_size)
    if rounds >= 1 << (8 * counter_bytes):
        raise CipherError(f"KDF output of {length} bytes overflows a {counter_bytes}-byte counter")
    tail = bytes(label) + b"\x00" + bytes(context) + bits.to_bytes(4, "big")

    def fixed_input(i: int) -> bytes:
        return i.to_bytes(counter_bytes, "big") + tail

    return fixed_input
