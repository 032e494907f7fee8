"""The security-module half of data preparation: PINs and card keys, per profile.

A :class:`SecretPlan` is built once per profile and HSM session: it resolves every
key label the profile names (plus :class:`PrepKeys`, the bureau's own labels) to a
handle, checks that each PIN object and card key can be made, and then turns each
record into :class:`~cardperso.hsm.CardSecretRequest` objects and
:class:`~cardperso.hsm.CvvRequest` objects for one batch call each. Nothing here
sees a clear PIN or key: the HSM returns cryptograms, PIN blocks and key blocks.

The PIN methods (``PinObject.method``) of the chapter:

============================ ==============================================================
``transport`` (a)            a trivial PIN, the same on every card, with the card's
                             transport flag: loaded at initialization (no secret, no letter)
``issuer_pin_block`` (b)     :class:`~cardperso.hsm.IssuerPin`: the issuer's PIN block
                             under the shared PIN key, opened only inside the HSM
``card_generated`` (b')      the card draws the PIN (GENERATE PIN under secure messaging)
                             at the line; the HSM opens the card's answer and re-encrypts
                             it for the mailer and the issuer (:class:`GeneratedPinPlan`)
``bureau_random`` (c)        :class:`~cardperso.hsm.RandomPin`; optionally returned to the
                             issuer as a PIN block under its PIN key
``ibm3624`` (d)              :class:`~cardperso.hsm.DerivedPin` from card data and the PDK,
                             plus the issuer's offset when the profile names one
============================ ==============================================================

Every PIN the profile mails goes on the PIN mailer as a PIN block under the print
key (:attr:`PrepKeys.print_key`). A PIN with a ``pvv`` item on a track also gets
its Visa PVV from the same call.

The key routes (``CardKey.route``):

==================== =====================================================================
``derived_kd``       from a KD_MASTER key and a diversifier. ``chip_serial``: loaded at
                     initialization (:mod:`.init_script`); a record field: derived here
                     (:class:`~cardperso.hsm.DerivedKey`). Derivation ``sp800_108`` uses
                     the field's characters as ASCII bytes; ``emv_option_a`` uses ``Y``,
                     the 16 rightmost digits of field || PSN ``00`` packed (EMV Book 2
                     A1.4.1), so the key is the EMV ICC master key of that PAN
``bureau_random``    :class:`~cardperso.hsm.RandomKey`; with ``return_to_issuer`` also a
                     TR-31 block under that ISSUER_KEK (the response data)
``issuer_supplied``  :class:`~cardperso.hsm.WrappedKey` under ``transport_key`` (a KEK).
                     The profile field is hex: 16, 24 or 32 bytes are a bare ECB
                     cryptogram of the key (the SIM industry's "Ki under the transport
                     key"); anything longer is a TR-31 key block, its ASCII in hex
``card_generated``   GENERATE ASYMMETRIC KEY PAIR on the card (:mod:`.prepare`)
==================== =====================================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from cardperso import tlv
from cardperso.errors import ConfigError, HsmError
from cardperso.hsm import (
    CardSecretRequest,
    CvvRequest,
    DerivedKey,
    DerivedPin,
    HsmSession,
    IssuerPin,
    KdScheme,
    KeyHandle,
    KeyNotFoundError,
    PinBlockFormat,
    PinCopy,
    PvvRequest,
    RandomKey,
    RandomPin,
    WrappedKey,
)
from cardperso.hsm import KeyAlgorithm as HsmAlgorithm
from cardperso.hsm import KeyUsage as HsmUsage
from cardperso.profiles.schema import (
    CardKey,
    DiscretionaryKind,
    FieldRule,
    KdDerivation,
    KeyAlgorithm,
    KeyRoute,
    PinMethod,
    PinObject,
    Profile,
)
from cardperso.readers import cos

__all__ = [
    "EMV_PSN",
    "PIN_FORMATS",
    "GeneratedPinPlan",
    "KeyPlan",
    "Keyring",
    "PinPlan",
    "PrepKeys",
    "SecretPlan",
    "diversifier",
    "kd_scheme",
    "pan_of",
    "puk_ref",
    "put_key_header",
    "put_key_prefix",
    "put_pin_header",
    "put_pin_prefix",
]

EMV_PSN = "00"
"""PAN sequence number used for EMV Option A diversification (the profiles write 5F34 00)."""

PIN_FORMATS = {
    "iso0": PinBlockFormat.ISO_0,
    "iso1": PinBlockFormat.ISO_1,
    "iso3": PinBlockFormat.ISO_3,
    "iso4": PinBlockFormat.ISO_4,
}

_HSM_ALGORITHM = {
    KeyAlgorithm.TDES2: HsmAlgorithm.TDES_2KEY,
    KeyAlgorithm.TDES3: HsmAlgorithm.TDES_3KEY,
    KeyAlgorithm.AES128: HsmAlgorithm.AES_128,
    KeyAlgorithm.AES256: HsmAlgorithm.AES_256,
}
_CARD_TRY_LIMIT = 15  # the card OS keeps 4 bits (docs/card-os.md §2.3 PUT KEY)


@dataclass(frozen=True, slots=True)
class PrepKeys:
    """The bureau's own HSM keys for data preparation (the profile names the issuer's).

    ``card_secret`` is the CARD_SECRET key prepared PINs and keys travel under;
    ``print_key`` the PIN_ENCRYPTION key the PIN mailer blocks are made under (the
    lettershop prints from it); ``mailer_format`` the mailer's PIN block format
    (default: ISO 0 for a TDES print key and a card with a PAN, ISO 1 without a
    PAN, ISO 4 for an AES print key).
    """

    card_secret: str = "CARD.SECRET"  # noqa: S105 - a key label, not a password
    print_key: str = "ZPK.PRINT"
    mailer_format: PinBlockFormat | None = None


class Keyring:
    """Key handles by label, looked up once through the session (each lookup audited)."""

    def __init__(self, session: HsmSession) -> None:
        self._session = session
        self._handles: dict[str, KeyHandle] = {}

    def get(self, label: str, usage: HsmUsage | tuple[HsmUsage, ...], where: str) -> KeyHandle:
        """The handle of ``label``, which must have ``usage`` (or one of several)."""
        handle = self._handles.get(label)
        if handle is None:
            try:
                handle = self._session.get_key(label)
            except KeyNotFoundError:
                raise ConfigError(f"{where}: no HSM key labelled {label!r}") from None
            self._handles[label] = handle
        usages = usage if isinstance(usage, tuple) else (usage,)
        if handle.usage not in usages:
            need = " or ".join(u.value for u in usages)
            raise ConfigError(
                f"{where}: HSM key {label!r} has usage {handle.usage.value}, {need} needed"
            )
        return handle

    def handles(self) -> list[KeyHandle]:
        return [self._handles[k] for k in sorted(self._handles)]


# -- command data fields (docs/card-os.md §2.3, PUT KEY / PUT PIN) --------------------------


def _t(tag: int, value: int) -> bytes:
    return tlv.encode(tag, bytes([value]))


def put_pin_header(pin: PinObject) -> bytes:
    return bytes([0x80, 0xD8, 0x01, pin.ref])


def put_key_header(key: CardKey) -> bytes:
    return bytes([0x80, 0xD8, 0x00, key.ref])


def puk_ref(profile: Profile, pin: PinObject) -> int:
    """The card reference of a PIN's PUK (0: none)."""
    puk = profile.pin(pin.puk) if pin.puk else None
    return puk.ref if puk is not None else 0


