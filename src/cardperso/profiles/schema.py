"""Card product profiles as data: one pydantic model per part of a product.

A profile says, for one card product, everything that turns an issuer record into
a finished card: the record fields the issuer sends (``input``), the chip's file
tree (``files``), which field goes where in which file and how it is coded
(``data``), the PIN objects and how each PIN is produced (``pins``), the card keys
and where each comes from (``keys``), the magnetic stripe (``magstripe``), what is
embossed, engraved and printed on the card body (``card_body``), how the chip is
loaded (``loading``) and what goes on the card carrier and the PIN mailer
(``letters``).

Every model forbids unknown keys (a misspelt key is an error, never silently
ignored) and every attribute carries its own docstring, which pydantic turns into
the field description of :func:`Profile.model_json_schema`. Checks that span
several parts (a mapping naming a file that does not exist, an access condition
naming a PIN that is not defined) live in :mod:`cardperso.profiles.consistency`
and run when a :class:`Profile` is built, so no inconsistent profile object exists.

Hexadecimal values (FIDs, AIDs, tags, pad bytes) and digit strings (service code,
transport PIN) must be quoted strings in YAML: unquoted, ``5000`` is the integer
five thousand and ``0000`` is zero.

Access conditions
-----------------
Each file operation carries a symbolic condition, compiled to one security-condition
byte of this card OS's compact format (ISO/IEC 7816-4 tag 8C, see
``cardperso/card/access.py``; the builders are ``cardperso.readers.cos.ac``,
``pin_sc`` and ``key_sc``):

=================== ===================================================== ======
``always``          no condition                                           ``00``
``never``           operation refused                                      ``FF``
``pin:N``           PIN object N verified                                  ``1N``
``key:N``           key N authenticated (EXTERNAL AUTHENTICATE)            ``2N``
``sm``              command sent under secure messaging                    ``40``
``sm+key:N``        all of the terms (b8 set)                              ``EN``
``pin:N|key:N``     any one of the terms (b8 clear)                        ``3N``
=================== ===================================================== ======

Terms are joined by ``+`` (all) or ``|`` (any), not both. PIN and key share the
low nibble of the byte, so one condition can name at most one reference number.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from cardperso.readers import cos

__all__ = [
    "Access",
    "CardBody",
    "CardKey",
    "CarrierLetter",
    "DataMapping",
    "Discretionary",
    "DiscretionaryKind",
    "Element",
    "EmbossArea",
    "EmbossLine",
    "Encoding",
    "FieldRule",
    "FileNode",
    "FileType",
    "Ibm3624Params",
    "InputField",
    "InputSpec",
    "IssuerPinBlock",
    "KdDerivation",
    "KeyAlgorithm",
    "KeyRoute",
    "KeyUsage",
    "LaserText",
    "Letters",
    "Loading",
    "LoadingMethod",
    "Magstripe",
    "Meaning",
    "Pad",
    "Photo",
    "PinBlockFormatName",
    "PinMailer",
    "PinMethod",
    "PinObject",
    "PinReturn",
    "Presort",
    "Profile",
    "Protection",
    "condition_byte",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


# -- scalar types -----------------------------------------------------------------


def _quoted(kind: str, example: str) -> BeforeValidator:
    def check(v: Any) -> Any:
        if not isinstance(v, str):
            raise ValueError(f"must be a quoted {kind} string such as '{example}'")
        return v

    return BeforeValidator(check)


def _hex(min_bytes: int, max_bytes: int, what: str) -> AfterValidator:
    def check(v: str) -> str:
        s = v.replace(" ", "").upper()
        if not re.fullmatch(r"[0-9A-F]*", s) or len(s) % 2:
            raise ValueError(f"{what} must be an even number of hexadecimal digits")
        if not min_bytes <= len(s) // 2 <= max_bytes:
            span = f"{min_bytes}" if min_bytes == max_bytes else f"{min_bytes} to {max_bytes}"
            raise ValueError(f"{what} must be {span} bytes")
        return s

    return AfterValidator(check)


def _fid(v: str) -> str:
    s = v.upper()
    if not re.fullmatch(r"[0-9A-F]{4}", s):
        raise ValueError("FID must be 4 hexadecimal digits")
    if s in ("0000", "FFFF", "3FFF"):
        raise ValueError(f"FID {s} is reserved (ISO/IEC 7816-4 §7.1.1)")
    return s


def _tag(v: str) -> str:
    s = v.upper()
    if not re.fullmatch(r"(?:[0-9A-F]{2}){1,3}", s):
        raise ValueError("tag must be 1 to 3 bytes of hexadecimal digits")
    b = bytes.fromhex(s)
    multi = b[0] & 0x1F == 0x1F
    if multi != (len(b) > 1) or any(x & 0x80 == 0 for x in b[1:-1]) or (multi and b[-1] & 0x80):
        raise ValueError("not a valid BER-TLV tag encoding (ISO/IEC 8825-1 §8.1.2)")
    if b[0] in (0x00, 0xFF):
        raise ValueError("tags 00 and FF are padding, not tags (ISO/IEC 7816-4 §6.3)")
    return s


def _digits(min_len: int, max_len: int, what: str) -> AfterValidator:
    def check(v: str) -> str:
        if not re.fullmatch(r"[0-9]*", v) or not min_len <= len(v) <= max_len:
            span = f"{min_len}" if min_len == max_len else f"{min_len} to {max_len}"
            raise ValueError(f"{what} must be {span} decimal digits")
        return v

    return AfterValidator(check)


Fid = Annotated[str, _quoted("4-digit hex FID", "3F00"), AfterValidator(_fid)]
Aid = Annotated[str, _quoted("hexadecimal AID", "F0000000C0FFEE01"), _hex(5, 16, "AID")]
Tag = Annotated[str, _quoted("hexadecimal tag", "5F20"), AfterValidator(_tag)]
HexByte = Annotated[str, _quoted("hexadecimal byte", "FF"), _hex(1, 1, "pad byte")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.\-]{0,31}$")]
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
KeyLabel = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")]
Ref = Annotated[int, Field(ge=1, le=15)]
TemplateText = Annotated[str, Field(min_length=1, max_length=200)]


# -- access conditions ------------------------------------------------------------

_TERM = re.compile(r"(sm)|(pin|key):([0-9]{1,2})")


def _parse_condition(text: str) -> tuple[int, list[tuple[str, int]]]:
    """(byte, [(kind, ref)...]) for a symbolic condition; ValueError explains a bad one."""
    s = text.replace(" ", "").lower()
    if s == "always":
        return cos.ALWAYS, []
    if s == "never":
        return cos.NEVER, []
    if "+" in s and "|" in s:
        raise ValueError("join terms with '+' (all) or '|' (any), not both")
    joiner = "+" if "+" in s else "|"
    terms = s.split(joiner)
    byte = 0x80 if joiner == "+" and len(terms) > 1 else 0x00
    refs: list[tuple[str, int]] = []
    seen: set[str] = set()
    ref_nibble: int | None = None
    for t in terms:
        m = _TERM.fullmatch(t)
        if not m:
            raise ValueError(
                f"bad condition term {t!r}: expected always, never, sm, pin:N or key:N"
            )
        kind = "sm" if m.group(1) else m.group(2)
        if kind in seen:
            raise ValueError(f"{kind!r} appears twice in one condition")
        seen.add(kind)
        if kind == "sm":
            byte |= cos.SM_SC
            continue
        ref = int(m.group(3))
        if not 1 <= ref <= 15:
            raise ValueError(f"{kind} reference must be 1 to 15")
        if ref_nibble is not None and ref_nibble != ref:
            raise ValueError("PIN and key in one condition must share one reference number")
        ref_nibble = ref
        byte |= cos.pin_sc(ref) if kind == "pin" else cos.key_sc(ref)
        refs.append((kind, ref))
    if byte == cos.NEVER:
        raise ValueError("this combination encodes as FF, which means 'never'")
    return byte, refs


def _condition(v: str) -> str:
    _parse_condition(v)
    return v.replace(" ", "").lower()


Condition = Annotated[str, _quoted("access condition", "pin:1"), AfterValidator(_condition)]


def condition_byte(condition: str) -> int:
    """The security-condition byte of a symbolic condition (see the module docstring)."""
    return _parse_condition(condition)[0]


def condition_refs(condition: str) -> list[tuple[str, int]]:
    """The ("pin"|"key", ref) pairs a condition names."""
    return _parse_condition(condition)[1]


class Access(_Model):
    """Access condition per operation; an operation left out is never allowed.

    EF operations: read, update, append. DF operations: delete_child, create_ef,
    create_df (the same AM bits b1-b3 under their DF meaning, ISO/IEC 7816-4
    Tables 18 and 19). Both: deactivate, activate, terminate, delete (the file itself).
    """

    read: Condition | None = None
    """EF: READ BINARY / READ RECORD."""
    update: Condition | None = None
    """EF: UPDATE BINARY / UPDATE RECORD."""
    append: Condition | None = None
    """EF: WRITE / APPEND RECORD."""
    delete_child: Condition | None = None
    """DF: DELETE FILE of a child."""
    create_ef: Condition | None = None
    """DF: CREATE FILE of an EF inside it."""
    create_df: Condition | None = None
    """DF: CREATE FILE of a DF inside it."""
    deactivate: Condition | None = None
    """DEACTIVATE FILE."""
    activate: Condition | None = None
    """ACTIVATE FILE."""
    terminate: Condition | None = None
    """TERMINATE EF / TERMINATE DF."""
    delete: Condition | None = None
    """DELETE FILE of this file itself."""

    def compact(self, is_df: bool) -> bytes:
        """The tag 8C value: AM byte 7F then SC bytes for b7..b1 (as ``cos.ac`` builds it)."""

        def sc(cond: str | None) -> int:
            return cos.NEVER if cond is None else condition_byte(cond)

        b1, b2, b3 = (
            (self.delete_child, self.create_ef, self.create_df)
            if is_df
            else (self.read, self.update, self.append)
        )
        return cos.ac(
            read=sc(b1),
            update=sc(b2),
            append=sc(b3),
            deactivate=sc(self.deactivate),
            activate=sc(self.activate),
            terminate=sc(self.terminate),
            delete=sc(self.delete),
        )

    def used(self) -> dict[str, str]:
        """Operation -> condition for the operations that are set."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


