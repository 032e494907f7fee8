"""The security-module contract: key handles, usages, and the operations every backend offers.

Above ``cardperso.hsm`` the code holds only :class:`KeyHandle` objects and
cryptograms; key bytes live inside a backend (DESIGN.md §3, §4). The shape follows
python-pkcs11 so a PKCS#11 backend can implement the same contract:

* an :class:`Hsm` (a token) opens an :class:`HsmSession` for one caller role and one
  named operator; every call on the session is checked against the role table
  (:mod:`cardperso.hsm.roles`) and audited, allowed or not;
* a handle names a key (label, algorithm, usage, KCV, version, exportability) and
  never shows its bytes; a backend resolves it by label and enforces the *stored*
  usage, so a forged or stale handle gains nothing;
* one typed error family: :class:`~cardperso.errors.HsmError` (carrying the
  operation) and its subclasses :class:`~cardperso.errors.KeyUsageError`,
  :class:`KeyNotFoundError`, :class:`~cardperso.hsm.roles.PermissionDeniedError`,
  :class:`~cardperso.hsm.ceremony.CeremonyError`,
  :class:`~cardperso.hsm.keystore.KeystoreError` and
  :class:`~cardperso.hsm.audit.AuditChainError`. Any error from a recipe below
  (a bad PAN, a malformed PIN block) reaches the caller as an ``HsmError`` too.

Key check values (:func:`cardperso.hsm.ceremony.key_check_value`): TDES keys E_K(0^8), AES keys
CMAC_K(0^16) (ANSI X9.24-1:2017 A.3, which X9.24 requires for AES), both cut to 3
bytes = 6 hex digits as custodians and HSM consoles show them; EC keys SHA-256 of
the uncompressed public point, cut the same way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import NamedTuple, Self

from cardperso.crypto.secret import SecretBytes, SecretStr
from cardperso.errors import HsmError
from cardperso.hsm.roles import Role
from cardperso.payments.pinblock import PinBlockFormat

__all__ = [
    "ALGORITHM_KEY_LENGTH",
    "SECRET_COMMANDS",
    "USAGE_ALGORITHMS",
    "AgreedKeys",
    "CardSecret",
    "CardSecretRequest",
    "Ceremony",
    "CvvRequest",
    "DerivedKey",
    "DerivedPin",
    "Hsm",
    "HsmSession",
    "IssuerPin",
    "KdScheme",
    "KeyAlgorithm",
    "KeyHandle",
    "KeyNotFoundError",
    "KeySource",
    "KeyUsage",
    "MacAlgorithm",
    "PinBlockFormat",
    "PinCopy",
    "PinMailerRenderer",
    "PinSource",
    "PvvRequest",
    "RandomKey",
    "RandomPin",
    "SealedData",
    "SmCommand",
    "WrappedKey",
]


class KeyAlgorithm(StrEnum):
    """The key types a handle can name."""

    AES_128 = "AES-128"
    AES_256 = "AES-256"
    TDES_2KEY = "TDES-2KEY"
    TDES_3KEY = "TDES-3KEY"
    EC_P256 = "EC-P256"

    @property
    def is_aes(self) -> bool:
        return self in (KeyAlgorithm.AES_128, KeyAlgorithm.AES_256)

    @property
    def is_tdes(self) -> bool:
        return self in (KeyAlgorithm.TDES_2KEY, KeyAlgorithm.TDES_3KEY)


#: Length in bytes of a symmetric key of each algorithm (EC: the private scalar).
ALGORITHM_KEY_LENGTH: dict[KeyAlgorithm, int] = {
    KeyAlgorithm.AES_128: 16,
    KeyAlgorithm.AES_256: 32,
    KeyAlgorithm.TDES_2KEY: 16,
    KeyAlgorithm.TDES_3KEY: 24,
    KeyAlgorithm.EC_P256: 32,
}


class KeyUsage(StrEnum):
    """What a key may do; a backend refuses every other use with ``KeyUsageError``."""

    KEK = "KEK"
    """Key block protection key: imports and exports TR-31 key blocks, nothing else."""
    ISSUER_KEK = "ISSUER_KEK"
    """Shared with an issuer to send back response data: exports only."""
    KD_MASTER = "KD_MASTER"
    """KM: derives card keys KD (never wraps, encrypts data or MACs)."""
    EMV_IMK = "EMV_IMK"
    """EMV issuer master key for application cryptograms (QC recomputation)."""
    TRANSPORT = "TRANSPORT"
    """Issuer data transport key: data encrypted by the issuer, AES-CBC."""
    PIN_ENCRYPTION = "PIN_ENCRYPTION"
    """Enciphers PIN blocks (ZPK/PEK)."""
    PIN_VERIFICATION = "PIN_VERIFICATION"
    """PVK (Visa PVV) or PDK (IBM 3624 natural PIN)."""
    CVK = "CVK"
    """Card verification key pair CVK-A||CVK-B (CVV, CVV2, iCVV)."""
    MAC = "MAC"
    """Generates and verifies MACs over data."""
    KEY_AGREEMENT = "KEY_AGREEMENT"
    """A P-256 private key for ECDH with a card."""
    SESSION_ENC = "SESSION_ENC"
    """Volatile: encryption key agreed with one card by ECDH."""
    SESSION_MAC = "SESSION_MAC"
    """Volatile: MAC key agreed with one card by ECDH."""
    CARD_SECRET = "CARD_SECRET"  # noqa: S105 - a usage name, not a password
    """Protects prepared card secrets from data preparation to the line, AES-CBC.

    Only :meth:`HsmSession.card_secrets` encrypts under it, and only
    :meth:`HsmSession.card_sm_wrap` decrypts it - straight into one card's
    secure-messaging channel, and only for the command the cryptogram is bound
    to. No operation returns what it protects, so data preparation (which may
    decrypt TRANSPORT data) never sees a PIN or key it prepared."""


_SYMMETRIC = frozenset(
    {KeyAlgorithm.AES_128, KeyAlgorithm.AES_256, KeyAlgorithm.TDES_2KEY, KeyAlgorithm.TDES_3KEY}
)
_TDES = frozenset({KeyAlgorithm.TDES_2KEY, KeyAlgorithm.TDES_3KEY})
_AES = frozenset({KeyAlgorithm.AES_128, KeyAlgorithm.AES_256})

#: Which algorithms a key of each usage may have.
USAGE_ALGORITHMS: dict[KeyUsage, frozenset[KeyAlgorithm]] = {
    KeyUsage.KEK: _SYMMETRIC,
    KeyUsage.ISSUER_KEK: _SYMMETRIC,
    KeyUsage.KD_MASTER: _SYMMETRIC,
    KeyUsage.EMV_IMK: frozenset({KeyAlgorithm.TDES_2KEY}),
    KeyUsage.TRANSPORT: _AES,
    KeyUsage.PIN_ENCRYPTION: _SYMMETRIC,
    KeyUsage.PIN_VERIFICATION: _TDES,
    KeyUsage.CVK: frozenset({KeyAlgorithm.TDES_2KEY}),
    KeyUsage.MAC: _SYMMETRIC,
    KeyUsage.KEY_AGREEMENT: frozenset({KeyAlgorithm.EC_P256}),
    KeyUsage.SESSION_ENC: frozenset({KeyAlgorithm.AES_128}),
    KeyUsage.SESSION_MAC: frozenset({KeyAlgorithm.AES_128}),
    KeyUsage.CARD_SECRET: _AES,
}


class KdScheme(StrEnum):
    """How a card key KD is derived from a master key KM and the chip serial.

    * ``AES_SP800_108`` - KD = KDF_KM("cardperso KD", serial) with the NIST SP
      800-108r1 counter-mode KDF, PRF = AES-CMAC, output as long as KM (16 or 32
      bytes); the serial is the KDF context.
    * ``EMV_3DES`` - the EMV Option-A construction (EMV Book 2 A1.4.1 steps 2-3)
      over the 8-byte chip serial Y: KD = DES3_KM(Y) || DES3_KM(Y xor FF..FF) with
      odd parity, a double-length key. For a serial whose 16 hex digits are the
      rightmost digits of PAN||PSN this *is* the EMV ICC master key (Option A).

    When a call gives no scheme, the KM's algorithm picks one: AES -> AES_SP800_108,
    TDES -> EMV_3DES.
    """

    AES_SP800_108 = "aes-sp800-108"
    EMV_3DES = "emv-3des"


class MacAlgorithm(StrEnum):
    """MAC algorithms for :meth:`HsmSession.generate_mac`."""

    CMAC = "cmac"
    """CMAC (NIST SP 800-38B, ISO/IEC 9797-1 algorithm 5) with any symmetric key."""
    RETAIL = "retail"
    """ISO/IEC 9797-1 algorithm 3 with single DES, padding method 2 (TDES-2KEY keys)."""


class KeyNotFoundError(HsmError):
    """No key with this label, or the handle no longer matches the stored key."""


@dataclass(frozen=True, slots=True)
class KeyHandle:
    """A reference to a key inside an HSM. It never holds or shows key bytes.

    ``kcv`` is the public key check value (6 hex digits, see the module notes);
    ``version`` the two-character key version (TR-31 key version number);
    ``exportable`` whether the key may leave under a KEK as a TR-31 key block.
    """

    label: str
    algorithm: KeyAlgorithm
    usage: KeyUsage
    kcv: str
    version: str = "00"
    exportable: bool = False

    def __str__(self) -> str:
        return f"{self.label} ({self.algorithm}, {self.usage}, KCV {self.kcv})"


@dataclass(frozen=True, slots=True)
class AgreedKeys:
    """The session keys agreed with one card by ECDH, as handles, and our public point.

    ``host_public`` is the 65-byte uncompressed point the card needs for its side
    of the agreement. The keys are volatile: they live in the session that made
    them and vanish when it closes.
    """

    enc: KeyHandle
    mac: KeyHandle
    host_public: bytes


@dataclass(frozen=True, slots=True)
class SmCommand:
    """One command for :meth:`HsmSession.card_sm_wrap_many` (the arguments of
    :meth:`HsmSession.card_sm_wrap`)."""

    header: bytes
    data: bytes = b""
    le: int = 0
    transport: KeyHandle | None = None
    iv: bytes = b""


@dataclass(frozen=True, slots=True)
class CardChannel:
    """A secure-messaging channel with one card (keys and counter stay in the HSM).

    ``host_cryptogram`` is the data of the card's GENERAL AUTHENTICATE step 2 for a
    channel keyed from KD (:meth:`HsmSession.card_sm_open`), and empty for one
    keyed by ECDH (:meth:`HsmSession.card_sm_open_ecdh`): nothing more to send.
    The channel lives in the session that opened it and ends when it closes.
    """

    label: str
    serial: bytes
    host_cryptogram: bytes


class SealedData(NamedTuple):
    """Data re-encrypted for one card: the cryptogram and its 8-byte MAC."""

    cryptogram: bytes
    mac: bytes


#: The card commands a prepared card secret may be bound to: the card OS's PUT KEY
#: (``80 D8 00 ref``) and PUT PIN (``80 D8 01 ref``), docs/card-os.md §2.3. A secret
#: bound to anything else (an UPDATE BINARY of a readable file) could be read back.
SECRET_COMMANDS: dict[str, tuple[int, int, int]] = {
    "key": (0x80, 0xD8, 0x00),
    "pin": (0x80, 0xD8, 0x01),
}


@dataclass(frozen=True, slots=True)
class IssuerPin:
    """A PIN the issuer generated and sent as a PIN block under a shared PIN key."""

    key: KeyHandle
    block: bytes
    fmt: PinBlockFormat


@dataclass(frozen=True, slots=True)
class RandomPin:
    """A uniformly random PIN of ``length`` digits, drawn inside the HSM."""

    length: int = 4


@dataclass(frozen=True, slots=True)
class DerivedPin:
    """The IBM 3624 PIN from card data and a PIN derivation key, plus ``offset`` if given."""

    pdk: KeyHandle
    validation_data: str
    decimalization_table: str
    length: int = 4
    offset: str | None = None
    pad: str = "F"


PinSource = IssuerPin | RandomPin | DerivedPin
"""Where a card PIN comes from (the chapter's PIN methods b, c and d)."""


@dataclass(frozen=True, slots=True)
class RandomKey:
    """A random card key drawn inside the HSM (TDES keys with odd parity)."""

    algorithm: KeyAlgorithm


@dataclass(frozen=True, slots=True)
class DerivedKey:
    """A card key derived from a master key and diversification data (:class:`KdScheme`).

    ``master`` is a KD_MASTER key, or an EMV_IMK with scheme ``EMV_3DES`` (then the key
    is the EMV ICC master key of ``diversifier`` = ``Y``, EMV Book 2 A1.4.1, and QC can
    check the card's application cryptograms with the same IMK). ``diversifier`` is the
    chip serial, or card data such as ``Y``."""

    master: KeyHandle
    diversifier: bytes
    scheme: KdScheme | None = None


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A card key the issuer sent under a KEK: a TR-31 key block (``str``), or a bare
    ECB cryptogram of a 16-, 24- or 32-byte key (``bytes``, the SIM industry's legacy
    "Ki encrypted under the transport key")."""

    kek: KeyHandle
    wrapped: str | bytes


KeySource = RandomKey | DerivedKey | WrappedKey
"""Where a card key comes from (the chapter's key routes made in or through the HSM)."""


@dataclass(frozen=True, slots=True)
class PinCopy:
    """Another copy of a card PIN, as a PIN block under a PIN_ENCRYPTION key: for the
    PIN mailer (the print key) or back to the issuer (its PIN key)."""

    key: KeyHandle
    fmt: PinBlockFormat


@dataclass(frozen=True, slots=True)
class PvvRequest:
    """Also compute the Visa PVV of the card PIN (for the magnetic stripe)."""

    pvk: KeyHandle
    pvki: str


@dataclass(frozen=True, slots=True)
class CardSecretRequest:
    """One PIN or key for one card, to become the data field of one card command.

    The HSM produces the secret from ``source`` and encrypts ``header || prefix ||
    TLV(tag, value)`` under a CARD_SECRET key: ``header`` is the command (one of
    :data:`SECRET_COMMANDS`, PUT PIN for a PIN source, PUT KEY for a key source),
    ``prefix`` the public attributes in front of the value, and the value is the
    key, or the PIN as an ISO 9564-1 format-2 block (the form the card stores).

    ``context`` names the card and the object (e.g. ``batch/0000042/PIN``; public,
    1 to 128 printable ASCII characters): errors name it, and a seeded soft HSM
    draws the request's randomness from it. ``pan`` is needed by PIN blocks of
    formats 0, 3 and 4 and by the PVV. ``copies`` and ``pvv`` apply to PINs; ``export_under``
    (an ISSUER_KEK) applies to :class:`RandomKey` only and returns the key as a
    TR-31 block for the issuer's response data.
    """

    context: str
    header: bytes
    source: PinSource | KeySource
    prefix: bytes = b""
    tag: int = 0x8F
    pan: str | None = None
    copies: tuple[PinCopy, ...] = ()
    pvv: PvvRequest | None = None
    export_under: KeyHandle | None = None
    key_version: str = "00"


@dataclass(frozen=True, slots=True)
class CardSecret:
    """What :meth:`HsmSession.card_secrets` returns for one request (nothing in clear).

    ``cryptogram`` and ``iv`` go to :meth:`HsmSession.card_sm_wrap` with the same
    CARD_SECRET key; ``copies`` are the PIN blocks in request order; ``key_block``
    is the TR-31 response data; ``kcv`` is the card key's check value."""

    cryptogram: bytes
    iv: bytes
    copies: tuple[bytes, ...] = ()
    pvv: str | None = None
    key_block: str | None = None
    kcv: str | None = None


@dataclass(frozen=True, slots=True)
class CvvRequest:
    """One CVV (service code ``000``: CVV2, ``999``: iCVV) for :meth:`HsmSession.generate_cvvs`."""

    cvk: KeyHandle
    pan: str
    expiry_yymm: str
    service_code: str


PinMailerRenderer = Callable[[SecretStr], bytes]
"""Turns a clear PIN into a printable document (the PIN mailer). Runs inside the HSM
boundary; what it returns is the document, and it must not keep the PIN."""


class Ceremony(ABC):
    """A key being entered as components by separate custodians (dual control).

    Each custodian adds one component with the KCV from their component sheet;
    the HSM checks it, and combines the components only when all are in.
    """

    label: str
    algorithm: KeyAlgorithm
    usage: KeyUsage
    components: int

    @property
    @abstractmethod
    def custodians(self) -> tuple[str, ...]:
        """Names of the custodians whose components are in, in order."""

    @abstractmethod
    def add_component(self, custodian: str, value: SecretBytes, kcv: str) -> str:
        """Enter one component; return its KCV (checked against ``kcv``) for display."""

    @abstractmethod
    def complete(self, expected_kcv: str | None = None) -> KeyHandle:
        """Combine all components into the key, store it and return its handle.

        With ``expected_kcv`` the combined key's KCV must match it.
        """

    @abstractmethod
    def abort(self) -> None:
        """Forget the components entered so far."""


class HsmSession(ABC):
    """Every operation of the security module, called by one role and operator.

    PIN-block formats: ISO 9564-1 0, 1 and 3 need a TDES PIN key, format 4 an AES
    one. ``pan`` is needed by formats 0, 3 and 4. No method returns a clear key or
    PIN except :meth:`kd_for_initialization` (initialization role only) and
    :meth:`print_pin_mailer` (lettershop only, and only into the renderer).
    """

    role: Role
    operator: str

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """End the session; its volatile keys are destroyed."""

    # -- key management ---------------------------------------------------------------

    @abstractmethod
    def list_keys(self) -> list[KeyHandle]:
        """Handles of the stored keys, sorted by label (volatile keys excluded)."""

    @abstractmethod
    def get_key(self, label: str) -> KeyHandle:
        """The handle of the stored key ``label`` (``KeyNotFoundError`` if none)."""

    @abstractmethod
    def generate_key(
        self,
        label: str,
        algorithm: KeyAlgorithm,
        usage: KeyUsage,
        *,
        exportable: bool = False,
        version: str = "00",
    ) -> KeyHandle:
        """Generate a key inside the HSM (TDES keys with odd parity)."""

    @abstractmethod
    def destroy_key(self, key: KeyHandle) -> None:
        """Destroy a key (a stored key, or a volatile key of this session)."""

    @abstractmethod
    def begin_ceremony(
        self,
        label: str,
        algorithm: KeyAlgorithm,
        usage: KeyUsage,
        *,
        components: int = 2,
        exportable: bool = False,
        version: str = "00",
    ) -> Ceremony:
        """Start importing a key as 2 or 3 components from separate custodians."""

    @abstractmethod
    def import_key_block(
        self, kek: KeyHandle, block: str, label: str, *, usage: KeyUsage | None = None
    ) -> KeyHandle:
        """Unwrap a TR-31 key block (versions A, B, C, D) under ``kek`` and store it.

        The usage comes from the block's header; ``usage`` may name it more
        precisely (e.g. ISSUER_KEK for a K0 block) but must agree with it.
        """

    @abstractmethod
    def export_key_block(
        self, kek: KeyHandle, key: KeyHandle, *, exportable_by_receiver: bool = False
    ) -> str:
        """Wrap an exportable ``key`` under ``kek`` as a TR-31 block (B for TDES, D for AES)."""

    @abstractmethod
    def public_key(self, key: KeyHandle) -> bytes:
        """The 65-byte uncompressed public point of an EC key."""

    # -- card keys ----------------------------------------------------------------------

    @abstractmethod
    def kd_for_initialization(
        self, km: KeyHandle, serial: bytes, *, scheme: KdScheme | None = None
    ) -> SecretBytes:
        """KD in clear, for the initialization station that loads it into a blank card."""

    @abstractmethod
    def card_cryptogram(
        self, km: KeyHandle, serial: bytes, challenge: bytes, *, scheme: KdScheme | None = None
    ) -> bytes:
        """What the card's INTERNAL AUTHENTICATE returns: CMAC_KD(88 || challenge), one block.

        This follows the card OS (``card/commands_security.py``): the INS byte in
        front keeps the answer from ever equalling an EXTERNAL AUTHENTICATE
        cryptogram E_KD(challenge). The challenge is 1 to 64 bytes.
        """

    @abstractmethod
    def verify_card_cryptogram(
        self,
        km: KeyHandle,
        serial: bytes,
        challenge: bytes,
        response: bytes,
        *,
        scheme: KdScheme | None = None,
    ) -> bool:
        """True if ``response`` is the card's correct INTERNAL AUTHENTICATE answer."""

    @abstractmethod
    def external_auth_cryptogram(
        self,
        km: KeyHandle,
        serial: bytes,
        card_challenge: bytes,
        *,
        scheme: KdScheme | None = None,
    ) -> bytes:
        """E_KD(card challenge), ECB, one block: the host's EXTERNAL AUTHENTICATE data."""

    @abstractmethod
    def emv_cryptogram(
        self,
        imk: KeyHandle,
        pan: str,
        psn: str,
        r: bytes,
        data: bytes,
        *,
        method: str = "A",
        padding: int = 2,
    ) -> bytes:
        """The EMV application cryptogram (ARQC/TC/AAC) the card should return.

        ICC master key from ``imk`` by EMV Option ``method`` (A or B), session key
        by the common session key derivation from the 8-byte ``r`` (ATC || 00..00
        for the application cryptogram), then MAC algorithm 3 over ``data``.
        """

    @abstractmethod
    def translate_to_card(
        self,
        transport: KeyHandle,
        ciphertext: bytes,
        iv: bytes,
        km: KeyHandle,
        serial: bytes,
        *,
        scheme: KdScheme | None = None,
    ) -> SealedData:
        """Re-encrypt issuer data for one chip without the plaintext leaving.

        ``ciphertext`` is AES-CBC under ``transport`` with ``iv`` over data padded by
        ISO/IEC 9797-1 method 2. KD is derived from ``km`` and ``serial``; from KD,
        K_ENC = KDF_KD("cardperso KD ENC", "") and K_MAC = KDF_KD("cardperso KD MAC",
        "") (SP 800-108r1 counter mode, CMAC, as long as KD for AES KD and 16 bytes
        for TDES KD). The result is CBC_K_ENC(zero IV, data padded by method 2) and
        the first 8 bytes of CMAC_K_MAC over that cryptogram.
        """

    @abstractmethod
    def ecdh_agree(
        self, card_public: bytes, *, key: KeyHandle | None = None, context: bytes = b""
    ) -> AgreedKeys:
        """Agree session keys with a card's P-256 public key.

        With ``key`` (a KEY_AGREEMENT key) the bureau's static key is used, else
        an ephemeral key pair made for this call. Z = ECDH (SEC 1 §3.3.1); then the
        two-step KDF of SP 800-56C r2 §5: K_DK = AES-CMAC(salt = 0^16, Z), and
        K_ENC, K_MAC = SP 800-108 counter-mode AES-CMAC under K_DK with labels
        "cardperso ECDH ENC"/"cardperso ECDH MAC" and context host_public ||
        card_public || ``context``, 16 bytes each.
        """

    @abstractmethod
    def translate_to_session(
        self, transport: KeyHandle, ciphertext: bytes, iv: bytes, session: AgreedKeys
    ) -> SealedData:
        """As :meth:`translate_to_card`, with the ECDH session keys as K_ENC and K_MAC."""

    @abstractmethod
    def card_sm_open(
        self,
        km: KeyHandle,
        serial: bytes,
        host_random: bytes,
        card_reply: bytes,
        *,
        scheme: KdScheme | None = None,
    ) -> CardChannel:
        """Finish the card's GENERAL AUTHENTICATE (``cardperso.securemsg``) with KD.

        ``card_reply`` is the card's step-1 answer (7C{82 RND.C, 83 cryptogram}).
        KD is derived from ``km`` and ``serial`` inside; the card cryptogram is
        checked (a wrong one raises HsmError: not this card, or not this KM); the
        returned channel carries the host cryptogram for step 2."""

    @abstractmethod
    def card_sm_agree(self, channel: CardChannel, key_ref: int) -> bytes:
        """The protected GENERAL AUTHENTICATE that starts ECDH-protected loading.

        The card's P-256 public point is the one the card itself returned on
        ``channel`` - its protected answer to GENERATE ASYMMETRIC KEY PAIR (P1 80 or
        81) for ``key_ref``, which the HSM noted when it unwrapped it. The channel's
        MAC shows that answer came from the chip holding the channel's card key
        (KD), so the station cannot put in a point of its own. The HSM makes an
        ephemeral P-256 key pair and returns ``00 86 00 key_ref`` with ``7C{80
        ephemeral point}`` wrapped under ``channel``; the private half stays inside
        until :meth:`card_sm_open_ecdh` (docs/card-os.md §8.3)."""

    @abstractmethod
    def card_sm_open_ecdh(self, channel: CardChannel, response: bytes) -> CardChannel:
        """Finish the key agreement from the card's answer (data + SW1 SW2).

        The answer ``7C{81 nonce, 82 tag}`` is unwrapped under ``channel``; the HSM
        computes Z = ECDH(ephemeral key, card point), derives SK.ENC, SK.MAC and
        K_KC (:func:`cardperso.securemsg.ecdh_session`, NIST SP 800-56C r2 two-step
        KDF), checks the card's key-confirmation tag (SP 800-56A r3 §5.9.1) and
        returns a new channel under the agreed keys; ``channel`` is closed, and the
        ephemeral key is destroyed in every outcome. A refusal (the card's status
        word is named; ``channel`` stays open, as on the card), a bad MAC or a tag
        that does not verify raise HsmError."""

    @abstractmethod
    def card_sm_wrap(
        self,
        channel: CardChannel,
        header: bytes,
        data: bytes = b"",
        *,
        le: int = 0,
        transport: KeyHandle | None = None,
        iv: bytes = b"",
    ) -> bytes:
        """The protected APDU for CLA INS P1 P2 = ``header`` and ``data``.

        With ``transport``, ``data`` is a cryptogram under that TRANSPORT key
        (AES-CBC, ISO 9797-1 method 2 padding, ``iv``): it is decrypted and
        re-protected for the card inside the HSM, so the clear value never leaves
        (the chapter's Figure 10.63 re-encryption). ``transport`` may also be a
        CARD_SECRET key with a cryptogram from :meth:`card_secrets`: then the
        cryptogram must be bound to ``header``, or it is refused."""

    @abstractmethod
    def card_sm_wrap_many(self, channel: CardChannel, commands: Sequence[SmCommand]) -> list[bytes]:
        """:meth:`card_sm_wrap` of several commands in one call (one audit record), in
        the order the card gets them. The send sequence counter leaves room for each
        answer (ISO/IEC 7816-4 §10 as profiled by ICAO Doc 9303-11 §9.8: the card
        counts every command and every answer), so the answers open in order
        through :meth:`card_sm_unwrap_many`. If the card fails one, send nothing
        more: the channel stays in step with the answers opened."""

    @abstractmethod
    def card_sm_unwrap_many(
        self, channel: CardChannel, responses: Sequence[bytes]
    ) -> list[tuple[bytes, int]]:
        """:meth:`card_sm_unwrap` of the answers to commands from
        :meth:`card_sm_wrap_many`, in order, in one call. A response that is
        rejected ends the list there and closes the channel (as
        :meth:`card_sm_unwrap` would): fewer results than responses means the next
        one failed its check."""

    @abstractmethod
    def card_sm_unwrap(self, channel: CardChannel, response: bytes) -> tuple[bytes, int]:
        """(data, status word) of the card's protected response (data + SW1 SW2).

        Only data the card sends back is revealed; it is the caller's to see
        (file contents read under SM for quality control) - except the answer to
        GENERATE PIN, which only :meth:`card_sm_unwrap_pin` opens."""

    @abstractmethod
    def card_secrets(
        self, protect: KeyHandle, requests: Sequence[CardSecretRequest]
    ) -> list[CardSecret]:
        """Produce PINs and card keys for many cards in one audited call (data preparation).

        Each result holds the command data field encrypted under ``protect`` (a
        CARD_SECRET key) and bound to its command header, plus the PIN copies, PVV,
        TR-31 response block and KCV asked for. No clear PIN or key leaves the
        HSM. Any failing request fails the whole call; the error names the request
        by index and ``context``, never a value."""

    @abstractmethod
    def card_sm_unwrap_pin(
        self,
        channel: CardChannel,
        response: bytes,
        copies: Sequence[PinCopy],
        pan: str | None = None,
    ) -> tuple[tuple[bytes, ...], int]:
        """(PIN blocks, status word) of the card's protected answer to GENERATE PIN.

        The answer is the PIN the card generated, as an ISO 9564-1 format-2 block; it
        is opened inside the HSM and leaves only re-encrypted as ``copies`` (the print
        key for the PIN mailer, the issuer's PIN key): the chapter's variant where the
        card generates the PIN and hands it out encrypted for the letter. The last
        command wrapped on ``channel`` must be GENERATE PIN, and :meth:`card_sm_unwrap`
        refuses its answer. An error status word comes back with no blocks."""

    @abstractmethod
    def encrypt_data(self, key: KeyHandle, plaintext: bytes, iv: bytes) -> bytes:
        """AES-CBC under a TRANSPORT key, ISO/IEC 9797-1 method 2 padding."""

    @abstractmethod
    def decrypt_data(self, key: KeyHandle, ciphertext: bytes, iv: bytes) -> bytes:
        """Inverse of :meth:`encrypt_data`: clear issuer data (dataprep role only)."""

    # -- PINs ---------------------------------------------------------------------------

    @abstractmethod
    def generate_pin(
        self, pin_key: KeyHandle, pan: str | None, fmt: PinBlockFormat, *, length: int = 4
    ) -> bytes:
        """A uniformly random PIN of 4 to 12 digits, returned only as a PIN block."""

    @abstractmethod
    def ibm3624_pin(
        self,
        pdk: KeyHandle,
        pin_key: KeyHandle,
        pan: str | None,
        fmt: PinBlockFormat,
        validation_data: str,
        decimalization_table: str,
        *,
        pin_length: int = 4,
        offset: str | None = None,
        pad: str = "F",
    ) -> bytes:
        """The IBM 3624 PIN (natural PIN, plus ``offset`` if given) as a PIN block."""

    @abstractmethod
    def ibm3624_offset(
        self,
        pdk: KeyHandle,
        pin_key: KeyHandle,
        pin_block: bytes,
        pan: str | None,
        fmt: PinBlockFormat,
        validation_data: str,
        decimalization_table: str,
        *,
        pad: str = "F",
    ) -> str:
        """The IBM 3624 offset of the PIN in ``pin_block`` (public, goes on the record)."""

    @abstractmethod
    def verify_ibm3624(
        self,
        pdk: KeyHandle,
        pin_key: KeyHandle,
        pin_block: bytes,
        pan: str | None,
        fmt: PinBlockFormat,
        validation_data: str,
        decimalization_table: str,
        offset: str,
        *,
        pad: str = "F",
    ) -> bool:
        """True if the PIN in ``pin_block`` is the one ``offset`` designates."""

    @abstractmethod
    def pvv(
        self,
        pvk: KeyHandle,
        pin_key: KeyHandle,
        pin_block: bytes,
        pan: str,
        fmt: PinBlockFormat,
        pvki: str,
    ) -> str:
        """The Visa PVV of the PIN in ``pin_block``."""

    @abstractmethod
    def verify_pvv(
        self,
        pvk: KeyHandle,
        pin_key: KeyHandle,
        pin_block: bytes,
        pan: str,
        fmt: PinBlockFormat,
        pvki: str,
        pvv: str,
    ) -> bool:
        """True if the PIN in ``pin_block`` reproduces ``pvv``."""

    @abstractmethod
    def translate_pin_block(
        self,
        src_key: KeyHandle,
        dst_key: KeyHandle,
        pin_block: bytes,
        pan: str | None,
        src_fmt: PinBlockFormat,
        dst_fmt: PinBlockFormat,
    ) -> bytes:
        """Re-encipher a PIN block from one key and format to another."""

    @abstractmethod
    def print_pin_mailer(
        self,
        pin_key: KeyHandle,
        pin_block: bytes,
        pan: str | None,
        fmt: PinBlockFormat,
        renderer: PinMailerRenderer,
    ) -> bytes:
        """Hand the clear PIN to ``renderer`` inside the boundary; return its document.

        The only way a clear PIN leaves the HSM (lettershop role only). A failing
        renderer is reported without its message, which could quote the PIN.
        """

    # -- card verification values and MACs ------------------------------------------------

    @abstractmethod
    def generate_cvv(self, cvk: KeyHandle, pan: str, expiry_yymm: str, service_code: str) -> str:
        """The 3-digit CVV (service code 000: CVV2, 999: iCVV)."""

    @abstractmethod
    def generate_cvvs(self, requests: Sequence[CvvRequest]) -> list[str]:
        """Many CVVs in one audited call (data preparation of a batch)."""

    @abstractmethod
    def verify_cvv(
        self, cvk: KeyHandle, pan: str, expiry_yymm: str, service_code: str, value: str
    ) -> bool:
        """True if ``value`` is the CVV for these data."""

    @abstractmethod
    def generate_mac(
        self,
        key: KeyHandle,
        data: bytes,
        *,
        algorithm: MacAlgorithm = MacAlgorithm.CMAC,
        length: int = 8,
    ) -> bytes:
        """A MAC over ``data``, its leftmost ``length`` bytes."""

    @abstractmethod
    def verify_mac(
        self,
        key: KeyHandle,
        data: bytes,
        mac: bytes,
        *,
        algorithm: MacAlgorithm = MacAlgorithm.CMAC,
    ) -> bool:
        """True if ``mac`` (4 bytes or more) is the MAC of ``data`` (constant-time)."""


class Hsm(ABC):
    """A security module (a token): opens sessions for callers."""

    @abstractmethod
    def session(self, role: Role, operator: str) -> HsmSession:
        """Open a session for ``role``; ``operator`` names the person or station."""

    @abstractmethod
    def close(self) -> None:
        """Release the module (files, connections)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