def put_pin_prefix(profile: Profile, pin: PinObject) -> bytes:
    """The PUT PIN attributes before the ``8F`` PIN block: tries, PUK, flags, lengths."""
    flags = (0x01 if pin.method == PinMethod.TRANSPORT else 0) | (0x02 if pin.is_puk else 0)
    return b"".join(
        [
            _t(0x80, pin.try_limit),
            _t(0x81, puk_ref(profile, pin)),
            _t(0x82, flags),
            _t(0x83, pin.min_length),
            _t(0x84, pin.max_length),
        ]
    )


def put_key_prefix(key: CardKey, where: str) -> bytes:
    """The PUT KEY attributes before the ``8F`` key value: algorithm, usage, version, tries."""
    if key.try_limit > _CARD_TRY_LIMIT:
        raise ConfigError(f"{where}.try_limit: this card OS counts at most {_CARD_TRY_LIMIT}")
    return b"".join(
        [
            _t(0x80, key.algorithm.card_code),
            _t(0x81, key.usage_bits),
            _t(0x82, key.version),
            _t(0x83, key.try_limit),
        ]
    )


def kd_scheme(key: CardKey) -> KdScheme:
    """The HSM's KD scheme for a derived key's derivation method."""
    if key.derivation == KdDerivation.EMV_OPTION_A:
        return KdScheme.EMV_3DES
    return KdScheme.AES_SP800_108