# -- file tree --------------------------------------------------------------------


class FileType(StrEnum):
    """File structures this card OS can create (ISO/IEC 7816-4 §7.4, FDB values)."""

    DF = "df"
    TRANSPARENT = "transparent"
    LINEAR_FIXED = "linear_fixed"


class FileNode(_Model):
    """One file of the tree, in creation order (a DF before its children).

    The MF comes first (FID 3F00, no parent). Every other file names its parent DF.
    """

    name: Name
    """Unique name used by data mappings and reports, e.g. ``EF.ICCID``."""
    fid: Fid
    """File identifier, 4 hex digits."""
    type: FileType
    """df, transparent or linear_fixed."""
    parent: Name | None = None
    """Name of the parent DF; omitted only for the MF."""
    aid: Aid | None = None
    """DF only: DF name / application identifier (tag 84), 5 to 16 bytes."""
    size: int | None = Field(default=None, ge=1, le=0xFFFF)
    """Transparent EF: size in bytes."""
    record_length: int | None = Field(default=None, ge=1, le=255)
    """Linear fixed EF: record length in bytes."""
    records: int | None = Field(default=None, ge=1, le=254)
    """Linear fixed EF: number of records."""
    sfi: int | None = Field(default=None, ge=1, le=30)
    """EF only: short EF identifier 1..30 (tag 88)."""
    access: Access = Access()
    """Access conditions; left-out operations are never allowed."""
    description: str = ""
    """Free text for people reading the profile."""

    @property
    def fid_value(self) -> int:
        return int(self.fid, 16)

    @property
    def is_df(self) -> bool:
        return self.type == FileType.DF

    def capacity(self) -> int:
        """Bytes of one write target: file size, or record length for a record file."""
        if self.type == FileType.TRANSPARENT:
            return self.size or 0
        if self.type == FileType.LINEAR_FIXED:
            return self.record_length or 0
        return 0

    def fcp(self) -> bytes:
        """The FCP template (tag 62) CREATE FILE carries for this node (``cos.fcp_*``)."""
        sec = self.access.compact(self.is_df)
        if self.type == FileType.DF:
            name = bytes.fromhex(self.aid) if self.aid else b""
            return cos.fcp_df(self.fid_value, name, sec=sec)
        if self.type == FileType.TRANSPARENT:
            return cos.fcp_transparent(self.fid_value, self.size or 0, self.sfi or 0, sec=sec)
        return cos.fcp_linear(
            self.fid_value, self.record_length or 0, self.records or 0, self.sfi or 0, sec=sec
        )


