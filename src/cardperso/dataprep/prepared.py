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
bytes as upper-case hex; :meth:`PreparedCard.to_line` one JSON Lines line.
:meth:`PreparedCard.from_json` reads it back. Equal cards give equal bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
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
    EXTERNAL_AUTH = "external_auth"
    LOAD_KD = "load_kd"
    GENERATE_PIN = "generate_pin"


def _hex(b: bytes) -> str:
    return b.hex().upper()


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
        """One JSON Lines line (compact, ASCII, newline-terminated)."""
        return _ENCODE(self.to_json()).encode("ascii") + b"\n"

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
