"""The PreparedCard: everything the line needs to make one card, with no secret in clear.

A prepared card is the output of data preparation for one issuer record (DESIGN.md
§2): the chip script with the expected answer of every step (the chapter's
"command strings and corresponding response strings"), the magnetic-stripe tracks,
the card-body text and photo, the letters, and the response data for the issuer.
PINs and keys appear only as cryptograms under a CARD_SECRET key (opened only
inside the HSM, straight into one card's secure-messaging channel), as PIN blocks
under a PIN key, or as TR-31 key blocks.

Steps (:class:`Step`), by kind:

``apdu``          send ``apdu``; with ``sm`` the line wraps it through the HSM
                  (``card_sm_wrap``) and unwraps the answer (``card_sm_unwrap``)
``secret``        ``card_sm_wrap(channel, header, cryptogram, transport=<CARD_SECRET
                  key>, iv=iv)``: a PUT PIN / PUT KEY the HSM opens for this command only
``open_sm``       GENERAL AUTHENTICATE with card key ``key_ref``; the HSM finishes it
                  with ``card_sm_open(master_key, diversifier, ...)``
``open_ecdh``     inside the open channel: READ PUBLIC KEY of the card's EC key
                  ``key_ref`` (the channel vouches for the point), then the key
                  agreement (``card_sm_agree`` / ``card_sm_open_ecdh``); from here the
                  channel is keyed by ECDH (docs/card-os.md §8.3)
``external_auth`` GET CHALLENGE, then EXTERNAL AUTHENTICATE of ``key_ref`` with the
                  HSM's ``external_auth_cryptogram(master_key, diversifier, challenge)``
                  (both under SM when ``sm``)
``load_kd``       initialization only: PUT KEY in clear of ``header`` with ``data``
                  (the public attributes) and ``8F`` KD from ``kd_for_initialization``
``generate_pin``  send ``apdu`` (GENERATE PIN, the card makes the PIN) wrapped, and give
                  the answer to ``card_sm_unwrap_pin`` with ``copies`` (key label, PIN
                  block format) and ``pan``: the PIN leaves the HSM only as those PIN
                  blocks, which the line keeps under ``collect``. The mailer and the
                  response data then list that PIN with an empty ``block``: copy 0 is the
                  mailer's, copy 1 (if any) the issuer's

``diversifier`` is ``"chip_serial"`` (the serial the card reports in ``GET DATA
DF01``) or card data as hex. Each step carries the status word it must end with
and, where the answer is known in advance, the data (``expect_data``); for
protected steps both are the inner (unwrapped) values. ``collect`` names response
data the line keeps (a card-generated public key for the response data).

Serialization: :meth:`PreparedCard.to_json` gives plain JSON types in a fixed order,
bytes as upper-case hex; :meth:`PreparedCard.to_line` one JSON Lines line: the same
as compact ``json`` of ``to_json()``, written directly (a million cards are a
million lines: no intermediate dictionaries, and each step's text made once -
the steps every card shares are made once per profile).
:meth:`PreparedCard.from_json` reads it back. Equal cards give equal bytes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from json.encoder import encode_basestring_ascii as _str
from typing import Any

__all__ = [
    "FORMAT_ID",
    "CardBodyData",
    "CarrierData",
    "KeyResponse",
    "MailerData",
    "MailerPin",
    "PinResponse",
    "PreparedCard",
    "Step",
    "StepKind",
]

FORMAT_ID = "cardperso-prepared/1"
SW_OK = 0x9000
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


class StepKind(StrEnum):
    """What the line does for one step (see the module notes)."""

    APDU = "apdu"
    SECRET = "secret"  # noqa: S105 - a step kind, not a password
    OPEN_SM = "open_sm"
    OPEN_ECDH = "open_ecdh"
    EXTERNAL_AUTH = "external_auth"
    LOAD_KD = "load_kd"
    GENERATE_PIN = "generate_pin"


def _hex(b: bytes) -> str:
    return b.hex().upper()


def _scalar(v: object) -> str:
    """One JSON scalar as ``json`` writes it (compact, ASCII)."""
    if type(v) is str:
        return _str(v)
    if type(v) is int:
        return int.__repr__(v)
    if type(v) is float and math.isfinite(v):
        return float.__repr__(v)
    return _ENCODE(v)


_HEADS: dict[tuple[str, str], str] = {}
"""The text a step starts with, by (kind, note)."""
_SW_OK = f',"expect_sw":"{SW_OK:04X}"'


def _strings(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ",".join([_str(x) for x in items]) + "]"


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a chip script; which fields matter depends on ``kind``."""

    kind: StepKind
    note: str
    apdu: bytes = b""
    sm: bool = False
    header: bytes = b""
    data: bytes = b""
    cryptogram: bytes = b""
    iv: bytes = b""
    key_ref: int = 0
    master_key: str = ""
    diversifier: str = ""
    scheme: str = ""
    expect_sw: int = SW_OK
    expect_data: bytes | None = None
    collect: str = ""
    copies: tuple[tuple[str, int], ...] = ()
    pan: str = ""
    _text: str | None = field(default=None, init=False, repr=False, compare=False)
    """:meth:`json_text`, once made (a step shared by every card is written once)."""

    def json_text(self) -> str:
        """Compact JSON of :meth:`to_json`, made once per step."""
        text = self._text
        if text is not None:
            return text
        head = _HEADS.get((self.kind, self.note))
        if head is None:  # the notes of a profile's steps repeat from card to card
            if len(_HEADS) >= 4096:
                _HEADS.clear()
            head = _HEADS[(self.kind, self.note)] = (
                '{"kind":' + _str(self.kind) + ',"note":' + _str(self.note)
            )
        out = [head]
        if self.apdu:
            out += [',"apdu":"', self.apdu.hex().upper(), '"']
        if self.sm:
            out.append(',"sm":true')
        if self.header:
            out += [',"header":"', self.header.hex().upper(), '"']
        if self.data:
            out += [',"data":"', self.data.hex().upper(), '"']
        if self.cryptogram:
            out += [
                ',"cryptogram":"',
                self.cryptogram.hex().upper(),
                '","iv":"',
                self.iv.hex().upper(),
                '"',
            ]
        if self.key_ref:
            out += [',"key_ref":', _scalar(self.key_ref)]
        if self.master_key:
            out += [
                ',"master_key":',
                _str(self.master_key),
                ',"diversifier":',
                _str(self.diversifier),
                ',"scheme":',
                _str(self.scheme),
            ]
        out.append(_SW_OK if self.expect_sw == SW_OK else f',"expect_sw":"{self.expect_sw:04X}"')
        if self.expect_data is not None:
            out += [',"expect_data":"', self.expect_data.hex().upper(), '"']
        if self.collect:
            out += [',"collect":', _str(self.collect)]
        if self.copies:
            copies = ",".join(
                ['{"key":' + _str(k) + ',"format":' + _scalar(f) + "}" for k, f in self.copies]
            )
            out += [',"copies":[', copies, "]"]
        if self.pan:
            out += [',"pan":', _str(self.pan)]
        out.append("}")
        text = "".join(out)
        object.__setattr__(self, "_text", text)
        return text

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind.value, "note": self.note}
        if self.apdu:
            out["apdu"] = _hex(self.apdu)
        if self.sm:
            out["sm"] = True
        if self.header:
            out["header"] = _hex(self.header)
        if self.data:
            out["data"] = _hex(self.data)
        if self.cryptogram:
            out["cryptogram"] = _hex(self.cryptogram)
            out["iv"] = _hex(self.iv)
        if self.key_ref:
            out["key_ref"] = self.key_ref
        if self.master_key:
            out["master_key"] = self.master_key
            out["diversifier"] = self.diversifier
            out["scheme"] = self.scheme
        out["expect_sw"] = f"{self.expect_sw:04X}"
        if self.expect_data is not None:
            out["expect_data"] = _hex(self.expect_data)
        if self.collect:
            out["collect"] = self.collect
        if self.copies:
            out["copies"] = [{"key": k, "format": f} for k, f in self.copies]
        if self.pan:
            out["pan"] = self.pan
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Step:
        def b(name: str) -> bytes:
            return bytes.fromhex(d.get(name, ""))

        expect = d.get("expect_data")
        return cls(
            kind=StepKind(d["kind"]),
            note=d["note"],
            apdu=b("apdu"),
            sm=bool(d.get("sm", False)),
            header=b("header"),
            data=b("data"),
            cryptogram=b("cryptogram"),
            iv=b("iv"),
            key_ref=int(d.get("key_ref", 0)),
            master_key=d.get("master_key", ""),
            diversifier=d.get("diversifier", ""),
            scheme=d.get("scheme", ""),
            expect_sw=int(d["expect_sw"], 16),
            expect_data=None if expect is None else bytes.fromhex(expect),
            collect=d.get("collect", ""),
            copies=tuple((c["key"], int(c["format"])) for c in d.get("copies", [])),
            pan=d.get("pan", ""),
        )