# -- issuer input -----------------------------------------------------------------


class FieldRule(StrEnum):
    """How an input field is validated at intake (:mod:`cardperso.dataprep.fields`)."""

    TEXT = "text"
    DIGITS = "digits"
    PAN = "pan"
    EXPIRY = "expiry"
    ICCID = "iccid"
    IMSI = "imsi"
    NAME = "name"
    EMBOSS = "emboss"
    POSTAL_CODE = "postal_code"
    COUNTRY = "country"
    HEX = "hex"
    BASE64 = "base64"
    PHOTO = "photo"


class Meaning(StrEnum):
    """What a generic text/digits/hex field holds (letters and the synthetic generator use it)."""

    GIVEN_NAME = "given_name"
    FAMILY_NAME = "family_name"
    ADDRESS_LINE = "address_line"
    ADDRESS_EXTRA = "address_extra"
    CITY = "city"
    STAFF_NUMBER = "staff_number"
    DEPARTMENT = "department"
    MSISDN = "msisdn"
    KEY_CRYPTOGRAM = "key_cryptogram"
    PIN_BLOCK = "pin_block"
    PIN_OFFSET = "pin_offset"
    CHIP_SERIAL = "chip_serial"
    """hex: the chip serial the record was prepared for (a chip-bound data set)."""
    OTHER = "other"