def diversifier(key: CardKey, values: Mapping[str, str]) -> bytes:
    """The diversification data of a field-diversified derived key (see the module notes)."""
    value = values.get(key.diversifier, "")
    if key.derivation == KdDerivation.EMV_OPTION_A:
        digits = (value + EMV_PSN)[-16:].rjust(16, "0")
        if not digits.isascii() or not digits.isdigit():
            raise ValueError("EMV Option A diversification needs a numeric field")
        return bytes.fromhex(digits)
    return value.encode("ascii")


def pan_of(profile: Profile, values: Mapping[str, str]) -> str | None:
    """The record's PAN (the magnetic stripe's PAN field, else the first pan field)."""
    if profile.magstripe is not None:
        return values.get(profile.magstripe.pan_field) or None
    for f in profile.input.fields:
        if f.rule == FieldRule.PAN:
            return values.get(f.name) or None
    return None


def _has_pan(profile: Profile) -> bool:
    return profile.magstripe is not None or any(
        f.rule == FieldRule.PAN for f in profile.input.fields
    )


# -- plans ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PinPlan:
    """How one PIN object of the profile is made for every record."""

    pin: PinObject
    header: bytes
    prefix: bytes
    copies: tuple[PinCopy, ...]
    mailer: int | None  # index into copies of the PIN mailer block
    issuer: int | None  # index into copies of the block returned to the issuer
    pvv: PvvRequest | None
    issuer_key: KeyHandle | None = None
    pdk: KeyHandle | None = None

    def source(self, values: Mapping[str, str]) -> IssuerPin | RandomPin | DerivedPin:
        p = self.pin
        if p.method == PinMethod.ISSUER_PIN_BLOCK:
            assert p.issuer is not None and self.issuer_key is not None
            block = bytes.fromhex(values[p.issuer.field])
            return IssuerPin(self.issuer_key, block, PIN_FORMATS[p.issuer.format.value])
        if p.method == PinMethod.IBM3624:
            d = p.ibm3624
            assert d is not None and self.pdk is not None
            data = values[d.validation_field][
                d.validation_start : d.validation_start + d.validation_length
            ]
            offset = values.get(d.offset_field) if d.offset_field else None
            return DerivedPin(
                self.pdk, data, d.decimalization_table, p.length, offset or None, d.pad
            )
        return RandomPin(p.length)


@dataclass(frozen=True, slots=True)
class GeneratedPinPlan:
    """A PIN the card generates at the line; the HSM only re-encrypts it (``copies``)."""

    pin: PinObject
    apdu: bytes  # GENERATE PIN, to be sent under secure messaging
    copies: tuple[PinCopy, ...]
    mailer: int | None
    issuer: int | None


@dataclass(frozen=True, slots=True)
class KeyPlan:
    """How one card key loaded at personalization is made for every record."""

    key: CardKey
    header: bytes
    prefix: bytes
    master: KeyHandle | None = None
    kek: KeyHandle | None = None
    export_under: KeyHandle | None = None
    wrapped_hex: bool = False

    def source(self, values: Mapping[str, str]) -> RandomKey | DerivedKey | WrappedKey:
        k = self.key
        if k.route == KeyRoute.DERIVED_KD:
            assert self.master is not None
            return DerivedKey(self.master, diversifier(k, values), kd_scheme(k))
        if k.route == KeyRoute.ISSUER_SUPPLIED:
            assert self.kek is not None and k.field is not None
            raw = values[k.field]
            if not self.wrapped_hex:
                return WrappedKey(self.kek, raw)
            data = bytes.fromhex(raw)
            if len(data) in (16, 24, 32):
                return WrappedKey(self.kek, data)
            if not data.isascii():
                raise ValueError("a key cryptogram is 16, 24 or 32 bytes, or a TR-31 key block")
            return WrappedKey(self.kek, data.decode("ascii"))
        return RandomKey(_HSM_ALGORITHM[k.algorithm])


@dataclass(frozen=True, slots=True)
class CvvPlan:
    """The CVVs a record needs: (computed name, CVK, service code)."""

    items: tuple[tuple[str, KeyHandle, str], ...]


