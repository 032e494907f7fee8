"""GlobalPlatform Secure Channel Protocol '02' (SCP02), host side.

GlobalPlatform Card Specification v2.3.1, Appendix E:

* **Session keys** (E.4.1): each is the 3DES-CBC encipherment, zero ICV, of the
  16-byte block ``constant || sequence counter || 00 * 12`` under one static key:
  S-ENC (constant 0182) from K-ENC, C-MAC (0101) and R-MAC (0102) from K-MAC,
  S-DEK (0181) from K-DEK.
* **Cryptograms** (E.4.2): full 3DES MAC (ISO/IEC 9797-1 MAC algorithm 1, zero
  ICV) under S-ENC with ISO/IEC 9797-1 method 2 padding. The card cryptogram
  covers ``host challenge || sequence counter || card challenge``; the host
  cryptogram ``sequence counter || card challenge || host challenge``.
* **C-MAC** (E.4.4): the retail MAC (ISO/IEC 9797-1 algorithm 3 with single DES)
  under the C-MAC session key, method 2 padding, over the command header with the
  secure-messaging bit set in CLA and Lc increased by 8, plus the command data.
  The ICV is zero for EXTERNAL AUTHENTICATE and the previous C-MAC afterwards;
  with option ``i`` bit "ICV encryption" (i = 15, 55, ...) that ICV is first
  enciphered with single DES under the left half of the C-MAC key (E.3.4).

Static keys arrive as :class:`~cardperso.crypto.ciphers.BlockCipher` objects;
session keys are derived inside this module and handled as bytes, never shown by
``repr`` or in an error message. :class:`Scp02Session` strings the steps together
for one INITIALIZE UPDATE / EXTERNAL AUTHENTICATE session.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cardperso.apdu import ApduFormatError, parse_command
from cardperso.crypto.ciphers import DES, TDES, BlockCipher
from cardperso.crypto.mac import mac_alg1, mac_alg3, pad_iso9797, verify_mac
from cardperso.payments._digits import PaymentInputError, xor

__all__ = [
    "CONSTANT_C_MAC",
    "CONSTANT_DEK",
    "CONSTANT_ENC",
    "CONSTANT_R_MAC",
    "InitializeUpdateResponse",
    "Scp02Error",
    "Scp02Session",
    "Scp02SessionKeys",
    "card_cryptogram",
    "command_mac",
    "derive_session_key",
    "derive_session_keys",
    "encrypt_icv",
    "host_cryptogram",
    "parse_initialize_update_response",
    "wrap_command",
]

CONSTANT_C_MAC = b"\x01\x01"
CONSTANT_R_MAC = b"\x01\x02"
CONSTANT_DEK = b"\x01\x81"
CONSTANT_ENC = b"\x01\x82"

_CLA_SM = 0x04  # GP 2.3.1 §11.1.4: secure messaging indication in CLA (b3)
_ICV_ENCRYPTION = 0x10  # "i" bit b5: ICV encryption for C-MAC session (Table E-1)


class Scp02Error(PaymentInputError):
    """Bad SCP02 input or a failed check; names the check, never key material."""


@dataclass(frozen=True, slots=True, repr=False)
class Scp02SessionKeys:
    """The four SCP02 session keys (16 bytes each). ``repr`` shows no key bytes."""

    s_enc: bytes
    c_mac: bytes
    r_mac: bytes
    s_dek: bytes

    def __repr__(self) -> str:
        return "Scp02SessionKeys(<redacted>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class InitializeUpdateResponse:
    """The 28-byte INITIALIZE UPDATE response of an SCP02 card (GP 2.3.1 E.5.1)."""

    key_diversification_data: bytes
    key_version: int
    scp_id: int
    sequence_counter: bytes
    card_challenge: bytes
    card_cryptogram: bytes


def _check_len(value: bytes, n: int, name: str) -> bytes:
    if len(value) != n:
        raise Scp02Error(f"{name} must be {n} bytes, not {len(value)}")
    return bytes(value)


def _check_tdes(key: BlockCipher, name: str) -> None:
    if key.algorithm != "TDES":
        raise Scp02Error(f"{name} must be a TDES key, not {key.algorithm}")


def derive_session_key(static_key: BlockCipher, constant: bytes, sequence_counter: bytes) -> bytes:
    """One SCP02 session key (GP 2.3.1 E.4.1).

    ``DES3-CBC(static key, ICV = 0)[constant || sequence counter || 00 * 12]``,
    16 bytes, used as a double-length 3DES key.
    """
    _check_tdes(static_key, "static key")
    _check_len(constant, 2, "derivation constant")
    seq = _check_len(sequence_counter, 2, "sequence counter")
    return static_key.encrypt_cbc(bytes(constant) + seq + bytes(12))


def derive_session_keys(
    k_enc: BlockCipher, k_mac: BlockCipher, k_dek: BlockCipher, sequence_counter: bytes
) -> Scp02SessionKeys:
    """All four session keys for the card's current sequence counter (E.4.1)."""
    return Scp02SessionKeys(
        s_enc=derive_session_key(k_enc, CONSTANT_ENC, sequence_counter),
        c_mac=derive_session_key(k_mac, CONSTANT_C_MAC, sequence_counter),
        r_mac=derive_session_key(k_mac, CONSTANT_R_MAC, sequence_counter),
        s_dek=derive_session_key(k_dek, CONSTANT_DEK, sequence_counter),
    )