class InputField(_Model):
    """One field of every issuer record."""

    name: FieldName
    """Column (CSV) or key (JSON Lines) name."""
    rule: FieldRule
    """Validation rule applied at intake."""
    required: bool = True
    """False: the column may be missing or the value empty."""
    min_length: int | None = Field(default=None, ge=0, le=4096)
    """Shortest value (characters; for hex, hex digits; for base64/photo, decoded bytes)."""
    max_length: int | None = Field(default=None, ge=1, le=65536)
    """Longest value, same units as min_length."""
    country_field: FieldName | None = None
    """postal_code only: the field holding the ISO 3166-1 alpha-2 country."""
    meaning: Meaning | None = None
    """What the field holds, for text, digits and hex fields."""
    sample_prefix: Annotated[str, _digits(1, 12, "sample_prefix")] | None = None
    """Synthetic generator only: leading digits (test BIN, ICCID issuer, MCC+MNC)."""
    description: str = ""
    """Free text for people reading the profile."""


class InputSpec(_Model):
    """The issuer record layout."""

    fields: list[InputField] = Field(min_length=1)
    """Fields of one record."""
    unique: list[FieldName] = []
    """Fields whose value must not repeat within a batch (e.g. pan, iccid)."""


# -- chip data --------------------------------------------------------------------


class Encoding(StrEnum):
    """How a value becomes bytes in a chip file."""

    ASCII = "ascii"
    """Printable ASCII, one byte per character (EMV format ans)."""
    BCD = "bcd"
    """Packed decimal, right-justified, leading zero nibble if odd (EMV format n)."""
    CN = "cn"
    """Compact numeric, left-justified, trailing F nibbles (EMV format cn)."""
    TBCD = "tbcd"
    """Nibble-swapped BCD, F-filled (3GPP TS 51.011 §10.1.1 ICCID, TS 24.008 TBCD)."""
    IMSI = "imsi"
    """EF.IMSI coding: length byte, parity nibble, swapped BCD (3GPP TS 51.011 §10.3.2)."""
    BINARY = "binary"
    """Bytes as given (hex or base64 input field, hex literal, or a derived byte value)."""
    TLV = "tlv"
    """Constructed BER-TLV template: the children, concatenated, under ``tag``."""


class Pad(StrEnum):
    """Side a short value is padded on."""

    LEFT = "left"
    RIGHT = "right"


class Derived(StrEnum):
    """Values computed during data preparation, not read from the issuer record."""

    TRACK1 = "track1"
    TRACK2 = "track2"
    TRACK2_EQUIVALENT = "track2_equivalent"
    CHIP_SERIAL = "chip_serial"
    PVV = "pvv"
    CVV = "cvv"
    ICVV = "icvv"


class Element(_Model):
    """One data element written into a file; elements of a mapping are concatenated.

    Exactly one source: ``field``, ``template``, ``literal`` or ``derived`` for a
    primitive element, ``children`` for ``encoding: tlv``. With ``tag`` the
    (padded) value is wrapped as a BER-TLV data object.
    """

    encoding: Encoding
    """How the value is coded."""
    tag: Tag | None = None
    """BER-TLV tag; required for tlv, optional otherwise."""
    field: FieldName | None = None
    """Input field supplying the value."""
    template: TemplateText | None = None
    """Template rendered from input fields (see cardperso.profiles.template)."""
    literal: str | None = None
    """Constant value (text for ascii, digits for bcd/cn/tbcd, hex for binary)."""
    derived: Derived | None = None
    """A value computed during data preparation."""
    children: list[Element] | None = None
    """tlv only: the data objects inside the template."""
    length: int | None = Field(default=None, ge=1, le=0xFFFF)
    """Fixed value length in bytes; shorter values are padded, longer ones refused."""
    pad: Pad | None = None
    """Side to pad on (default: left for bcd, right otherwise)."""
    pad_byte: HexByte | None = None
    """Pad byte (default: 20 ascii, 00 bcd/binary, FF cn/tbcd)."""