@dataclass(frozen=True, slots=True)
class CardBodyData:
    """Visual personalization: embossed lines, engraved text, the photo (1-bit rows)."""

    emboss: tuple[tuple[str, int, str], ...] = ()
    laser: tuple[tuple[str, float, float, float, str], ...] = ()
    photo: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "emboss": [list(e) for e in self.emboss],
            "laser": [list(t) for t in self.laser],
            "photo": self.photo,
        }

    def json_text(self) -> str:
        emboss = ",".join([f"[{_str(a)},{_scalar(r)},{_str(t)}]" for a, r, t in self.emboss])
        laser = ",".join(["[" + ",".join([_scalar(x) for x in t]) + "]" for t in self.laser])
        photo = "null" if self.photo is None else _ENCODE(self.photo)
        return f'{{"emboss":[{emboss}],"laser":[{laser}],"photo":{photo}}}'

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CardBodyData:
        return cls(
            tuple((str(a), int(r), str(t)) for a, r, t in d["emboss"]),
            tuple((str(s), float(x), float(y), float(h), str(t)) for s, x, y, h, t in d["laser"]),
            d["photo"],
        )


@dataclass(frozen=True, slots=True)
class CarrierData:
    """The card carrier: template, address block, greeting, card position."""

    template: str
    address: tuple[str, ...]
    greeting: str | None
    card_offset_mm: float

    def to_json(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "address": list(self.address),
            "greeting": self.greeting,
            "card_offset_mm": self.card_offset_mm,
        }

    def json_text(self) -> str:
        greeting = "null" if self.greeting is None else _str(self.greeting)
        return (
            f'{{"template":{_str(self.template)},"address":{_strings(self.address)},'
            f'"greeting":{greeting},"card_offset_mm":{_scalar(self.card_offset_mm)}}}'
        )


