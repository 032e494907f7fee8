"""Checks that span several parts of a profile, each problem with its YAML path.

Pydantic checks each value on its own (types, ranges, enums, unknown keys); this
module checks that the parts agree: file tree shape, references between parts,
method-specific settings, and that fixed-size data fits the file it goes into.
:func:`problems` returns ``(path, message)`` pairs such as
``("files[3].parent", "unknown DF 'DF.X' (a DF must be listed before its children)")``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cardperso.profiles.template import Placeholder, TemplateError, parse_template

if TYPE_CHECKING:
    from cardperso.profiles.schema import Element, InputField, Profile

__all__ = ["max_element_length", "problems"]

Problem = tuple[str, str]

_EF_OPS = ("read", "update", "append")
_DF_OPS = ("delete_child", "create_ef", "create_df")


def problems(p: Profile) -> list[Problem]:
    """Every cross-part problem of profile ``p`` (empty when consistent)."""
    out: list[Problem] = []
    _files(p, out)
    _input(p, out)
    _pins(p, out)
    _keys(p, out)
    _data(p, out)
    _magstripe(p, out)
    _card_body(p, out)
    _loading(p, out)
    _letters(p, out)
    _depersonalization(p, out)
    return out


# -- helpers ----------------------------------------------------------------------


def _template(p: Profile, text: str, path: str, out: list[Problem]) -> list[Placeholder]:
    try:
        parts = parse_template(text)
    except TemplateError as e:
        out.append((path, f"bad template: {e}"))
        return []
    holders = [x for x in parts if isinstance(x, Placeholder)]
    for h in holders:
        if p.input_field(h.field) is None:
            out.append((path, f"template names unknown input field {h.field!r}"))
    return holders


def _field_ref(p: Profile, name: str, path: str, out: list[Problem]) -> InputField | None:
    f = p.input_field(name)
    if f is None:
        out.append((path, f"unknown input field {name!r}"))
    return f


def _dupes(names: list[str], path: str, what: str, out: list[Problem]) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            out.append((f"{path}[{i}].name", f"duplicate {what} name {n!r}"))
        seen.add(n)


# -- files ------------------------------------------------------------------------


def _files(p: Profile, out: list[Problem]) -> None:
    from cardperso.profiles.schema import FileType

    _dupes([f.name for f in p.files], "files", "file", out)
    pin_refs = {x.ref for x in p.pins}
    key_refs = {k.ref for k in p.keys if k.algorithm != "ec_p256"}
    dfs: dict[str, int] = {}
    fids: set[tuple[str, str]] = set()
    sfis: set[tuple[str, int]] = set()
    aids: set[str] = set()
    for i, f in enumerate(p.files):
        at = f"files[{i}]"
        if i == 0:
            if f.fid != "3F00" or f.type != FileType.DF or f.parent is not None:
                out.append((at, "the first file must be the MF: fid '3F00', type df, no parent"))
        elif f.fid == "3F00":
            out.append((f"{at}.fid", "3F00 is the MF's FID and may appear only once"))
        elif f.parent is None:
            out.append((f"{at}.parent", "required (only the MF has no parent)"))
        elif f.parent not in dfs:
            out.append(
                (
                    f"{at}.parent",
                    f"unknown DF {f.parent!r} (a DF must be listed before its children)",
                )
            )
        parent = f.parent or ""
        if (parent, f.fid) in fids:
            out.append((f"{at}.fid", f"FID {f.fid} repeated in DF {parent or 'MF'!r}"))
        fids.add((parent, f.fid))
        if f.type == FileType.DF:
            dfs[f.name] = i
            for attr in ("size", "record_length", "records", "sfi"):
                if getattr(f, attr) is not None:
                    out.append((f"{at}.{attr}", "not allowed for a DF"))
            if f.aid:
                if f.aid in aids:
                    out.append((f"{at}.aid", f"AID {f.aid} repeated"))
                aids.add(f.aid)
        else:
            if f.aid is not None:
                out.append((f"{at}.aid", "only a DF has an AID"))
            if f.type == FileType.TRANSPARENT:
                if f.size is None:
                    out.append((f"{at}.size", "required for a transparent EF"))
                for attr in ("record_length", "records"):
                    if getattr(f, attr) is not None:
                        out.append((f"{at}.{attr}", "only a linear_fixed EF has records"))
            else:
                for attr in ("record_length", "records"):
                    if getattr(f, attr) is None:
                        out.append((f"{at}.{attr}", "required for a linear_fixed EF"))
                if f.size is not None:
                    out.append((f"{at}.size", "a linear_fixed EF is sized by records"))
            if f.sfi is not None:
                if (parent, f.sfi) in sfis:
                    out.append((f"{at}.sfi", f"SFI {f.sfi} repeated in DF {parent!r}"))
                sfis.add((parent, f.sfi))
        wrong = _DF_OPS if f.type != FileType.DF else _EF_OPS
        used = f.access.used()
        for op in wrong:
            if op in used:
                kind = "an EF" if f.type != FileType.DF else "a DF"
                out.append((f"{at}.access.{op}", f"not an operation on {kind}"))
        from cardperso.profiles.schema import condition_refs

        for op, cond in used.items():
            for kind, ref in condition_refs(cond):
                if kind == "pin" and ref not in pin_refs:
                    out.append((f"{at}.access.{op}", f"no PIN object with ref {ref}"))
                if kind == "key" and ref not in key_refs:
                    out.append((f"{at}.access.{op}", f"no symmetric key with ref {ref}"))


# -- input ------------------------------------------------------------------------


def _input(p: Profile, out: list[Problem]) -> None:
    from cardperso.profiles.schema import FieldRule

    names = [f.name for f in p.input.fields]
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            out.append((f"input.fields[{i}].name", f"duplicate field name {n!r}"))
        seen.add(n)
    for i, f in enumerate(p.input.fields):
        at = f"input.fields[{i}]"
        if f.rule == FieldRule.POSTAL_CODE:
            if f.country_field is None:
                out.append((f"{at}.country_field", "required for a postal_code field"))
            else:
                c = _field_ref(p, f.country_field, f"{at}.country_field", out)
                if c is not None and c.rule != FieldRule.COUNTRY:
                    out.append((f"{at}.country_field", "must name a field with rule country"))
        elif f.country_field is not None:
            out.append((f"{at}.country_field", "only for a postal_code field"))
        if f.min_length is not None and f.max_length is not None and f.min_length > f.max_length:
            out.append((f"{at}.min_length", "greater than max_length"))
        if f.sample_prefix is not None and f.rule not in (
            FieldRule.PAN,
            FieldRule.ICCID,
            FieldRule.IMSI,
            FieldRule.DIGITS,
        ):
            out.append((f"{at}.sample_prefix", "only for pan, iccid, imsi and digits fields"))
    for i, u in enumerate(p.input.unique):
        _field_ref(p, u, f"input.unique[{i}]", out)


# -- PINs and keys ----------------------------------------------------------------


def _pins(p: Profile, out: list[Problem]) -> None:
    from cardperso.profiles.schema import FieldRule, PinMethod

    _dupes([x.name for x in p.pins], "pins", "PIN", out)
    refs: set[int] = set()
    for i, x in enumerate(p.pins):
        at = f"pins[{i}]"
        if x.ref in refs:
            out.append((f"{at}.ref", f"PIN reference {x.ref} repeated"))
        refs.add(x.ref)
        if x.min_length > x.max_length:
            out.append((f"{at}.min_length", "greater than max_length"))
        if not x.min_length <= x.length <= x.max_length and x.method != PinMethod.TRANSPORT:
            out.append((f"{at}.length", "outside min_length..max_length"))
        if x.puk is not None:
            puk = p.pin(x.puk)
            if puk is None:
                out.append((f"{at}.puk", f"no PIN object named {x.puk!r}"))
            elif not puk.is_puk:
                out.append((f"{at}.puk", f"{x.puk!r} is not a PUK (is_puk: true)"))
            if x.is_puk:
                out.append((f"{at}.puk", "a PUK has no PUK of its own"))
        settings = {
            "transport_value": PinMethod.TRANSPORT,
            "issuer": PinMethod.ISSUER_PIN_BLOCK,
            "ibm3624": PinMethod.IBM3624,
        }
        for attr, method in settings.items():
            given = getattr(x, attr) is not None
            if x.method == method and not given:
                out.append((f"{at}.{attr}", f"required for method {method.value}"))
            if x.method != method and given:
                out.append((f"{at}.{attr}", f"only for method {method.value}"))
        if x.method == PinMethod.TRANSPORT:
            if x.mailer:
                out.append((f"{at}.mailer", "a transport PIN has no PIN letter"))
            if x.transport_value is not None and not (
                x.min_length <= len(x.transport_value) <= x.max_length
            ):
                out.append((f"{at}.transport_value", "length outside min_length..max_length"))
        if x.return_to_issuer is not None and x.method not in (
            PinMethod.BUREAU_RANDOM,
            PinMethod.CARD_GENERATED,
        ):
            out.append((f"{at}.return_to_issuer", "only for bureau_random or card_generated"))
        if x.issuer is not None:
            f = _field_ref(p, x.issuer.field, f"{at}.issuer.field", out)
            if f is not None and f.rule != FieldRule.HEX:
                out.append((f"{at}.issuer.field", "must name a hex field (the PIN block)"))
        if x.ibm3624 is not None:
            params = x.ibm3624
            f = _field_ref(p, params.validation_field, f"{at}.ibm3624.validation_field", out)
            if f is not None and f.rule not in (FieldRule.PAN, FieldRule.DIGITS):
                out.append((f"{at}.ibm3624.validation_field", "must name a pan or digits field"))
            if params.offset_field is not None:
                _field_ref(p, params.offset_field, f"{at}.ibm3624.offset_field", out)


def _keys(p: Profile, out: list[Problem]) -> None:
    from cardperso.profiles.schema import FieldRule, KeyAlgorithm, KeyRoute, KeyUsage

    _dupes([k.name for k in p.keys], "keys", "key", out)
    refs: set[int] = set()
    for i, k in enumerate(p.keys):
        at = f"keys[{i}]"
        if k.ref in refs:
            out.append((f"{at}.ref", f"key reference {k.ref} repeated"))
        refs.add(k.ref)
        is_ec = k.algorithm == KeyAlgorithm.EC_P256
        if is_ec != (k.route == KeyRoute.CARD_GENERATED):
            out.append(
                (f"{at}.algorithm", "ec_p256 keys, and only they, are generated on the card")
            )
        allowed = (
            {KeyUsage.INT_AUTH, KeyUsage.KEY_AGREEMENT}
            if is_ec
            else {KeyUsage.EXT_AUTH, KeyUsage.INT_AUTH, KeyUsage.SM, KeyUsage.ADMIN}
        )
        for j, u in enumerate(k.usage):
            if u not in allowed:
                kind = "an EC" if is_ec else "a symmetric"
                out.append((f"{at}.usage[{j}]", f"{u.value} is not a usage of {kind} key"))
        if k.route == KeyRoute.DERIVED_KD:
            if k.master_key is None:
                out.append((f"{at}.master_key", "required for route derived_kd"))
            if k.diversifier != "chip_serial":
                _field_ref(p, k.diversifier, f"{at}.diversifier", out)
        elif k.master_key is not None:
            out.append((f"{at}.master_key", "only for route derived_kd"))
        if k.route == KeyRoute.ISSUER_SUPPLIED:
            if k.field is None:
                out.append((f"{at}.field", "required for route issuer_supplied"))
            else:
                f = _field_ref(p, k.field, f"{at}.field", out)
                if f is not None and f.rule != FieldRule.HEX:
                    out.append((f"{at}.field", "must name a hex field (the key cryptogram)"))
            if k.transport_key is None:
                out.append((f"{at}.transport_key", "required for route issuer_supplied"))
        else:
            for attr in ("field", "transport_key"):
                if getattr(k, attr) is not None:
                    out.append((f"{at}.{attr}", "only for route issuer_supplied"))
        if k.return_to_issuer is not None and k.route not in (
            KeyRoute.BUREAU_RANDOM,
            KeyRoute.CARD_GENERATED,
        ):
            out.append((f"{at}.return_to_issuer", "only for bureau_random or card_generated"))


# -- chip data --------------------------------------------------------------------


def max_element_length(p: Profile, el: Element) -> int | None:
    """Largest number of bytes ``el`` can encode to, or None when the input does not bound it."""
    from cardperso.profiles.schema import Derived, Encoding, FieldRule

    if el.encoding == Encoding.TLV:
        total = 0
        for c in el.children or []:
            size = max_element_length(p, c)
            if size is None:
                return None
            total += size
        return _tlv_size(el.tag, total)
    if el.length is not None:
        n: int | None = el.length
    elif el.encoding == Encoding.IMSI:
        n = 9
    else:
        chars: int | None = None
        if el.literal is not None:
            chars = len(el.literal)
        elif el.field is not None:
            f = p.input_field(el.field)
            chars = f.max_length if f is not None else None
            if f is not None and f.rule == FieldRule.PAN:
                chars = min(f.max_length or 19, 19)
            if f is not None and f.rule in (FieldRule.BASE64, FieldRule.PHOTO):
                chars = None if f.max_length is None else f.max_length * 2  # decoded bytes
        elif el.derived == Derived.TRACK2_EQUIVALENT:
            chars = 38  # 37 nibbles max (PAN 19, D, YYMM, SC, DD) -> 19 bytes, as digits
        n = None if chars is None else _bytes_for(el.encoding, chars)
    return None if n is None else _tlv_size(el.tag, n) if el.tag else n


def _bytes_for(enc: str, chars: int) -> int:
    if enc in ("bcd", "cn", "tbcd"):
        return math.ceil(chars / 2)
    if enc == "binary":
        return math.ceil(chars / 2)  # hex digits (or doubled byte count for base64)
    return chars


def _tlv_size(tag: str | None, n: int) -> int:
    if tag is None:
        return n
    return len(tag) // 2 + (1 if n < 0x80 else 2 if n <= 0xFF else 3) + n


def _element(p: Profile, el: Element, at: str, out: list[Problem]) -> None:
    from cardperso.profiles.schema import Derived, Encoding, FieldRule

    sources = [a for a in ("field", "template", "literal", "derived") if getattr(el, a) is not None]
    if el.encoding == Encoding.TLV:
        if el.tag is None:
            out.append((f"{at}.tag", "required for encoding tlv"))
        elif not bytes.fromhex(el.tag)[0] & 0x20:
            out.append((f"{at}.tag", "a tlv template needs a constructed tag (b6 set)"))
        if not el.children:
            out.append((f"{at}.children", "required for encoding tlv"))
        if sources:
            out.append((f"{at}.{sources[0]}", "a tlv template takes its value from children"))
        for attr in ("length", "pad", "pad_byte"):
            if getattr(el, attr) is not None:
                out.append((f"{at}.{attr}", "not for a tlv template"))
        for j, c in enumerate(el.children or []):
            _element(p, c, f"{at}.children[{j}]", out)
        return
    if el.children is not None:
        out.append((f"{at}.children", "only for encoding tlv"))
    if el.tag is not None and bytes.fromhex(el.tag)[0] & 0x20:
        out.append((f"{at}.tag", "a primitive element needs a primitive tag (b6 clear)"))
    if len(sources) != 1:
        out.append((at, "give exactly one of field, template, literal, derived"))
        return
    if el.encoding == Encoding.IMSI and (el.length, el.pad, el.pad_byte) != (None, None, None):
        out.append((at, "the imsi coding has a fixed 9-byte layout: no length or padding"))
    if el.field is not None:
        f = _field_ref(p, el.field, f"{at}.field", out)
        if f is not None:
            numeric = (
                FieldRule.PAN,
                FieldRule.DIGITS,
                FieldRule.ICCID,
                FieldRule.IMSI,
                FieldRule.EXPIRY,
            )
            if el.encoding in ("bcd", "cn", "tbcd", "imsi") and f.rule not in numeric:
                out.append((f"{at}.field", f"{el.encoding.value} needs a numeric field"))
            if el.encoding == Encoding.IMSI and f.rule != FieldRule.IMSI:
                out.append((f"{at}.field", "the imsi coding needs an imsi field"))
            if el.encoding == Encoding.BINARY and f.rule not in (
                FieldRule.HEX,
                FieldRule.BASE64,
                FieldRule.PHOTO,
            ):
                out.append((f"{at}.field", "binary needs a hex, base64 or photo field"))
    if el.template is not None:
        _template(p, el.template, f"{at}.template", out)
        if el.encoding == Encoding.BINARY:
            out.append((f"{at}.template", "binary takes a field, literal or derived value"))
    if el.literal is not None:
        ok = {
            "ascii": all(0x20 <= ord(c) < 0x7F for c in el.literal),
            "bcd": el.literal.isascii() and el.literal.isdigit(),
            "cn": el.literal.isascii() and el.literal.isdigit(),
            "tbcd": el.literal.isascii() and el.literal.isdigit(),
            "imsi": False,
            "binary": _is_hex(el.literal),
        }[el.encoding.value]
        if not ok:
            out.append((f"{at}.literal", f"not a valid {el.encoding.value} literal"))
    if el.derived is not None:
        as_bytes = el.derived in (Derived.TRACK2_EQUIVALENT, Derived.CHIP_SERIAL)
        digits = el.derived in (Derived.PVV, Derived.CVV, Derived.ICVV)
        if as_bytes and el.encoding != Encoding.BINARY:
            out.append((f"{at}.derived", f"{el.derived.value} is bytes: use encoding binary"))
        elif not as_bytes and el.encoding == Encoding.BINARY:
            out.append((f"{at}.derived", f"{el.derived.value} is text: not encoding binary"))
        elif not digits and el.encoding not in (Encoding.ASCII, Encoding.BINARY):
            out.append((f"{at}.derived", f"{el.derived.value} is text: use encoding ascii"))


def _is_hex(s: str) -> bool:
    return len(s) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in s) and bool(s)


def _data(p: Profile, out: list[Problem]) -> None:
    from cardperso.profiles.schema import FileType

    used: dict[str, list[tuple[int, int, str]]] = {}
    for i, m in enumerate(p.data):
        at = f"data[{i}]"
        f = p.file(m.file)
        if f is None:
            out.append((f"{at}.file", f"unknown file {m.file!r}"))
            continue
        if f.type == FileType.DF:
            out.append((f"{at}.file", f"{m.file!r} is a DF; data goes into EFs"))
            continue
        if f.type == FileType.LINEAR_FIXED:
            if m.record is None:
                out.append((f"{at}.record", "required for a linear_fixed EF"))
            elif f.records is not None and m.record > f.records:
                out.append((f"{at}.record", f"{m.file!r} has only {f.records} records"))
            if m.offset:
                out.append((f"{at}.offset", "records are written whole: no offset"))
        elif m.record is not None:
            out.append((f"{at}.record", "only for a linear_fixed EF"))
        for j, el in enumerate(m.content):
            _element(p, el, f"{at}.content[{j}]", out)
        sizes = [max_element_length(p, el) for el in m.content]
        if all(s is not None for s in sizes):
            total = sum(s for s in sizes if s is not None)
            cap = f.capacity()
            if m.offset + total > cap:
                where = "record length" if f.type == FileType.LINEAR_FIXED else "size"
                out.append(
                    (
                        f"{at}.content",
                        f"up to {m.offset + total} bytes do not fit {m.file!r} ({where} {cap})",
                    )
                )
            start = m.offset if f.type == FileType.TRANSPARENT else (m.record or 0) * 100000
            for a, b, other in used.get(m.file, []):
                if start < b and a < start + total:
                    out.append((f"{at}.offset", f"overlaps {other} in {m.file!r}"))
            used.setdefault(m.file, []).append((start, start + total, at))


# -- magstripe, card body, loading, letters ---------------------------------------


def _magstripe(p: Profile, out: list[Problem]) -> None:
    from cardperso.profiles.schema import DiscretionaryKind, FieldRule

    ms = p.magstripe
    if ms is None:
        return
    f = _field_ref(p, ms.pan_field, "magstripe.pan_field", out)
    if f is not None and f.rule != FieldRule.PAN:
        out.append(("magstripe.pan_field", "must name a pan field"))
    f = _field_ref(p, ms.expiry_field, "magstripe.expiry_field", out)
    if f is not None and f.rule != FieldRule.EXPIRY:
        out.append(("magstripe.expiry_field", "must name an expiry field"))
    _template(p, ms.name, "magstripe.name", out)
    if len(set(ms.tracks)) != len(ms.tracks) or not ms.tracks:
        out.append(("magstripe.tracks", "list tracks 1 and/or 2 once each"))
    for key, items in (
        ("discretionary", ms.discretionary),
        ("chip_discretionary", ms.chip_discretionary),
    ):
        dd_len = 0
        for j, d in enumerate(items or []):
            at = f"magstripe.{key}[{j}]"
            need = {
                DiscretionaryKind.LITERAL: ("value",),
                DiscretionaryKind.FIELD: ("field",),
                DiscretionaryKind.PVV: ("pin", "pvki", "key"),
                DiscretionaryKind.CVV: ("key",),
            }[d.kind]
            for attr in ("value", "field", "pin", "pvki", "key"):
                given = getattr(d, attr) is not None
                if attr in need and not given:
                    out.append((f"{at}.{attr}", f"required for kind {d.kind.value}"))
                if attr not in need and given:
                    out.append((f"{at}.{attr}", f"not used by kind {d.kind.value}"))
            if d.kind == DiscretionaryKind.PVV and d.pin is not None and p.pin(d.pin) is None:
                out.append((f"{at}.pin", f"no PIN object named {d.pin!r}"))
            if d.kind == DiscretionaryKind.FIELD and d.field is not None:
                ff = _field_ref(p, d.field, f"{at}.field", out)
                if ff is not None and ff.rule != FieldRule.DIGITS:
                    out.append((f"{at}.field", "track discretionary data takes a digits field"))
                dd_len += (ff.max_length or 99) if ff is not None else 0
            dd_len += {"literal": len(d.value or ""), "field": 0, "pvv": 5, "cvv": 3}[d.kind]
        # track 2: SS + PAN(19) + FS + YYMM + SC + DD + ES + LRC <= 40 (ISO/IEC 7813)
        if dd_len > 40 - (1 + 19 + 1 + 4 + 3 + 1 + 1):
            out.append((f"magstripe.{key}", f"{dd_len} digits do not fit track 2 (at most 10)"))
    if ms.chip_discretionary is not None and not p.data:
        out.append(("magstripe.chip_discretionary", "no chip file mapping uses track data"))


def _card_body(p: Profile, out: list[Problem]) -> None:
    from cardperso.profiles.schema import EmbossArea, FieldRule

    body = p.card_body
    rows: set[tuple[str, int]] = set()
    for i, e in enumerate(body.emboss):
        at = f"card_body.emboss[{i}]"
        if (e.area, e.row) in rows:
            out.append((f"{at}.row", f"{e.area.value} row {e.row} used twice"))
        rows.add((e.area, e.row))
        if e.area == EmbossArea.NUMBER and e.row != 1:
            out.append((f"{at}.row", "the number area has a single line"))
        if e.area == EmbossArea.NUMBER and e.max_length is not None and e.max_length > 19:
            out.append((f"{at}.max_length", "the number line holds at most 19 characters"))
        _template(p, e.text, f"{at}.text", out)
    for i, t in enumerate(body.laser):
        _template(p, t.text, f"card_body.laser[{i}].text", out)
    if body.photo is not None:
        f = _field_ref(p, body.photo.field, "card_body.photo.field", out)
        if f is not None and f.rule != FieldRule.PHOTO:
            out.append(("card_body.photo.field", "must name a photo field"))


def _loading(p: Profile, out: list[Problem]) -> None:
    from cardperso.profiles.schema import KeyAlgorithm, KeyUsage, Protection

    k = p.key(p.loading.key)
    if k is None:
        out.append(("loading.key", f"no key named {p.loading.key!r}"))
        return
    if p.loading.protection == Protection.KD:
        if k.algorithm == KeyAlgorithm.EC_P256 or KeyUsage.SM not in k.usage:
            out.append(("loading.key", "kd protection needs a symmetric key with usage sm"))
    elif k.algorithm != KeyAlgorithm.EC_P256 or KeyUsage.KEY_AGREEMENT not in k.usage:
        out.append(("loading.key", "ecdh protection needs an ec_p256 key with key_agreement"))


def _depersonalization(p: Profile, out: list[Problem]) -> None:
    from cardperso.profiles.schema import KeyRoute, KeyUsage

    if p.depersonalization is None:
        return
    k = p.key(p.depersonalization.key)
    if k is None:
        out.append(("depersonalization.key", f"no key named {p.depersonalization.key!r}"))
        return
    if (
        k.route != KeyRoute.DERIVED_KD
        or k.diversifier != "chip_serial"
        or not {KeyUsage.ADMIN, KeyUsage.EXT_AUTH} <= set(k.usage)
    ):
        out.append(
            (
                "depersonalization.key",
                "needs a derived_kd key diversified by chip_serial with usage ext_auth and admin "
                "(the bureau proves it from the chip serial alone)",
            )
        )


def _letters(p: Profile, out: list[Problem]) -> None:
    from cardperso.profiles.schema import FieldRule

    ps = p.letters.presort
    f = _field_ref(p, ps.country_field, "letters.presort.country_field", out)
    if f is not None and f.rule != FieldRule.COUNTRY:
        out.append(("letters.presort.country_field", "must name a country field"))
    f = _field_ref(p, ps.postal_code_field, "letters.presort.postal_code_field", out)
    if f is not None and f.rule != FieldRule.POSTAL_CODE:
        out.append(("letters.presort.postal_code_field", "must name a postal_code field"))
    c = p.letters.carrier
    for i, line in enumerate(c.address):
        _template(p, line, f"letters.carrier.address[{i}]", out)
    if c.greeting is not None:
        _template(p, c.greeting, "letters.carrier.greeting", out)
    m = p.letters.pin_mailer
    mailed = [x.name for x in p.pins if x.mailer]
    if m is None:
        if mailed:
            out.append(("letters.pin_mailer", f"required: PIN {mailed[0]!r} has mailer: true"))
        return
    for i, line in enumerate(m.address):
        _template(p, line, f"letters.pin_mailer.address[{i}]", out)
    for i, name in enumerate(m.pins):
        x = p.pin(name)
        if x is None:
            out.append((f"letters.pin_mailer.pins[{i}]", f"no PIN object named {name!r}"))
        elif not x.mailer:
            out.append((f"letters.pin_mailer.pins[{i}]", f"PIN {name!r} has mailer: false"))
    for name in mailed:
        if name not in m.pins:
            out.append(
                ("letters.pin_mailer.pins", f"PIN {name!r} has mailer: true but is not listed")
            )