class DataMapping(_Model):
    """What to write into one EF: a transparent file at an offset, or one record."""

    file: Name
    """Name of the target EF."""
    offset: int = Field(default=0, ge=0, le=0xFFFF)
    """Transparent EF: byte offset of the first element."""
    record: int | None = Field(default=None, ge=1, le=254)
    """Linear fixed EF: record number written (required there)."""
    content: list[Element] = Field(min_length=1)
    """Elements, concatenated in order."""


# -- PINs -------------------------------------------------------------------------


class PinMethod(StrEnum):
    """The four PIN methods of card personalization (and the card-generated variant)."""

    TRANSPORT = "transport"
    """Trivial transport PIN; the card forces a change before first use; no PIN letter."""
    ISSUER_PIN_BLOCK = "issuer_pin_block"
    """Issuer-generated PIN, received as an encrypted PIN block under a shared PIN key."""
    CARD_GENERATED = "card_generated"
    """The card generates the PIN and hands it, protected, to the machine for the letter."""
    BUREAU_RANDOM = "bureau_random"
    """Random PIN generated inside the bureau's HSM; optionally returned to the issuer."""
    IBM3624 = "ibm3624"
    """PIN derived from card data and a master key (IBM 3624, with an offset)."""


class PinBlockFormatName(StrEnum):
    """ISO 9564-1 PIN block formats (cardperso.payments.pinblock)."""

    ISO0 = "iso0"
    ISO1 = "iso1"
    ISO3 = "iso3"
    ISO4 = "iso4"


class IssuerPinBlock(_Model):
    """issuer_pin_block: where the encrypted PIN block is and how it is protected."""

    field: FieldName
    """Input field holding the encrypted PIN block in hex."""
    format: PinBlockFormatName = PinBlockFormatName.ISO0
    """PIN block format."""
    key: KeyLabel
    """HSM label of the PIN key shared with the issuer (zone PIN key)."""


class Ibm3624Params(_Model):
    """ibm3624: parameters of the natural-PIN derivation (IBM CCA, Appendix E)."""

    pdk: KeyLabel
    """HSM label of the PIN derivation (verification) key."""
    validation_field: FieldName = "pan"
    """Input field the validation data is taken from."""
    validation_start: int = Field(default=0, ge=0, le=18)
    """0-based index of the first digit taken."""
    validation_length: int = Field(default=16, ge=1, le=16)
    """Number of digits taken (1 to 16)."""
    pad: Annotated[str, Field(pattern=r"^[0-9A-F]$")] = "F"
    """Hex digit the validation data is right-padded with to 16 digits."""
    decimalization_table: Annotated[str, _digits(16, 16, "decimalization table")] = (
        "0123456789012345"
    )
    """16 decimal digits, one per hex digit 0-F."""
    offset_field: FieldName | None = None
    """Input field holding the issuer's PIN offset; none means offset 0 (natural PIN)."""


class PinReturn(_Model):
    """Return generated PINs to the issuer, encrypted (response data)."""

    key: KeyLabel
    """HSM label of the issuer key the PIN blocks are encrypted under."""
    format: PinBlockFormatName = PinBlockFormatName.ISO0
    """PIN block format."""


class PinObject(_Model):
    """A PIN (or PUK) object on the card (cos.put_pin)."""

    name: Name
    """Unique name, e.g. PIN1 or PUK1."""
    ref: Ref
    """Card reference number 1..15 (VERIFY P2)."""
    method: PinMethod
    """How the PIN value is produced."""
    length: int = Field(default=4, ge=4, le=12)
    """Digits of the produced PIN."""
    min_length: int = Field(default=4, ge=4, le=12)
    """Shortest PIN the card accepts on change."""
    max_length: int = Field(default=12, ge=4, le=12)
    """Longest PIN the card accepts on change."""
    try_limit: int = Field(default=3, ge=1, le=15)
    """Wrong presentations before the PIN blocks."""
    is_puk: bool = False
    """This object is an unblocking key (PUK)."""
    puk: Name | None = None
    """Name of the PUK object that unblocks this PIN."""
    mailer: bool = False
    """Print this PIN on the PIN mailer."""
    transport_value: Annotated[str, _digits(4, 12, "transport_value")] | None = None
    """transport only: the trivial PIN value (quoted digits)."""
    issuer: IssuerPinBlock | None = None
    """issuer_pin_block only."""
    ibm3624: Ibm3624Params | None = None
    """ibm3624 only."""
    return_to_issuer: PinReturn | None = None
    """bureau_random or card_generated: send the PIN back encrypted."""