def _full_3des_mac(s_enc: bytes, data: bytes) -> bytes:
    return mac_alg1(TDES(_check_len(s_enc, 16, "S-ENC")), data, padding=2)


def card_cryptogram(
    s_enc: bytes, host_challenge: bytes, sequence_counter: bytes, card_challenge: bytes
) -> bytes:
    """The card cryptogram the card returns in INITIALIZE UPDATE (E.4.2.1), 8 bytes."""
    data = (
        _check_len(host_challenge, 8, "host challenge")
        + _check_len(sequence_counter, 2, "sequence counter")
        + _check_len(card_challenge, 6, "card challenge")
    )
    return _full_3des_mac(s_enc, data)


def host_cryptogram(
    s_enc: bytes, sequence_counter: bytes, card_challenge: bytes, host_challenge: bytes
) -> bytes:
    """The host cryptogram sent in EXTERNAL AUTHENTICATE (E.4.2.2), 8 bytes."""
    data = (
        _check_len(sequence_counter, 2, "sequence counter")
        + _check_len(card_challenge, 6, "card challenge")
        + _check_len(host_challenge, 8, "host challenge")
    )
    return _full_3des_mac(s_enc, data)


def encrypt_icv(c_mac_key: bytes, icv: bytes) -> bytes:
    """ICV encryption (E.3.4): single DES under the left half of the C-MAC key."""
    key = _check_len(c_mac_key, 16, "C-MAC key")
    return DES(key[:8]).encrypt_ecb(_check_len(icv, 8, "ICV"))


def command_mac(c_mac_key: bytes, icv: bytes, mac_input: bytes) -> bytes:
    """Retail MAC with an ICV (E.4.4): the 8-byte C-MAC over ``mac_input``.

    ``mac_input`` is the modified header and the command data; it is padded by
    ISO/IEC 9797-1 method 2. The ICV enters the CBC chain as its initial value
    (equivalently, it is XORed into the first block).
    """
    key = _check_len(c_mac_key, 16, "C-MAC key")
    padded = pad_iso9797(mac_input, 8, 2)
    chained = xor(padded[:8], _check_len(icv, 8, "ICV")) + padded[8:]
    return mac_alg3(DES(key[:8]), DES(key[8:]), chained, padding=1)


