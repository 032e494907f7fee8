"""ISO 9564-1:2017 PIN blocks: formats 0, 1 and 3 (64-bit) and format 4 (128-bit, AES).

A PIN never travels or rests in the clear: it is laid into a PIN block and the
block is enciphered. This module builds and parses the clear blocks, enciphers and
deciphers them through a :class:`~cardperso.crypto.ciphers.BlockCipher` (so the
same code runs over an in-process key or inside a security module), and translates
a block from one key and format to another with the clear PIN alive only inside
the call.

Formats (ISO 9564-1:2017 §9.3 for the 64-bit ones, §9.4 for format 4):

* **0** - control 0, length, PIN, fill F; XORed with ``0000`` + the 12 rightmost
  PAN digits excluding the check digit. Deterministic, so identical PINs on one
  account give identical blocks: use it only where a network demands it.
* **1** - control 1, length, PIN, fill from a transaction-unique field (here: random
  nibbles 0-F). No PAN binding: for where no PAN is available.
* **3** - as format 0, but the fill digits are random values A-F.
* **4** - a 128-bit plaintext PIN field (control 4, length, PIN, fill A to the 16th
  nibble, then 16 random nibbles) and a 128-bit PAN field (PAN length - 12, PAN,
  zero pad), bound by two AES encipherments (§9.4.2.3).

Error messages never contain the PIN, the PAN or block bytes. Decoding failures
all raise the same message per format: telling a caller *which* check failed
(control, length or fill) is the error oracle exploited by the published PIN-block
attacks on security-module APIs, so a decoder here only says "not a valid block".
"""

from __future__ import annotations

from enum import IntEnum

from cardperso.crypto.ciphers import BlockCipher
from cardperso.crypto.rand import RandomSource
from cardperso.payments._digits import (
    PaymentInputError,
    check_digits,
    pack,
    pan_digits_before_check,
    random_digits,
    random_from,
    xor,
)

__all__ = [
    "PAN_MAX_LENGTH",
    "PIN_MAX_LENGTH",
    "PIN_MIN_LENGTH",
    "PinBlockError",
    "PinBlockFormat",
    "decode_format0",
    "decode_format1",
    "decode_format3",
    "decode_format4_pin_field",
    "decrypt_format4",
    "decrypt_pin_block",
    "encode_format0",
    "encode_format1",
    "encode_format3",
    "encode_format4_pan_field",
    "encode_format4_pin_field",
    "encrypt_format4",
    "encrypt_pin_block",
    "random_pin",
    "translate_pin_block",
]

PIN_MIN_LENGTH = 4
"""Shortest PIN a block can carry (ISO 9564-1:2017 §8.1: 4 to 12 digits)."""
PIN_MAX_LENGTH = 12
"""Longest PIN a block can carry."""
PAN_MAX_LENGTH = 19
"""Longest PAN (ISO/IEC 7812-1)."""

_BLOCK_64 = 8
_BLOCK_128 = 16
_HEX_LETTERS = "ABCDEF"


class PinBlockError(PaymentInputError):
    """A PIN, PAN, format, key or PIN block was rejected.

    The message never contains the PIN, the PAN digits or block bytes.
    """


class PinBlockFormat(IntEnum):
    """The ISO 9564-1 PIN block formats this module implements (the control nibble)."""

    ISO_0 = 0
    ISO_1 = 1
    ISO_3 = 3
    ISO_4 = 4


# -- input checks -----------------------------------------------------------------


def _check_pin(pin: str) -> str:
    return check_digits(pin, "PIN", PIN_MIN_LENGTH, PIN_MAX_LENGTH, PinBlockError)


def _check_pan(pan: str | None) -> str:
    if pan is None:
        raise PinBlockError("this PIN block format needs the PAN")
    return check_digits(pan, "PAN", 1, PAN_MAX_LENGTH, PinBlockError)


def _check_block(block: bytes, size: int, fmt: int) -> bytes:
    if not isinstance(block, bytes | bytearray) or len(block) != size:
        raise PinBlockError(f"a format {int(fmt)} PIN block is {size} bytes")
    return bytes(block)


def _check_rng(rng: RandomSource | None, fmt: int) -> RandomSource:
    if rng is None:
        raise PinBlockError(f"format {fmt} PIN blocks need a random source for their fill")
    return rng


def _format(fmt: int | PinBlockFormat) -> PinBlockFormat:
    try:
        return PinBlockFormat(fmt)
    except ValueError:
        raise PinBlockError("PIN block format must be 0, 1, 3 or 4") from None


def _invalid(fmt: int) -> PinBlockError:
    # One message for every failed check: see the module docstring.
    return PinBlockError(f"not a valid format {fmt} PIN block")


# -- 64-bit blocks (formats 0, 1, 3) ------------------------------------------------


def _pin_field_64(control: int, pin: str, fill: str) -> bytes:
    """Control nibble, length nibble, PIN digits, fill: 16 nibbles (ISO 9564-1 §9.3)."""
    return pack(f"{control:X}{len(pin):X}{pin}{fill}")