# -- keys -------------------------------------------------------------------------


class KeyRoute(StrEnum):
    """Where a card key's value comes from."""

    DERIVED_KD = "derived_kd"
    """Derived in the HSM from a master key and card data (KD from KM)."""
    BUREAU_RANDOM = "bureau_random"
    """Random, generated in the bureau's HSM."""
    ISSUER_SUPPLIED = "issuer_supplied"
    """Sent by the issuer, encrypted under a key-exchange key."""
    CARD_GENERATED = "card_generated"
    """Key pair generated on the card; only the public key leaves it."""


class KeyAlgorithm(StrEnum):
    """Key algorithms of this card OS (cos.ALG_*; EC keys via GENERATE KEY PAIR)."""

    TDES2 = "tdes2"
    TDES3 = "tdes3"
    AES128 = "aes128"
    AES256 = "aes256"
    EC_P256 = "ec_p256"

    @property
    def card_code(self) -> int:
        """Algorithm byte of PUT KEY (0 for EC keys, which PUT KEY does not load)."""
        return {
            "tdes2": cos.ALG_TDES2,
            "tdes3": cos.ALG_TDES3,
            "aes128": cos.ALG_AES128,
            "aes256": cos.ALG_AES256,
        }.get(self.value, 0)

    @property
    def key_length(self) -> int:
        """Secret key bytes (EC: private scalar)."""
        return {"tdes2": 16, "tdes3": 24, "aes128": 16, "aes256": 32, "ec_p256": 32}[self.value]


class KeyUsage(StrEnum):
    """Key usages of this card OS (cos.USE_*)."""

    EXT_AUTH = "ext_auth"
    INT_AUTH = "int_auth"
    SM = "sm"
    ADMIN = "admin"
    KEY_AGREEMENT = "key_agreement"

    @property
    def card_bit(self) -> int:
        return {
            "ext_auth": cos.USE_EXT_AUTH,
            "int_auth": cos.USE_INT_AUTH,
            "sm": cos.USE_SM,
            "admin": cos.USE_ADMIN,
            "key_agreement": cos.USE_KEY_AGREEMENT,
        }[self.value]


class KdDerivation(StrEnum):
    """How a derived_kd key is computed from its master key."""

    SP800_108 = "sp800_108"
    """CMAC counter-mode KDF (NIST SP 800-108r1) over the diversifier."""
    EMV_OPTION_A = "emv_option_a"
    """EMV ICC master key derivation, option A (EMV Book 2 Annex A1.4.1), from PAN+PSN."""


class CardKey(_Model):
    """A key object on the card."""

    name: Name
    """Unique name, e.g. KD_AUTH."""
    ref: Ref
    """Card reference number 1..15."""
    route: KeyRoute
    """Where the value comes from."""
    algorithm: KeyAlgorithm
    """Key algorithm."""
    version: int = Field(default=1, ge=0, le=255)
    """Key version number."""
    usage: list[KeyUsage] = Field(min_length=1)
    """What the card lets the key do."""
    try_limit: int = Field(default=0, ge=0, le=255)
    """Failed authentications before the key blocks (0 = unlimited)."""
    master_key: KeyLabel | None = None
    """derived_kd: HSM label of the master key KM."""
    derivation: KdDerivation = KdDerivation.SP800_108
    """derived_kd: derivation method."""
    diversifier: str = "chip_serial"
    """derived_kd: 'chip_serial' or the input field the key is diversified with."""
    field: FieldName | None = None
    """issuer_supplied: input field carrying the key cryptogram (hex)."""
    transport_key: KeyLabel | None = None
    """issuer_supplied: HSM label of the key-exchange key the issuer encrypted under."""
    return_to_issuer: KeyLabel | None = None
    """bureau_random: wrap the key under this issuer key; card_generated: send the public
    key back (signed with this bureau key) in the response data."""

    @property
    def usage_bits(self) -> int:
        bits = 0
        for u in self.usage:
            bits |= u.card_bit
        return bits


# -- magnetic stripe --------------------------------------------------------------


class DiscretionaryKind(StrEnum):
    """What one piece of track discretionary data is."""

    LITERAL = "literal"
    FIELD = "field"
    PVV = "pvv"
    CVV = "cvv"