@dataclass(frozen=True, slots=True)
class MailerPin:
    """One PIN on the PIN mailer: a PIN block under the print key, never the PIN."""

    name: str
    key: str
    format: int
    block: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "format": self.format,
            "block": _hex(self.block),
        }

    def json_text(self) -> str:
        return (
            f'{{"name":{_str(self.name)},"key":{_str(self.key)},'
            f'"format":{_scalar(self.format)},"block":"{_hex(self.block)}"}}'
        )


@dataclass(frozen=True, slots=True)
class MailerData:
    """The PIN mailer, printed blind by the lettershop from the PIN blocks."""

    template: str
    address: tuple[str, ...]
    delay_days: int
    pins: tuple[MailerPin, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "address": list(self.address),
            "delay_days": self.delay_days,
            "pins": [p.to_json() for p in self.pins],
        }

    def json_text(self) -> str:
        pins = ",".join([p.json_text() for p in self.pins])
        return (
            f'{{"template":{_str(self.template)},"address":{_strings(self.address)},'
            f'"delay_days":{_scalar(self.delay_days)},"pins":[{pins}]}}'
        )


@dataclass(frozen=True, slots=True)
class KeyResponse:
    """A card key generated at the bureau, for the issuer: TR-31 under its KEK."""

    name: str
    ref: int
    kek: str
    block: str
    kcv: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ref": self.ref,
            "kek": self.kek,
            "block": self.block,
            "kcv": self.kcv,
        }

    def json_text(self) -> str:
        return (
            f'{{"name":{_str(self.name)},"ref":{_scalar(self.ref)},"kek":{_str(self.kek)},'
            f'"block":{_str(self.block)},"kcv":{_str(self.kcv)}}}'
        )


@dataclass(frozen=True, slots=True)
class PinResponse:
    """A PIN generated at the bureau, for the issuer: a PIN block under its PIN key."""

    name: str
    key: str
    format: int
    block: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "format": self.format,
            "block": _hex(self.block),
        }

    def json_text(self) -> str:
        return (
            f'{{"name":{_str(self.name)},"key":{_str(self.key)},'
            f'"format":{_scalar(self.format)},"block":"{_hex(self.block)}"}}'
        )