class SecretPlan:
    """Every HSM-made secret of one profile, resolved against one session."""

    def __init__(self, profile: Profile, session: HsmSession, keys: PrepKeys) -> None:
        self.profile = profile
        self.ring = Keyring(session)
        self.prep = keys
        self.card_secret = self.ring.get(keys.card_secret, HsmUsage.CARD_SECRET, "card_secret")
        self.print_key: KeyHandle | None = None
        self.mailer_format: PinBlockFormat | None = None
        self.generated: list[GeneratedPinPlan] = []
        self.pins = self._pin_plans()
        self.keys = self._key_plans()
        self.cvvs = self._cvv_plan()
        self._pin_names = tuple(f"/{p.pin.name}" for p in self.pins)
        self._key_names = tuple(f"/{k.key.name}" for k in self.keys)
        self._key_versions = tuple(f"{k.key.version:02X}" for k in self.keys)

    # -- building ---------------------------------------------------------------------

    def _mailer(self) -> tuple[KeyHandle, PinBlockFormat]:
        if self.print_key is None or self.mailer_format is None:
            key = self.ring.get(self.prep.print_key, HsmUsage.PIN_ENCRYPTION, "print_key")
            fmt = self.prep.mailer_format
            if fmt is None:
                if key.algorithm.is_aes:
                    fmt = PinBlockFormat.ISO_4
                else:
                    fmt = PinBlockFormat.ISO_0 if _has_pan(self.profile) else PinBlockFormat.ISO_1
            if fmt == PinBlockFormat.ISO_4 and not _has_pan(self.profile):
                raise ConfigError("print_key: an AES print key needs ISO format 4, and a PAN")
            self.print_key, self.mailer_format = key, fmt
        return self.print_key, self.mailer_format

    def _pvv_for(self, pin: PinObject) -> PvvRequest | None:
        ms = self.profile.magstripe
        if ms is None:
            return None
        found: set[tuple[str, str]] = set()
        for d in [*ms.discretionary, *(ms.chip_discretionary or [])]:
            if d.kind == DiscretionaryKind.PVV and d.pin == pin.name:
                found.add((d.key or "", d.pvki or ""))
        if not found:
            return None
        if len(found) > 1:
            raise ConfigError(f"magstripe: PIN {pin.name!r} has PVVs under different keys")
        label, pvki = found.pop()
        return PvvRequest(self.ring.get(label, HsmUsage.PIN_VERIFICATION, "magstripe.pvv"), pvki)

    def _pin_plans(self) -> list[PinPlan]:
        out: list[PinPlan] = []
        for i, p in enumerate(self.profile.pins):
            at = f"pins[{i}]"
            if p.method == PinMethod.TRANSPORT:
                continue  # same on every card: the initialization script loads it
            copies: list[PinCopy] = []
            mailer = issuer = None
            if p.mailer:
                key, fmt = self._mailer()
                mailer = len(copies)
                copies.append(PinCopy(key, fmt))
            if p.return_to_issuer is not None:
                r = p.return_to_issuer
                issuer = len(copies)
                rkey = self.ring.get(r.key, HsmUsage.PIN_ENCRYPTION, f"{at}.return_to_issuer")
                copies.append(PinCopy(rkey, PIN_FORMATS[r.format.value]))
            if p.method == PinMethod.CARD_GENERATED:
                apdu = cos.generate_pin(
                    p.ref,
                    p.length,
                    p.try_limit,
                    puk_ref(self.profile, p),
                    p.min_length,
                    p.max_length,
                )
                self.generated.append(GeneratedPinPlan(p, apdu, tuple(copies), mailer, issuer))
                continue
            ikey = pdk = None
            if p.issuer is not None:
                ikey = self.ring.get(p.issuer.key, HsmUsage.PIN_ENCRYPTION, f"{at}.issuer.key")
            if p.ibm3624 is not None:
                pdk = self.ring.get(p.ibm3624.pdk, HsmUsage.PIN_VERIFICATION, f"{at}.ibm3624")
            out.append(
                PinPlan(
                    p,
                    put_pin_header(p),
                    put_pin_prefix(self.profile, p),
                    tuple(copies),
                    mailer,
                    issuer,
                    self._pvv_for(p),
                    ikey,
                    pdk,
                )
            )
        return out

    def _key_plans(self) -> list[KeyPlan]:
        out: list[KeyPlan] = []
        for i, k in enumerate(self.profile.keys):
            at = f"keys[{i}]"
            if k.route == KeyRoute.CARD_GENERATED:
                continue
            prefix = put_key_prefix(k, at)
            if k.route == KeyRoute.DERIVED_KD:
                usages: tuple[HsmUsage, ...] = (HsmUsage.KD_MASTER,)
                if k.derivation == KdDerivation.EMV_OPTION_A and k.diversifier != "chip_serial":
                    usages = (HsmUsage.KD_MASTER, HsmUsage.EMV_IMK)
                master = self.ring.get(k.master_key or "", usages, f"{at}.master_key")
                check_derived(k, master, at)
                if k.diversifier == "chip_serial":
                    continue  # loaded at initialization
                out.append(KeyPlan(k, put_key_header(k), prefix, master=master))
            elif k.route == KeyRoute.ISSUER_SUPPLIED:
                kek = self.ring.get(k.transport_key or "", HsmUsage.KEK, f"{at}.transport_key")
                spec = self.profile.input_field(k.field or "")
                hexed = spec is not None and spec.rule == FieldRule.HEX
                out.append(KeyPlan(k, put_key_header(k), prefix, kek=kek, wrapped_hex=hexed))
            else:
                export = None
                if k.return_to_issuer:
                    export = self.ring.get(
                        k.return_to_issuer, HsmUsage.ISSUER_KEK, f"{at}.return_to_issuer"
                    )
                out.append(KeyPlan(k, put_key_header(k), prefix, export_under=export))
        return out

    def _cvv_plan(self) -> CvvPlan:
        ms = self.profile.magstripe
        items: list[tuple[str, KeyHandle, str]] = []
        if ms is not None:
            for name, dd, code in (
                ("cvv", ms.discretionary, ms.service_code),
                ("icvv", ms.chip_discretionary or [], "999"),
            ):
                labels = {d.key or "" for d in dd if d.kind == DiscretionaryKind.CVV}
                if len(labels) > 1:
                    raise ConfigError(f"magstripe: the {name} is asked for under different keys")
                if labels:
                    cvk = self.ring.get(labels.pop(), HsmUsage.CVK, "magstripe.cvv")
                    items.append((name, cvk, code))
        return CvvPlan(tuple(items))

    # -- per record -------------------------------------------------------------------

    def requests(self, values: Mapping[str, str], record_id: str) -> list[CardSecretRequest]:
        """The card-secret requests of one record: PINs first, then keys."""
        pan = pan_of(self.profile, values)
        out = [
            CardSecretRequest(
                record_id + name,
                p.header,
                p.source(values),
                p.prefix,
                pan=pan,
                copies=p.copies,
                pvv=p.pvv,
            )
            for p, name in zip(self.pins, self._pin_names, strict=True)
        ]
        out.extend(
            CardSecretRequest(
                record_id + name,
                k.header,
                k.source(values),
                k.prefix,
                export_under=k.export_under,
                key_version=version,
            )
            for k, name, version in zip(self.keys, self._key_names, self._key_versions, strict=True)
        )
        return out

    def cvv_requests(self, values: Mapping[str, str]) -> list[CvvRequest]:
        ms = self.profile.magstripe
        if ms is None:
            return []
        pan, expiry = values[ms.pan_field], values[ms.expiry_field]
        return [CvvRequest(cvk, pan, expiry, code) for _, cvk, code in self.cvvs.items]