def _pan_field_64(pan: str) -> bytes:
    """``0000`` + the 12 rightmost PAN digits excluding the check digit (§9.3, formats 0/3)."""
    return pack("0000" + pan_digits_before_check(pan, 12))


def _parse_pin_field_64(field: bytes, control: int, fill_alphabet: str) -> str:
    """Return the PIN of a clear 64-bit PIN field, or raise the format's one error."""
    nibbles = field.hex().upper()
    length = int(nibbles[1], 16)
    if int(nibbles[0], 16) != control or not PIN_MIN_LENGTH <= length <= PIN_MAX_LENGTH:
        raise _invalid(control)
    pin, fill = nibbles[2 : 2 + length], nibbles[2 + length :]
    if not pin.isdecimal() or not all(c in fill_alphabet for c in fill):
        raise _invalid(control)
    return pin


def encode_format0(pin: str, pan: str) -> bytes:
    """Clear ISO 9564-1 format 0 PIN block for ``pin`` bound to ``pan`` (8 bytes)."""
    pin, pan = _check_pin(pin), _check_pan(pan)
    return xor(_pin_field_64(0, pin, "F" * (14 - len(pin))), _pan_field_64(pan))


def decode_format0(block: bytes, pan: str) -> str:
    """PIN from a clear format 0 block; the fill must be all F (§9.3)."""
    block, pan = _check_block(block, _BLOCK_64, 0), _check_pan(pan)
    return _parse_pin_field_64(xor(block, _pan_field_64(pan)), 0, "F")