def wrap_command(c_mac_key: bytes, icv: bytes, apdu: bytes) -> tuple[bytes, bytes]:
    """Add a C-MAC to a short command APDU; return ``(wrapped APDU, C-MAC)``.

    CLA gets the secure-messaging bit, Lc grows by 8, the MAC follows the data
    and Le (if any) is kept after it but not MACed (GP 2.3.1 E.4.4). The C-MAC is
    the next command's ICV (encrypt it first if the session uses ICV encryption).
    """
    try:
        cmd = parse_command(bytes(apdu))
    except ApduFormatError as exc:
        raise Scp02Error(f"not a command APDU: {exc}") from None
    if cmd.extended or len(cmd.data) > 255 - 8:
        raise Scp02Error("SCP02 C-MAC wrapping supports short APDUs with at most 247 data bytes")
    header = bytes([cmd.cla | _CLA_SM, cmd.ins, cmd.p1, cmd.p2, len(cmd.data) + 8])
    mac = command_mac(c_mac_key, icv, header + cmd.data)
    out = header + cmd.data + mac
    if cmd.le:
        out += bytes([0 if cmd.le == 256 else cmd.le])
    return out, mac


def parse_initialize_update_response(data: bytes) -> InitializeUpdateResponse:
    """Split an SCP02 INITIALIZE UPDATE response (without its status word)."""
    raw = _check_len(data, 28, "INITIALIZE UPDATE response")
    if raw[11] != 0x02:
        raise Scp02Error(f"card answered for SCP{raw[11]:02X}, not SCP02")
    return InitializeUpdateResponse(
        key_diversification_data=raw[0:10],
        key_version=raw[10],
        scp_id=raw[11],
        sequence_counter=raw[12:14],
        card_challenge=raw[14:20],
        card_cryptogram=raw[20:28],
    )


@dataclass(slots=True, repr=False)
class Scp02Session:
    """Host side of one SCP02 session: authenticate the card, then C-MAC commands.

    Build it with :meth:`open`, which checks the card cryptogram; then send
    :meth:`external_authenticate` and wrap every further command with :meth:`wrap`.
    """

    keys: Scp02SessionKeys
    host_challenge: bytes
    card: InitializeUpdateResponse
    i_param: int = 0x15
    _icv: bytes = field(default=bytes(8))
    _authenticated: bool = False

    @classmethod
    def open(
        cls,
        k_enc: BlockCipher,
        k_mac: BlockCipher,
        k_dek: BlockCipher,
        host_challenge: bytes,
        init_update_response: bytes,
        *,
        i_param: int = 0x15,
    ) -> Scp02Session:
        """Derive the session keys and verify the card cryptogram (constant time)."""
        card = parse_initialize_update_response(init_update_response)
        host = _check_len(host_challenge, 8, "host challenge")
        keys = derive_session_keys(k_enc, k_mac, k_dek, card.sequence_counter)
        expected = card_cryptogram(keys.s_enc, host, card.sequence_counter, card.card_challenge)
        if not verify_mac(expected, card.card_cryptogram):
            raise Scp02Error("card cryptogram does not verify")
        return cls(keys=keys, host_challenge=host, card=card, i_param=i_param)

    def external_authenticate(self, security_level: int = 0x01) -> bytes:
        """The C-MACed EXTERNAL AUTHENTICATE command carrying the host cryptogram."""
        if self._authenticated:
            raise Scp02Error("EXTERNAL AUTHENTICATE was already sent in this session")
        if security_level not in (0x00, 0x01, 0x03, 0x11, 0x13):
            raise Scp02Error(f"security level {security_level:02X} is not defined for SCP02")
        cryptogram = host_cryptogram(
            self.keys.s_enc,
            self.card.sequence_counter,
            self.card.card_challenge,
            self.host_challenge,
        )
        apdu = bytes([0x80, 0x82, security_level, 0x00, 0x08]) + cryptogram
        wrapped, mac = wrap_command(self.keys.c_mac, bytes(8), apdu)
        self._icv = mac
        self._authenticated = True
        return wrapped

    def wrap(self, apdu: bytes) -> bytes:
        """C-MAC one command APDU, chaining the ICV from the previous command."""
        if not self._authenticated:
            raise Scp02Error("send EXTERNAL AUTHENTICATE before wrapping commands")
        icv = self._icv
        if self.i_param & _ICV_ENCRYPTION:
            icv = encrypt_icv(self.keys.c_mac, icv)
        wrapped, mac = wrap_command(self.keys.c_mac, icv, apdu)
        self._icv = mac
        return wrapped

    def __repr__(self) -> str:
        return f"Scp02Session(i={self.i_param:02X}, keys=<redacted>)"

    __str__ = __repr__