@dataclass(frozen=True, slots=True)
class PreparedCard:
    """One card, prepared: see the module notes for what each part is."""

    batch_id: str
    seq: int
    line: int
    profile: str
    profile_version: int
    channel_key: str
    protection_note: str
    init_steps: tuple[Step, ...]
    script: tuple[Step, ...]
    tracks: dict[int, str] = field(default_factory=dict)
    card_body: CardBodyData = CardBodyData()
    presort: tuple[str, str, str] = ("", "", "")
    carrier: CarrierData | None = None
    mailer: MailerData | None = None
    response_keys: tuple[KeyResponse, ...] = ()
    response_pins: tuple[PinResponse, ...] = ()
    key_checks: tuple[tuple[str, int, str], ...] = ()
    collect: tuple[str, ...] = ()

    @property
    def record_id(self) -> str:
        """Batch id and sequence number: the card's name from here to the report."""
        return f"{self.batch_id}/{self.seq:07d}"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types in a fixed order."""
        return {
            "format": FORMAT_ID,
            "record": {
                "id": self.record_id,
                "batch_id": self.batch_id,
                "seq": self.seq,
                "line": self.line,
            },
            "profile": {"id": self.profile, "version": self.profile_version},
            "loading": {"channel_key": self.channel_key, "note": self.protection_note},
            "init_steps": [s.to_json() for s in self.init_steps],
            "script": [s.to_json() for s in self.script],
            "tracks": {str(n): t for n, t in sorted(self.tracks.items())},
            "card_body": self.card_body.to_json(),
            "letters": {
                "presort": list(self.presort),
                "carrier": None if self.carrier is None else self.carrier.to_json(),
                "pin_mailer": None if self.mailer is None else self.mailer.to_json(),
            },
            "response": {
                "keys": [k.to_json() for k in self.response_keys],
                "pins": [p.to_json() for p in self.response_pins],
                "key_checks": [{"name": n, "ref": r, "kcv": k} for n, r, k in self.key_checks],
                "collected_at_line": list(self.collect),
            },
        }

    def to_line(self) -> bytes:
        """One JSON Lines line (compact, ASCII, newline-terminated): the bytes of compact
        ``json`` of :meth:`to_json`, written without building it."""
        tracks = ",".join([f'"{n}":{_str(t)}' for n, t in sorted(self.tracks.items())])
        checks = ",".join(
            [
                f'{{"name":{_str(n)},"ref":{_scalar(r)},"kcv":{_scalar(k)}}}'
                for n, r, k in self.key_checks
            ]
        )
        text = "".join(
            [
                f'{{"format":"{FORMAT_ID}","record":{{"id":{_str(self.record_id)},'
                f'"batch_id":{_str(self.batch_id)},"seq":{_scalar(self.seq)},'
                f'"line":{_scalar(self.line)}}},'
                f'"profile":{{"id":{_str(self.profile)},'
                f'"version":{_scalar(self.profile_version)}}},'
                f'"loading":{{"channel_key":{_str(self.channel_key)},'
                f'"note":{_str(self.protection_note)}}},"init_steps":[',
                ",".join([s.json_text() for s in self.init_steps]),
                '],"script":[',
                ",".join([s.json_text() for s in self.script]),
                '],"tracks":{',
                tracks,
                '},"card_body":',
                self.card_body.json_text(),
                ',"letters":{"presort":',
                _strings(self.presort),
                ',"carrier":',
                "null" if self.carrier is None else self.carrier.json_text(),
                ',"pin_mailer":',
                "null" if self.mailer is None else self.mailer.json_text(),
                '},"response":{"keys":[',
                ",".join([k.json_text() for k in self.response_keys]),
                '],"pins":[',
                ",".join([p.json_text() for p in self.response_pins]),
                '],"key_checks":[',
                checks,
                '],"collected_at_line":',
                _strings(self.collect),
                "}}\n",
            ]
        )
        return text.encode("ascii")

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PreparedCard:
        if d.get("format") != FORMAT_ID:
            raise ValueError(f"not a prepared card (format {FORMAT_ID} expected)")
        letters, resp = d["letters"], d["response"]
        ps = letters["presort"]
        car, mail = letters["carrier"], letters["pin_mailer"]
        return cls(
            batch_id=d["record"]["batch_id"],
            seq=int(d["record"]["seq"]),
            line=int(d["record"]["line"]),
            profile=d["profile"]["id"],
            profile_version=int(d["profile"]["version"]),
            channel_key=d["loading"]["channel_key"],
            protection_note=d["loading"]["note"],
            init_steps=tuple(Step.from_json(s) for s in d["init_steps"]),
            script=tuple(Step.from_json(s) for s in d["script"]),
            tracks={int(n): t for n, t in d["tracks"].items()},
            card_body=CardBodyData.from_json(d["card_body"]),
            presort=(str(ps[0]), str(ps[1]), str(ps[2])),
            carrier=None
            if car is None
            else CarrierData(
                car["template"], tuple(car["address"]), car["greeting"], car["card_offset_mm"]
            ),
            mailer=None
            if mail is None
            else MailerData(
                mail["template"],
                tuple(mail["address"]),
                int(mail["delay_days"]),
                tuple(
                    MailerPin(p["name"], p["key"], int(p["format"]), bytes.fromhex(p["block"]))
                    for p in mail["pins"]
                ),
            ),
            response_keys=tuple(
                KeyResponse(k["name"], int(k["ref"]), k["kek"], k["block"], k["kcv"])
                for k in resp["keys"]
            ),
            response_pins=tuple(
                PinResponse(p["name"], p["key"], int(p["format"]), bytes.fromhex(p["block"]))
                for p in resp["pins"]
            ),
            key_checks=tuple((k["name"], int(k["ref"]), k["kcv"]) for k in resp["key_checks"]),
            collect=tuple(resp["collected_at_line"]),
        )

    @classmethod
    def from_line(cls, line: bytes | str) -> PreparedCard:
        return cls.from_json(json.loads(line))