def encode_format1(pin: str, rng: RandomSource) -> bytes:
    """Clear ISO 9564-1 format 1 PIN block; the fill is random nibbles 0-F.

    The standard asks for a transaction-unique fill (a sequence number, a time
    stamp or random data); random data from ``rng`` meets it and keeps seeded
    runs repeatable. The fill is the hex of ``ceil(n/2)`` random bytes, cut to the
    ``n = 14 - len(pin)`` nibbles needed.
    """
    pin = _check_pin(pin)
    need = 14 - len(pin)
    fill = rng.random_bytes((need + 1) // 2).hex().upper()[:need]
    return _pin_field_64(1, pin, fill)


def decode_format1(block: bytes) -> str:
    """PIN from a clear format 1 block (any fill nibble is allowed)."""
    block = _check_block(block, _BLOCK_64, 1)
    return _parse_pin_field_64(block, 1, "0123456789ABCDEF")


def encode_format3(pin: str, pan: str, rng: RandomSource) -> bytes:
    """Clear ISO 9564-1 format 3 PIN block: format 0 with uniformly random fill A-F."""
    pin, pan = _check_pin(pin), _check_pan(pan)
    fill = random_from(rng, _HEX_LETTERS, 14 - len(pin))
    return xor(_pin_field_64(3, pin, fill), _pan_field_64(pan))


def decode_format3(block: bytes, pan: str) -> str:
    """PIN from a clear format 3 block; every fill nibble must be A-F (§9.3)."""
    block, pan = _check_block(block, _BLOCK_64, 3), _check_pan(pan)
    return _parse_pin_field_64(xor(block, _pan_field_64(pan)), 3, _HEX_LETTERS)


# -- 128-bit block (format 4) -------------------------------------------------------


def encode_format4_pin_field(pin: str, rng: RandomSource) -> bytes:
    """Plaintext PIN field of format 4 (ISO 9564-1:2017 §9.4.2), 16 bytes.

    Nibbles 1-16: control 4, PIN length, PIN digits, fill A up to nibble 16.
    Nibbles 17-32: random, taken directly from 8 bytes of ``rng``.
    """
    pin = _check_pin(pin)
    head = f"4{len(pin):X}{pin}".ljust(16, "A")
    return pack(head) + rng.random_bytes(8)


def encode_format4_pan_field(pan: str) -> bytes:
    """Plaintext PAN field of format 4 (ISO 9564-1:2017 §9.4.2), 16 bytes.

    First nibble: PAN length minus 12 (0 for a PAN of 12 digits or fewer); then
    the PAN (left-padded with zeros to 12 digits if shorter); then zero nibbles.
    """
    pan = _check_pan(pan)
    m = max(len(pan) - 12, 0)
    return pack(f"{m:X}{pan.rjust(12, '0')}".ljust(32, "0"))


def decode_format4_pin_field(field: bytes) -> str:
    """PIN from a plaintext format 4 PIN field; the fill up to nibble 16 must be A."""
    field = _check_block(field, _BLOCK_128, 4)
    nibbles = field.hex().upper()
    length = int(nibbles[1], 16)
    if nibbles[0] != "4" or not PIN_MIN_LENGTH <= length <= PIN_MAX_LENGTH:
        raise _invalid(4)
    pin, fill = nibbles[2 : 2 + length], nibbles[2 + length : 16]
    if not pin.isdecimal() or fill != "A" * len(fill):
        raise _invalid(4)
    return pin


def _require_aes(cipher: BlockCipher) -> None:
    if cipher.algorithm != "AES" or cipher.block_size != _BLOCK_128:
        raise PinBlockError("format 4 PIN blocks are enciphered with an AES key")


def encrypt_format4(cipher: BlockCipher, pin: str, pan: str, rng: RandomSource) -> bytes:
    """Enciphered format 4 PIN block (ISO 9564-1:2017 §9.4.2.3).

    1. Build the plaintext PIN field and PAN field.
    2. A = AES-ECB(K, PIN field).
    3. B = A XOR PAN field.
    4. Block = AES-ECB(K, B).

    Binding the PAN in the middle means a block only deciphers to a well-formed
    PIN field under the PAN it was made for.
    """
    _require_aes(cipher)
    pin_field = encode_format4_pin_field(pin, rng)
    pan_field = encode_format4_pan_field(pan)
    return cipher.encrypt_ecb(xor(cipher.encrypt_ecb(pin_field), pan_field))


def decrypt_format4(cipher: BlockCipher, block: bytes, pan: str) -> str:
    """PIN from an enciphered format 4 block (ISO 9564-1:2017 §9.4.2.4): the steps reversed.

    B = AES-ECB⁻¹(K, block); A = B XOR PAN field; PIN field = AES-ECB⁻¹(K, A).
    """
    _require_aes(cipher)
    block = _check_block(block, _BLOCK_128, 4)
    pan_field = encode_format4_pan_field(pan)
    return decode_format4_pin_field(cipher.decrypt_ecb(xor(cipher.decrypt_ecb(block), pan_field)))


# -- enciphered blocks, any format ---------------------------------------------------


def _require_tdes(cipher: BlockCipher, fmt: int) -> None:
    # ISO 9564-2 approves TDEA and AES for PIN encipherment; single DES is not allowed.
    if cipher.algorithm != "TDES" or cipher.block_size != _BLOCK_64:
        raise PinBlockError(f"format {int(fmt)} PIN blocks are enciphered with a TDES key")


def encrypt_pin_block(
    cipher: BlockCipher,
    fmt: int | PinBlockFormat,
    pin: str,
    pan: str | None,
    rng: RandomSource | None = None,
) -> bytes:
    """Build a PIN block of format ``fmt`` and encipher it under ``cipher``.

    Formats 0, 1 and 3 are enciphered with TDES in ECB mode (one block); format 4
    follows :func:`encrypt_format4`. ``pan`` is needed by formats 0, 3 and 4;
    ``rng`` by formats 1, 3 and 4.
    """
    f = _format(fmt)
    if f is PinBlockFormat.ISO_4:
        return encrypt_format4(cipher, pin, _check_pan(pan), _check_rng(rng, 4))
    _require_tdes(cipher, f)
    if f is PinBlockFormat.ISO_0:
        clear = encode_format0(pin, _check_pan(pan))
    elif f is PinBlockFormat.ISO_1:
        clear = encode_format1(pin, _check_rng(rng, 1))
    else:
        clear = encode_format3(pin, _check_pan(pan), _check_rng(rng, 3))
    return cipher.encrypt_ecb(clear)


def decrypt_pin_block(
    cipher: BlockCipher, fmt: int | PinBlockFormat, block: bytes, pan: str | None
) -> str:
    """Decipher a PIN block of format ``fmt`` under ``cipher`` and return the PIN."""
    f = _format(fmt)
    if f is PinBlockFormat.ISO_4:
        return decrypt_format4(cipher, block, _check_pan(pan))
    _require_tdes(cipher, f)
    clear = cipher.decrypt_ecb(_check_block(block, _BLOCK_64, f))
    if f is PinBlockFormat.ISO_0:
        return decode_format0(clear, _check_pan(pan))
    if f is PinBlockFormat.ISO_1:
        return decode_format1(clear)
    return decode_format3(clear, _check_pan(pan))


def translate_pin_block(
    src_cipher: BlockCipher,
    src_fmt: int | PinBlockFormat,
    dst_cipher: BlockCipher,
    dst_fmt: int | PinBlockFormat,
    block: bytes,
    pan: str | None,
    rng: RandomSource | None = None,
) -> bytes:
    """Re-encipher a PIN block from one key and format to another.

    This is the security module's "translate PIN" service: the clear PIN exists
    only in a local variable of this call and is never returned or logged.
    """
    return encrypt_pin_block(
        dst_cipher, dst_fmt, decrypt_pin_block(src_cipher, src_fmt, block, pan), pan, rng
    )


def random_pin(rng: RandomSource, length: int = 4) -> str:
    """A uniformly random PIN of ``length`` digits (4 to 12) from ``rng``.

    For bureau-generated PINs (the "random PIN" method). Each digit is drawn
    without modulo bias; callers that must avoid trivial PINs filter the result.
    """
    if not isinstance(length, int) or not PIN_MIN_LENGTH <= length <= PIN_MAX_LENGTH:
        raise PinBlockError(f"PIN length must be {PIN_MIN_LENGTH} to {PIN_MAX_LENGTH}")
    return random_digits(rng, length)