class Discretionary(_Model):
    """One piece of a track's discretionary data, in order."""

    kind: DiscretionaryKind
    """literal, field, pvv (PVKI digit + 4-digit Visa PVV) or cvv (3 digits; iCVV on chip)."""
    value: Annotated[str, Field(pattern=r"^[0-9]{1,20}$")] | None = None
    """literal: digits."""
    field: FieldName | None = None
    """field: input field holding digits."""
    pin: Name | None = None
    """pvv: the PIN object whose PVV is written."""
    pvki: Annotated[str, Field(pattern=r"^[0-9]$")] | None = None
    """pvv: PIN verification key index, one digit."""
    key: KeyLabel | None = None
    """pvv: HSM label of the PVK; cvv: of the CVK pair."""


class Magstripe(_Model):
    """ISO/IEC 7813 tracks 1 and 2 (financial transaction cards)."""

    tracks: list[Literal[1, 2]] = [1, 2]
    """Tracks written."""
    pan_field: FieldName = "pan"
    """Input field with the PAN."""
    expiry_field: FieldName = "expiry"
    """Input field with the expiry (YYMM)."""
    name: TemplateText = "{family_name|track}/{given_name|track}"
    """Track 1 name template (ISO/IEC 7813: surname/given names, 2 to 26 characters)."""
    service_code: Annotated[str, _quoted("digit", "201"), _digits(3, 3, "service_code")]
    """Three-digit service code (ISO/IEC 7813, e.g. 201 = international, IC present)."""
    discretionary: list[Discretionary] = []
    """Discretionary data on both tracks, in order."""
    chip_discretionary: list[Discretionary] | None = None
    """Discretionary data of the chip's Track 2 Equivalent Data (cvv there is the iCVV,
    computed with service code 999); none = the chip carries no track data."""
    coercivity: Literal["hico", "loco"] = "hico"
    """Stripe coercivity (ISO/IEC 7811-6 high / 7811-2 low)."""


# -- card body --------------------------------------------------------------------


class EmbossArea(StrEnum):
    """The two embossing areas of an ID-1 card (ISO/IEC 7811-1)."""

    NUMBER = "number"
    """Identification number line (ISO/IEC 7811-1: up to 19 characters)."""
    NAME = "name"
    """Name and address area (ISO/IEC 7811-1: up to 4 lines of 27 characters)."""


class EmbossLine(_Model):
    """One embossed line."""

    area: EmbossArea
    """Which embossing area."""
    row: int = Field(default=1, ge=1, le=4)
    """Line within the area (the number area has one line)."""
    text: TemplateText
    """Template of the embossed text."""
    max_length: int | None = Field(default=None, ge=1, le=27)
    """Tighter limit than the area's own (19 number / 27 name)."""


class LaserText(_Model):
    """Laser-engraved text."""

    side: Literal["front", "back"] = "front"
    """Card side engraved."""
    x_mm: float = Field(ge=0, le=85.6)
    """Left edge from the card's left edge (ID-1 card: 85.60 mm wide)."""
    y_mm: float = Field(ge=0, le=53.98)
    """Baseline from the card's top edge (ID-1 card: 53.98 mm high)."""
    height_mm: float = Field(default=2.5, gt=0, le=10)
    """Character height."""
    text: TemplateText
    """Template of the engraved text."""
    max_length: int = Field(default=40, ge=1, le=80)
    """Longest text that fits."""


class Photo(_Model):
    """A black-and-white photo engraved on the card body."""

    field: FieldName
    """Input field with the photo (rule photo: base64 of a binary PBM)."""
    side: Literal["front", "back"] = "front"
    """Card side engraved."""
    x_mm: float = Field(ge=0, le=85.6)
    """Left edge of the photo from the card's left edge."""
    y_mm: float = Field(ge=0, le=53.98)
    """Top edge of the photo from the card's top edge."""
    width_mm: float = Field(gt=0, le=40)
    """Printed width."""
    height_mm: float = Field(gt=0, le=50)
    """Printed height."""


class CardBody(_Model):
    """Visual personalization."""

    emboss: list[EmbossLine] = []
    """Embossed lines."""
    laser: list[LaserText] = []
    """Laser-engraved text."""
    photo: Photo | None = None
    """Engraved photo."""


# -- loading ----------------------------------------------------------------------


class LoadingMethod(StrEnum):
    """How initialization data reaches the chip's memory."""

    LOGICAL = "logical"
    """File-management commands with logical addresses, card by card."""
    IMAGE = "image"
    """A golden card's memory image written at physical addresses (cloning)."""


