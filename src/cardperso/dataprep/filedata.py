"""Turn one issuer record into the bytes a profile's data mappings write into the chip.

Each :class:`~cardperso.profiles.schema.DataMapping` becomes one :class:`FileWrite`:
the target file (name and FID path from the MF), where to write (offset in a
transparent EF, or record number) and the bytes. The chip-script builder turns a
write into SELECT + UPDATE BINARY / UPDATE RECORD; this module only codes data.

Codings (``Element.encoding``):

``ascii``   printable ASCII, one byte per character (EMV format *ans*)
``bcd``     packed decimal, right-justified, zero nibble in front if odd (EMV *n*)
``cn``      compact numeric, left-justified, F nibbles after (EMV *cn*)
``tbcd``    nibble-swapped BCD, F-filled: digit 1 in the low nibble of byte 1
            (3GPP TS 51.011 §10.1.1 EF.ICCID; TS 24.008 §10.5.4 TBCD)
``imsi``    EF.IMSI: length byte, then the parity nibble (9 odd / 1 even) and the
            digits, nibble-swapped and F-filled to 9 bytes (3GPP TS 51.011 §10.3.2)
``binary``  bytes: a hex or base64/photo field, a hex literal, a derived byte value
``tlv``     BER-TLV template: the children concatenated under a constructed tag

Padding (``length``): ascii pads with spaces on the right, bcd with 00 on the left,
cn and tbcd with FF on the right, binary with 00 on the right, unless ``pad`` /
``pad_byte`` say otherwise. A value longer than ``length`` is an error, never cut.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass

from cardperso import tlv
from cardperso.dataprep.text import RenderError, render
from cardperso.errors import InputError
from cardperso.profiles.schema import (
    DataMapping,
    Element,
    Encoding,
    FieldRule,
    FileType,
    Pad,
    Profile,
)

__all__ = [
    "FileWrite",
    "encode_bcd",
    "encode_cn",
    "encode_element",
    "encode_imsi",
    "encode_tbcd",
    "file_writes",
]

Derived = Mapping[str, str | bytes]


@dataclass(frozen=True, slots=True)
class FileWrite:
    """Bytes for one EF: at ``offset`` of a transparent EF, or as record ``record``."""

    file: str
    path: tuple[int, ...]
    record: int | None
    offset: int
    data: bytes


def _digits(value: str, what: str) -> str:
    if not value.isascii() or not value.isdigit():
        raise ValueError(f"{what} coding needs decimal digits")
    return value


def encode_bcd(digits: str) -> bytes:
    """Packed BCD, right-justified: ``"123"`` -> ``01 23``."""
    d = _digits(digits, "bcd")
    return bytes.fromhex(d if len(d) % 2 == 0 else "0" + d)


def encode_cn(digits: str) -> bytes:
    """Compact numeric, left-justified, F-padded: ``"123"`` -> ``12 3F``."""
    d = _digits(digits, "cn")
    return bytes.fromhex(d if len(d) % 2 == 0 else d + "F")


def encode_tbcd(digits: str) -> bytes:
    """Nibble-swapped BCD, F-filled: ``"8949"`` -> ``98 94``; ``"123"`` -> ``21 F3``."""
    d = _digits(digits, "tbcd")
    if len(d) % 2:
        d += "F"
    return bytes.fromhex("".join(d[i + 1] + d[i] for i in range(0, len(d), 2)))


def encode_imsi(imsi: str) -> bytes:
    """EF.IMSI content, 9 bytes (3GPP TS 51.011 §10.3.2).

    Byte 1 is the number of bytes used after it; then the IMSI digits preceded by
    a nibble whose low bit pattern 1001 (odd number of digits) or 0001 (even) is
    the parity indicator, all nibble-swapped, unused nibbles F.
    """
    d = _digits(imsi, "imsi")
    if not 6 <= len(d) <= 15:
        raise ValueError("an IMSI has 6 to 15 digits")
    body = ("9" if len(d) % 2 else "1") + d
    used = (len(body) + 1) // 2
    nibbles = body.ljust(16, "F")
    return bytes([used]) + bytes.fromhex(
        "".join(nibbles[i + 1] + nibbles[i] for i in range(0, 16, 2))
    )


def _pad(value: bytes, el: Element) -> bytes:
    if el.length is None:
        return value
    if len(value) > el.length:
        raise ValueError(f"value is {len(value)} bytes, longer than the {el.length} allowed")
    default_byte = {"ascii": 0x20, "cn": 0xFF, "tbcd": 0xFF}.get(el.encoding.value, 0x00)
    byte = int(el.pad_byte, 16) if el.pad_byte else default_byte
    side = el.pad or (Pad.LEFT if el.encoding == Encoding.BCD else Pad.RIGHT)
    fill = bytes([byte]) * (el.length - len(value))
    return fill + value if side == Pad.LEFT else value + fill


def _source(
    el: Element, profile: Profile, values: Mapping[str, str], derived: Derived
) -> str | bytes:
    if el.literal is not None:
        return bytes.fromhex(el.literal) if el.encoding == Encoding.BINARY else el.literal
    if el.derived is not None:
        if el.derived.value not in derived:
            raise KeyError(f"derived value {el.derived.value!r} has not been computed")
        return derived[el.derived.value]
    if el.template is not None:
        return render(el.template, values)
    name = el.field or ""
    value = values.get(name, "")
    if el.encoding == Encoding.BINARY:
        spec = profile.input_field(name)
        if spec is not None and spec.rule in (FieldRule.BASE64, FieldRule.PHOTO):
            return base64.b64decode(value, validate=True)
        return bytes.fromhex(value)
    return value


def encode_element(
    el: Element, profile: Profile, values: Mapping[str, str], derived: Derived | None = None
) -> bytes:
    """The bytes of one element (raises ValueError/KeyError/RenderError on bad data)."""
    derived = derived or {}
    if el.encoding == Encoding.TLV:
        body = b"".join(encode_element(c, profile, values, derived) for c in el.children or [])
        return tlv.encode(int(el.tag or "0", 16), body)
    src = _source(el, profile, values, derived)
    if isinstance(src, bytes):
        if el.encoding != Encoding.BINARY:
            raise ValueError(f"a byte value cannot take the {el.encoding.value} coding")
        raw = src
    elif el.encoding == Encoding.ASCII:
        if not all(0x20 <= ord(c) < 0x7F for c in src):
            raise ValueError("ascii coding needs printable ASCII characters")
        raw = src.encode("ascii")
    elif el.encoding == Encoding.BCD:
        raw = encode_bcd(src)
    elif el.encoding == Encoding.CN:
        raw = encode_cn(src)
    elif el.encoding == Encoding.TBCD:
        raw = encode_tbcd(src)
    elif el.encoding == Encoding.IMSI:
        raw = encode_imsi(src)
    else:
        raw = src.encode("utf-8")
    value = _pad(raw, el)
    return tlv.encode(int(el.tag, 16), value) if el.tag else value


def _first_field(el: Element) -> str | None:
    if el.field:
        return el.field
    if el.template:
        from cardperso.profiles.template import fields_of

        names = fields_of(el.template)
        return names[0] if names else None
    for c in el.children or []:
        f = _first_field(c)
        if f:
            return f
    return None


def _mapping_write(
    m: DataMapping, profile: Profile, values: Mapping[str, str], derived: Derived
) -> FileWrite:
    node = profile.file(m.file)
    assert node is not None  # the profile's consistency checks guarantee it
    parts: list[bytes] = []
    for el in m.content:
        try:
            parts.append(encode_element(el, profile, values, derived))
        except RenderError as e:
            raise InputError(f"{m.file}: {e}", field=e.field) from None
        except (ValueError, KeyError) as e:
            msg = e.args[0] if isinstance(e, KeyError) else str(e)
            raise InputError(f"{m.file}: {msg}", field=_first_field(el)) from None
    data = b"".join(parts)
    if node.type == FileType.LINEAR_FIXED:
        if len(data) > node.capacity():
            raise InputError(
                f"{m.file}: {len(data)} bytes exceed the record length {node.capacity()}"
            )
        data = data.ljust(node.capacity(), b"\xff")
    elif m.offset + len(data) > node.capacity():
        raise InputError(
            f"{m.file}: {m.offset + len(data)} bytes exceed the file size {node.capacity()}"
        )
    return FileWrite(m.file, profile.file_path(m.file), m.record, m.offset, data)


def file_writes(
    profile: Profile, values: Mapping[str, str], derived: Derived | None = None
) -> list[FileWrite]:
    """All chip file writes for one record, in profile order.

    ``derived`` supplies values computed during preparation (``track2_equivalent``,
    ``chip_serial``, ``pvv``...). Linear-fixed records are filled to the record
    length with FF (the erased state of a record, ISO/IEC 7816-4 practice).
    """
    return [_mapping_write(m, profile, values, derived or {}) for m in profile.data]
