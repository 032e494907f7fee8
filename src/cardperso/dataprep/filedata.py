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
from collections.abc import Callable, Mapping
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


_Encoder = Callable[[Mapping[str, str], Derived], bytes]
_Source = Callable[[Mapping[str, str], Derived], str | bytes]

_EMPTY: Derived = {}


def _padder(el: Element) -> Callable[[bytes], bytes]:
    length = el.length
    if length is None:
        return lambda value: value
    default_byte = {"ascii": 0x20, "cn": 0xFF, "tbcd": 0xFF}.get(el.encoding.value, 0x00)
    byte = bytes([int(el.pad_byte, 16) if el.pad_byte else default_byte])
    left = (el.pad or (Pad.LEFT if el.encoding == Encoding.BCD else Pad.RIGHT)) == Pad.LEFT

    def pad(value: bytes) -> bytes:
        if len(value) > length:
            raise ValueError(f"value is {len(value)} bytes, longer than the {length} allowed")
        fill = byte * (length - len(value))
        return fill + value if left else value + fill

    return pad


def _source(el: Element, profile: Profile) -> _Source:
    if el.literal is not None:
        literal: str | bytes = el.literal
        if el.encoding == Encoding.BINARY:
            literal = bytes.fromhex(el.literal)
        return lambda values, derived: literal
    if el.derived is not None:
        name = el.derived.value

        def from_derived(values: Mapping[str, str], derived: Derived) -> str | bytes:
            if name not in derived:
                raise KeyError(f"derived value {name!r} has not been computed")
            return derived[name]

        return from_derived
    if el.template is not None:
        template = el.template
        return lambda values, derived: render(template, values)
    field = el.field or ""
    if el.encoding == Encoding.BINARY:
        spec = profile.input_field(field)
        if spec is not None and spec.rule in (FieldRule.BASE64, FieldRule.PHOTO):
            return lambda values, derived: base64.b64decode(values.get(field, ""), validate=True)
        return lambda values, derived: bytes.fromhex(values.get(field, ""))
    return lambda values, derived: values.get(field, "")


def _ascii(src: str) -> bytes:
    if not (src.isascii() and src.isprintable()):  # printable ASCII: 0x20 to 0x7E
        raise ValueError("ascii coding needs printable ASCII characters")
    return src.encode("ascii")


def _utf8(src: str) -> bytes:
    return src.encode("utf-8")


_CODINGS: dict[Encoding, Callable[[str], bytes]] = {
    Encoding.ASCII: _ascii,
    Encoding.BCD: encode_bcd,
    Encoding.CN: encode_cn,
    Encoding.TBCD: encode_tbcd,
    Encoding.IMSI: encode_imsi,
}


def _compile(el: Element, profile: Profile) -> _Encoder:
    """The encoder of one element: everything that does not depend on the record is
    decided here, once (see :func:`encode_element` for what it computes)."""
    if el.encoding == Encoding.TLV:
        tag = tlv.encode(int(el.tag or "0", 16), b"")[:-1]
        children = tuple(_compiled(c, profile) for c in el.children or [])

        def constructed(values: Mapping[str, str], derived: Derived) -> bytes:
            body = b"".join([c(values, derived) for c in children])
            return tag + tlv.encode_length(len(body)) + body

        return constructed
    source = _source(el, profile)
    binary = el.encoding == Encoding.BINARY
    coding = _CODINGS.get(el.encoding, _utf8)
    pad = _padder(el)
    wrap = tlv.encode(int(el.tag, 16), b"")[:-1] if el.tag else b""
    what = el.encoding.value

    def primitive(values: Mapping[str, str], derived: Derived) -> bytes:
        src = source(values, derived)
        if isinstance(src, bytes):
            if not binary:
                raise ValueError(f"a byte value cannot take the {what} coding")
            raw = src
        else:
            raw = coding(src)
        value = pad(raw)
        return wrap + tlv.encode_length(len(value)) + value if wrap else value

    if el.literal is not None:  # the same bytes for every record
        try:
            constant = primitive({}, _EMPTY)
        except (ValueError, KeyError):
            return primitive  # raises its error where a record is written
        return lambda values, derived: constant
    return primitive


