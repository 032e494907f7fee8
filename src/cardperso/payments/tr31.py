"""ANSI X9.143-2022 / ASC X9 TR-31-2018 key blocks: wrap and unwrap.

A key block carries a key together with what it may be used for, bound to it by
a MAC, so a key exported for PIN encryption cannot be imported as a MAC key.
It is one ASCII string::

    header (16 chars + optional blocks) || enciphered key data (hex) || MAC (hex)

Header (X9.143-2022 / TR-31-2018, "key block header"): version ID (1), key block
length (4 digits, the whole block), key usage (2), algorithm (1), mode of use (1),
key version number (2), exportability (1), number of optional blocks (2 digits),
reserved (2, ``00``), then the optional blocks, each ``ID (2) || length (2 hex,
or 00 || length-of-length (2 hex) || length (hex)) || data``, the length counting
the whole block. The header is a multiple of the cipher block size (a ``PB``
padding block makes it so).

Key data (plaintext): key length in *bits* (2 bytes, big-endian) || key ||
random padding to a multiple of the block size (more padding may hide the key
length, ``masked_key_length``).

Versions:

* **A** and **C** - *key variant binding method* (examples TR-31-2018 Annex
  A.7.2.1 and A.7.3.1; A is deprecated): KBEK = KBPK xor ``45 45 ..``,
  KBAK = KBPK xor ``4D 4D ..``; TDES-CBC encipherment with the first 8 header
  characters as ICV; MAC = ISO/IEC 9797-1 MAC algorithm 1 (TDES CBC-MAC) over
  the header (ASCII) || the enciphered key data (binary), the leftmost 4 bytes.
  Unwrap only.
* **B** - *key derivation binding method*, TDES (examples TR-31-2018 Annex
  A.7.2.2 and A.7.3.2): KBEK and KBAK derived from the KBPK by CMAC in counter
  mode (NIST SP 800-108) from ``counter || usage (0000 enc, 0001 MAC) || 00 ||
  algorithm (0000 2-key, 0001 3-key TDES) || length in bits``; MAC =
  TDES-CMAC(KBAK) over header || plaintext key data, 8 bytes; key data
  TDES-CBC(KBEK) with the MAC as ICV.
* **D** - key derivation binding, AES (example TR-31-2018 Annex A.7.4): as B
  with AES (algorithm 0002/0003/0004 for AES-128/192/256) and a 16-byte MAC.

:func:`unwrap` verifies the MAC in constant time *before* it reads the key
length or returns anything, and every failure raises :class:`KeyBlockError`
naming the check that failed (never key bytes). Key block protection keys
arrive as :class:`~cardperso.crypto.ciphers.BlockCipher` objects; the variant
versions A/C, which need KBPK xor a constant, take a *variant source* that
returns the varied key as a cipher (a security module does this inside its
boundary; :func:`tdes_variant_source` serves in-process keys).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from cardperso.crypto.ciphers import AES, TDES, BlockCipher
from cardperso.crypto.kdf import counter_mode_cmac
from cardperso.crypto.mac import cmac, mac_alg1, verify_mac
from cardperso.crypto.rand import RandomSource
from cardperso.payments._digits import PaymentInputError

__all__ = [
    "KeyBlockError",
    "KeyBlockHeader",
    "VariantSource",
    "derive_binding_keys",
    "parse_header",
    "tdes_variant_source",
    "unwrap",
    "wrap",
]

VariantSource = Callable[[int], BlockCipher]
"""Returns the KBPK xor (the given byte repeated) as a cipher (versions A and C)."""

_VARIANT_ENC = 0x45  # "E"
_VARIANT_MAC = 0x4D  # "M"
_MAX_BLOCK_LENGTH = 9999
_FIXED_HEADER = 16
_ALNUM = re.compile(r"[0-9A-Z]+")
_HEX = re.compile(r"[0-9A-F]*")
_DIGITS = re.compile(r"[0-9]+")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


class KeyBlockError(PaymentInputError):
    """A key block failed a check; ``check`` names it. Never carries key bytes."""

    def __init__(self, check: str, message: str) -> None:
        self.check = check
        super().__init__(f"TR-31 {check}: {message}")


@dataclass(frozen=True, slots=True)
class KeyBlockHeader:
    """The header of a TR-31 / X9.143 key block.

    ``optional_blocks`` is the raw text of the optional blocks exactly as it sits
    in the header and ``optional_block_count`` their number. ``length`` is the
    key block length read from a block (0 in a header built for :func:`wrap`,
    which computes it).
    """

    version_id: str
    key_usage: str
    algorithm: str
    mode_of_use: str
    key_version_number: str = "00"
    exportability: str = "N"
    optional_block_count: int = 0
    optional_blocks: str = ""
    reserved: str = "00"
    length: int = 0

    def __post_init__(self) -> None:
        fields = (
            ("version ID", self.version_id, 1),
            ("key usage", self.key_usage, 2),
            ("algorithm", self.algorithm, 1),
            ("mode of use", self.mode_of_use, 1),
            ("key version number", self.key_version_number, 2),
            ("exportability", self.exportability, 1),
            ("reserved field", self.reserved, 2),
        )
        for name, value, size in fields:
            if not isinstance(value, str) or len(value) != size or not _ALNUM.fullmatch(value):
                raise KeyBlockError("header", f"{name} must be {size} characters 0-9 or A-Z")
        if not 0 <= self.optional_block_count <= 99:
            raise KeyBlockError("header", "number of optional blocks must be 0 to 99")
        if not isinstance(self.optional_blocks, str) or not _PRINTABLE.fullmatch(
            self.optional_blocks
        ):
            raise KeyBlockError("optional blocks", "optional blocks must be printable ASCII")
        end = _scan_optional_blocks(self.optional_blocks, 0, self.optional_block_count)
        if end != len(self.optional_blocks):
            raise KeyBlockError(
                "optional blocks", "optional block text does not match the block count"
            )

    def encode(self, length: int) -> str:
        """The header text for a key block of ``length`` characters."""
        if not 0 <= length <= _MAX_BLOCK_LENGTH:
            raise KeyBlockError("length", f"key block length must be at most {_MAX_BLOCK_LENGTH}")
        return (
            f"{self.version_id}{length:04d}{self.key_usage}{self.algorithm}"
            f"{self.mode_of_use}{self.key_version_number}{self.exportability}"
            f"{self.optional_block_count:02d}{self.reserved}{self.optional_blocks}"
        )

    def blocks(self) -> tuple[tuple[str, str], ...]:
        """The optional blocks as ``(ID, data)`` pairs, in order."""
        out: list[tuple[str, str]] = []
        pos = 0
        for _ in range(self.optional_block_count):
            block_id, data_start, pos = _optional_block_bounds(self.optional_blocks, pos)
            out.append((block_id, self.optional_blocks[data_start:pos]))
        return tuple(out)


def _optional_block_bounds(text: str, pos: int) -> tuple[str, int, int]:
    """Return (ID, data start, block end) of the optional block at ``pos``."""
    block_id = text[pos : pos + 2]
    if len(block_id) != 2 or not re.fullmatch(r"[0-9A-Za-z]{2}", block_id):
        raise KeyBlockError("optional blocks", "optional block ID is malformed")
    length_hex = text[pos + 2 : pos + 4]
    if len(length_hex) != 2 or not re.fullmatch(r"[0-9A-Fa-f]{2}", length_hex):
        raise KeyBlockError("optional blocks", f"optional block {block_id} length is malformed")
    length = int(length_hex, 16)
    data_start = pos + 4
    if length == 0:  # extended length: 2 hex digits of length-of-length, then the length
        lol_hex = text[pos + 4 : pos + 6]
        if len(lol_hex) != 2 or not re.fullmatch(r"[0-9A-Fa-f]{2}", lol_hex):
            raise KeyBlockError("optional blocks", f"optional block {block_id} length is malformed")
        lol = int(lol_hex, 16) * 2
        ext_hex = text[pos + 6 : pos + 6 + lol]
        if lol == 0 or len(ext_hex) != lol or not re.fullmatch(r"[0-9A-Fa-f]+", ext_hex):
            raise KeyBlockError("optional blocks", f"optional block {block_id} length is malformed")
        length = int(ext_hex, 16)
        data_start = pos + 6 + lol
    end = pos + length
    if end < data_start:
        raise KeyBlockError("optional blocks", f"optional block {block_id} length is too short")
    if end > len(text):
        raise KeyBlockError("optional blocks", f"optional block {block_id} runs past the header")
    if not _PRINTABLE.fullmatch(text[data_start:end]):
        raise KeyBlockError("optional blocks", f"optional block {block_id} is not printable")
    return block_id, data_start, end


def _scan_optional_blocks(text: str, pos: int, count: int) -> int:
    for _ in range(count):
        pos = _optional_block_bounds(text, pos)[2]
    return pos


def parse_header(block: str) -> KeyBlockHeader:
    """Parse the header at the start of a key block (no cryptographic check)."""
    if not isinstance(block, str) or not _PRINTABLE.fullmatch(block):
        raise KeyBlockError("format", "key block must be printable ASCII text")
    if len(block) < _FIXED_HEADER:
        raise KeyBlockError("format", "key block is shorter than a header")
    length_text, count_text = block[1:5], block[12:14]
    if not _DIGITS.fullmatch(length_text):
        raise KeyBlockError("header", "key block length must be 4 digits")
    if not _DIGITS.fullmatch(count_text):
        raise KeyBlockError("header", "number of optional blocks must be 2 digits")
    count = int(count_text)
    end = _scan_optional_blocks(block, _FIXED_HEADER, count)
    return KeyBlockHeader(
        version_id=block[0],
        key_usage=block[5:7],
        algorithm=block[7],
        mode_of_use=block[8],
        key_version_number=block[9:11],
        exportability=block[11],
        optional_block_count=count,
        optional_blocks=block[_FIXED_HEADER:end],
        reserved=block[14:16],
        length=int(length_text),
    )


def tdes_variant_source(kbpk: bytes) -> VariantSource:
    """A :data:`VariantSource` over in-process TDES key bytes (soft backends, tests)."""
    key = bytes(kbpk)
    if len(key) not in (16, 24):
        raise KeyBlockError("kbpk", "a version A/C KBPK must be a 2- or 3-key TDES key")

    def variant(mask: int) -> BlockCipher:
        return TDES(bytes(b ^ mask for b in key))

    return variant


def _kbpk_length(kbpk: BlockCipher) -> int:
    return kbpk.key_length


def _check_kbpk(kbpk: BlockCipher, version: str) -> int:
    """Check that the KBPK fits the version; return its length in bytes."""
    if version == "B":
        if kbpk.algorithm != "TDES" or _kbpk_length(kbpk) not in (16, 24):
            raise KeyBlockError("kbpk", "version B needs a 2- or 3-key TDES KBPK")
    elif version == "D":
        if kbpk.algorithm != "AES" or _kbpk_length(kbpk) not in (16, 24, 32):
            raise KeyBlockError("kbpk", "version D needs an AES KBPK")
    else:
        raise KeyBlockError("version", f"version {version} does not use key derivation binding")
    return _kbpk_length(kbpk)


# Key derivation binding method input: (algorithm indicator, derived length in bits).
_DERIVATION_ALGORITHM = {
    ("TDES", 16): (b"\x00\x00", 128),
    ("TDES", 24): (b"\x00\x01", 192),
    ("AES", 16): (b"\x00\x02", 128),
    ("AES", 24): (b"\x00\x03", 192),
    ("AES", 32): (b"\x00\x04", 256),
}


def derive_binding_keys(kbpk: BlockCipher, version_id: str) -> tuple[bytes, bytes]:
    """KBEK and KBAK for version B or D (key derivation binding method).

    Each is CMAC(KBPK) in counter mode over
    ``counter || usage || 00 || algorithm || length``, usage 0000 for the
    encryption key and 0001 for the authentication key.
    """
    n = _check_kbpk(kbpk, version_id)
    algorithm, bits = _DERIVATION_ALGORITHM[(kbpk.algorithm, n)]
    tail = b"\x00" + algorithm + bits.to_bytes(2, "big")

    def derive(usage: bytes) -> bytes:
        return counter_mode_cmac(kbpk, n, lambda i: bytes([i]) + usage + tail)

    return derive(b"\x00\x00"), derive(b"\x00\x01")


def _cipher_for(kbpk: BlockCipher, key: bytes) -> BlockCipher:
    return AES(key) if kbpk.algorithm == "AES" else TDES(key)


def _mac_length(version: str) -> int:
    return {"A": 4, "C": 4, "B": 8, "D": 16}[version]


def _pad_header(header: KeyBlockHeader, block_size: int) -> KeyBlockHeader:
    """Append a ``PB`` padding block when the header is not a whole number of blocks."""
    size = _FIXED_HEADER + len(header.optional_blocks)
    if size % block_size == 0:
        return header
    fill = -size % block_size
    if fill < 4:  # a PB block is at least ID + length
        fill += block_size
    if header.optional_block_count >= 99:
        raise KeyBlockError("optional blocks", "no room for a padding block (99 blocks)")
    pad = f"PB{fill:02X}" + "0" * (fill - 4)
    return KeyBlockHeader(
        version_id=header.version_id,
        key_usage=header.key_usage,
        algorithm=header.algorithm,
        mode_of_use=header.mode_of_use,
        key_version_number=header.key_version_number,
        exportability=header.exportability,
        optional_block_count=header.optional_block_count + 1,
        optional_blocks=header.optional_blocks + pad,
        reserved=header.reserved,
    )


def wrap(
    kbpk: BlockCipher,
    header: KeyBlockHeader,
    key: bytes,
    rng: RandomSource,
    *,
    masked_key_length: int | None = None,
) -> str:
    """Wrap ``key`` into a version B (TDES KBPK) or D (AES KBPK) key block.

    The header's version ID picks the version; its ``length`` is ignored and
    recomputed, and a ``PB`` block is added if the optional blocks leave the
    header short of a whole cipher block. The key data is padded with bytes from
    ``rng`` to a block multiple, or further to hide the key length as if it were
    ``masked_key_length`` bytes.
    """
    version = header.version_id
    if version in ("A", "C"):
        raise KeyBlockError("version", "versions A and C (variant binding) are unwrap-only")
    _check_kbpk(kbpk, version)
    key = bytes(key)
    if not 1 <= len(key) <= 0xFFFF // 8:
        raise KeyBlockError("key", "key length must be 1 to 8191 bytes")
    bs = kbpk.block_size
    header = _pad_header(header, bs)
    shown = max(len(key), masked_key_length or 0)
    data_len = 2 + shown + (-(2 + shown) % bs)
    padding = rng.random_bytes(data_len - 2 - len(key))
    key_data = (len(key) * 8).to_bytes(2, "big") + key + padding
    mac_len = _mac_length(version)
    total = _FIXED_HEADER + len(header.optional_blocks) + 2 * data_len + 2 * mac_len
    header_text = header.encode(total)
    kbek, kbak = derive_binding_keys(kbpk, version)
    mac = cmac(_cipher_for(kbpk, kbak), header_text.encode("ascii") + key_data)[:mac_len]
    enciphered = _cipher_for(kbpk, kbek).encrypt_cbc(key_data, mac)
    return header_text + enciphered.hex().upper() + mac.hex().upper()


def _split_body(block: str, header: KeyBlockHeader, block_size: int) -> tuple[bytes, bytes]:
    """Return (enciphered key data, MAC) after checking their layout."""
    start = _FIXED_HEADER + len(header.optional_blocks)
    if start % block_size:
        raise KeyBlockError("header", "header is not a whole number of cipher blocks")
    mac_chars = 2 * _mac_length(header.version_id)
    body = block[start:]
    if len(body) <= mac_chars:
        raise KeyBlockError("layout", "key block has no key data")
    data_hex, mac_hex = body[:-mac_chars], body[-mac_chars:]
    if not _HEX.fullmatch(data_hex) or not _HEX.fullmatch(mac_hex):
        raise KeyBlockError("layout", "key data and MAC must be upper-case hexadecimal")
    if len(data_hex) % (2 * block_size):
        raise KeyBlockError("layout", "key data is not a whole number of cipher blocks")
    return bytes.fromhex(data_hex), bytes.fromhex(mac_hex)


def _extract_key(key_data: bytes) -> bytes:
    bits = int.from_bytes(key_data[:2], "big")
    if bits == 0 or bits % 8:
        raise KeyBlockError("key length", "key length field is not a positive whole byte count")
    n = bits // 8
    if 2 + n > len(key_data):
        raise KeyBlockError("key length", "key length field exceeds the key data")
    return key_data[2 : 2 + n]


def unwrap(
    kbpk: BlockCipher,
    block: str,
    *,
    kbpk_variant: VariantSource | None = None,
) -> tuple[KeyBlockHeader, bytes]:
    """Check and open a version A, B, C or D key block; return ``(header, key)``.

    ``kbpk`` must be a TDES cipher (2- or 3-key) for B and an AES cipher for D.
    For the variant versions A and C pass ``kbpk_variant`` (see
    :func:`tdes_variant_source`); ``kbpk`` must then still be the TDES KBPK.
    The MAC is compared in constant time before the key length is even read.
    """
    header = parse_header(block)
    version = header.version_id
    if version not in ("A", "B", "C", "D"):
        raise KeyBlockError("version", f"version ID {version} is not supported")
    if header.length != len(block):
        raise KeyBlockError("length", "key block length field does not match the block")
    if version in ("A", "C"):
        return header, _unwrap_variant(kbpk, block, header, kbpk_variant)
    _check_kbpk(kbpk, version)
    enciphered, received = _split_body(block, header, kbpk.block_size)
    kbek, kbak = derive_binding_keys(kbpk, version)
    key_data = _cipher_for(kbpk, kbek).decrypt_cbc(enciphered, received)
    header_text = block[: _FIXED_HEADER + len(header.optional_blocks)]
    expected = cmac(_cipher_for(kbpk, kbak), header_text.encode("ascii") + key_data)
    if not verify_mac(expected[: len(received)], received):
        raise KeyBlockError("mac", "key block MAC does not verify")
    return header, _extract_key(key_data)


def _unwrap_variant(
    kbpk: BlockCipher,
    block: str,
    header: KeyBlockHeader,
    kbpk_variant: VariantSource | None,
) -> bytes:
    if kbpk.algorithm != "TDES":
        raise KeyBlockError("kbpk", f"version {header.version_id} needs a TDES KBPK")
    if kbpk_variant is None:
        raise KeyBlockError("kbpk", f"version {header.version_id} needs a KBPK variant source")
    enciphered, received = _split_body(block, header, 8)
    kbek, kbak = kbpk_variant(_VARIANT_ENC), kbpk_variant(_VARIANT_MAC)
    if kbek.algorithm != "TDES" or kbak.algorithm != "TDES":
        raise KeyBlockError("kbpk", "the KBPK variant source must return TDES keys")
    header_text = block[: _FIXED_HEADER + len(header.optional_blocks)]
    expected = mac_alg1(kbak, header_text.encode("ascii") + enciphered)[: len(received)]
    if not verify_mac(expected, received):
        raise KeyBlockError("mac", "key block MAC does not verify")
    key_data = kbek.decrypt_cbc(enciphered, block[:8].encode("ascii"))
    return _extract_key(key_data)