class Protection(StrEnum):
    """How personalization data is protected on the way into the chip."""

    KD = "kd"
    """Personalization data encrypted under the card-specific KD (from KM + chip serial)."""
    ECDH = "ecdh"
    """Session key agreed with the card by elliptic-curve Diffie-Hellman."""


class Loading(_Model):
    """How data reaches the chip."""

    method: LoadingMethod
    """logical or image."""
    protection: Protection
    """kd or ecdh."""
    key: Name
    """The card key protecting the load: a symmetric sm key for kd, an EC
    key_agreement key for ecdh."""


class Depersonalization(_Model):
    """The product may be depersonalized: back to INITIALIZED, ready to be
    personalized again (test cards, re-issue; docs/card-os.md §4.4). Absent: the
    bureau refuses to depersonalize cards of this product."""

    key: Name
    """The card's admin key (a derived_kd key diversified by the chip serial, usage
    ext_auth and admin) that EXTERNAL AUTHENTICATE proves before DEPERSONALIZE."""


# -- letters ----------------------------------------------------------------------


class Presort(_Model):
    """Postal presort (regional code, then local code)."""

    country_field: FieldName = "country"
    """Input field with the ISO 3166-1 alpha-2 country."""
    postal_code_field: FieldName = "postal_code"
    """Input field with the postal code."""


class CarrierLetter(_Model):
    """The card carrier: the letter the card is attached to."""

    template: Name = "carrier-standard"
    """Print template name."""
    address: list[TemplateText] = Field(min_length=2, max_length=6)
    """Address block lines."""
    greeting: TemplateText | None = None
    """Salutation line."""
    card_offset_mm: float = Field(default=80.0, ge=0, le=280)
    """Card position from the top of the carrier (moved if post-room machines bend cards)."""


class PinMailer(_Model):
    """The PIN mailer: sealed, printed blind, posted apart from and after the card."""

    template: Name = "pin-mailer-standard"
    """Print template name."""
    address: list[TemplateText] = Field(min_length=2, max_length=6)
    """Address block lines."""
    pins: list[Name] = Field(min_length=1)
    """PIN objects printed (each must have mailer: true)."""
    delay_days: int = Field(default=3, ge=1, le=30)
    """Days the mailer is posted after the card."""


class Letters(_Model):
    """Lettershop documents."""

    presort: Presort = Presort()
    """Sort order fields."""
    carrier: CarrierLetter
    """The card carrier."""
    pin_mailer: PinMailer | None = None
    """The PIN mailer, when a PIN is mailed."""


# -- the profile ------------------------------------------------------------------


class Profile(_Model):
    """One card product."""

    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_\-]{1,31}$")]
    """Profile identifier named in the issuer file header."""
    version: int = Field(ge=1)
    """Profile version named in the issuer file header."""
    title: str = Field(min_length=1)
    """Human title."""
    description: str = ""
    """Free text."""
    input: InputSpec
    """Issuer record layout."""
    files: list[FileNode] = Field(min_length=1)
    """File tree, MF first, parents before children."""
    data: list[DataMapping] = []
    """Field-to-file mappings."""
    pins: list[PinObject] = []
    """PIN objects."""
    keys: list[CardKey] = []
    """Card keys."""
    magstripe: Magstripe | None = None
    """Magnetic stripe, if the product has one."""
    card_body: CardBody = CardBody()
    """Visual personalization."""
    loading: Loading
    """Loading method and protection."""
    letters: Letters
    """Card carrier and PIN mailer."""
    depersonalization: Depersonalization | None = None
    """Whether (and with which admin key) cards of this product may be depersonalized."""

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        from cardperso.profiles.consistency import problems

        found = problems(self)
        if found:
            raise ValueError("\n".join(f"{path}: {msg}" for path, msg in found))
        return self

    # -- lookups used by data preparation ---------------------------------------
    def input_field(self, name: str) -> InputField | None:
        return next((f for f in self.input.fields if f.name == name), None)

    def file(self, name: str) -> FileNode | None:
        return next((f for f in self.files if f.name == name), None)

    def pin(self, name: str) -> PinObject | None:
        return next((p for p in self.pins if p.name == name), None)

    def key(self, name: str) -> CardKey | None:
        return next((k for k in self.keys if k.name == name), None)

    def file_path(self, name: str) -> tuple[int, ...]:
        """FIDs from the MF down to file ``name`` (for SELECT by path)."""
        path: list[int] = []
        node = self.file(name)
        while node is not None:
            path.append(node.fid_value)
            node = self.file(node.parent) if node.parent else None
        return tuple(reversed(path))