_COMPILED: dict[tuple[int, int], tuple[Element, Profile, _Encoder]] = {}


def _compiled(el: Element, profile: Profile) -> _Encoder:
    """:func:`_compile`, remembered for this (element, profile) pair."""
    key = (id(el), id(profile))
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] is el and hit[1] is profile:
        return hit[2]
    if len(_COMPILED) >= 4096:
        _COMPILED.clear()
    encoder = _compile(el, profile)
    _COMPILED[key] = (el, profile, encoder)
    return encoder


def encode_element(
    el: Element, profile: Profile, values: Mapping[str, str], derived: Derived | None = None
) -> bytes:
    """The bytes of one element (raises ValueError/KeyError/RenderError on bad data).

    ``tlv``: the children's bytes under ``tag``. Otherwise the value from its source
    (``literal``, ``derived``, ``template`` or ``field``), coded, padded to ``length``
    and wrapped under ``tag`` if there is one."""
    return _compiled(el, profile)(values, derived or _EMPTY)


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


@dataclass(frozen=True, slots=True)
class _MappingPlan:
    """One data mapping, resolved against its profile once."""

    mapping: DataMapping
    path: tuple[int, ...]
    linear: bool
    capacity: int
    encoders: tuple[tuple[Element, _Encoder], ...]

    def write(self, values: Mapping[str, str], derived: Derived) -> FileWrite:
        m = self.mapping
        parts: list[bytes] = []
        for el, encoder in self.encoders:
            try:
                parts.append(encoder(values, derived))
            except RenderError as e:
                raise InputError(f"{m.file}: {e}", field=e.field) from None
            except (ValueError, KeyError) as e:
                msg = e.args[0] if isinstance(e, KeyError) else str(e)
                raise InputError(f"{m.file}: {msg}", field=_first_field(el)) from None
        data = b"".join(parts)
        capacity = self.capacity
        if self.linear:
            if len(data) > capacity:
                raise InputError(f"{m.file}: {len(data)} bytes exceed the record length {capacity}")
            data = data.ljust(capacity, b"\xff")
        elif m.offset + len(data) > capacity:
            raise InputError(
                f"{m.file}: {m.offset + len(data)} bytes exceed the file size {capacity}"
            )
        return FileWrite(m.file, self.path, m.record, m.offset, data)


def _plan(m: DataMapping, profile: Profile) -> _MappingPlan:
    node = profile.file(m.file)
    assert node is not None  # the profile's consistency checks guarantee it
    return _MappingPlan(
        m,
        profile.file_path(m.file),
        node.type == FileType.LINEAR_FIXED,
        node.capacity(),
        tuple((el, _compiled(el, profile)) for el in m.content),
    )


_PLANS: dict[int, tuple[Profile, tuple[_MappingPlan, ...]]] = {}


def _plans(profile: Profile) -> tuple[_MappingPlan, ...]:
    hit = _PLANS.get(id(profile))
    if hit is not None and hit[0] is profile:
        return hit[1]
    if len(_PLANS) >= 256:
        _PLANS.clear()
    plans = tuple(_plan(m, profile) for m in profile.data)
    _PLANS[id(profile)] = (profile, plans)
    return plans


def file_writes(
    profile: Profile, values: Mapping[str, str], derived: Derived | None = None
) -> list[FileWrite]:
    """All chip file writes for one record, in profile order.

    ``derived`` supplies values computed during preparation (``track2_equivalent``,
    ``chip_serial``, ``pvv``...). Linear-fixed records are filled to the record
    length with FF (the erased state of a record, ISO/IEC 7816-4 practice).
    """
    d = derived or _EMPTY
    return [p.write(values, d) for p in _plans(profile)]