def check_derived(key: CardKey, master: KeyHandle, where: str) -> None:
    """A derived key's algorithm must be what its master key derives (KD as long as KM)."""
    if key.derivation == KdDerivation.EMV_OPTION_A:
        ok, what = master.algorithm.is_tdes and key.algorithm == KeyAlgorithm.TDES2, "tdes2"
    elif master.algorithm.is_aes:
        want = (
            KeyAlgorithm.AES128 if master.algorithm == HsmAlgorithm.AES_128 else KeyAlgorithm.AES256
        )
        ok, what = key.algorithm == want, want.value
    else:
        ok, what = False, "an AES master key"
    if not ok:
        raise ConfigError(
            f"{where}.algorithm: master key {master.label!r} ({master.algorithm}) with "
            f"derivation {key.derivation.value} makes {what} keys"
        )


_REQUEST = re.compile(r"request [0-9]+(?: \(.*?\))?: ")


def hsm_reason(e: HsmError, *, keep_request: bool = False) -> str:
    """An HSM error's message without ``HSM <operation>:`` and, unless ``keep_request``,
    without the ``request <n> (<context>):`` of a batch call."""
    text = str(e).removeprefix(f"HSM {e.operation}: ")
    m = None if keep_request else _REQUEST.match(text)
    return text[m.end() :] if m else text
