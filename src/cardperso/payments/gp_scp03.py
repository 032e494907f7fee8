"""GlobalPlatform Secure Channel Protocol '03' (SCP03), host side.

GlobalPlatform Card Specification v2.3 - Amendment D (SCP03) v1.1.2, §6.2:

* **Data derivation** (§6.2.1, §4.1.5): NIST SP 800-108 KDF in counter mode
  with AES-CMAC as the PRF, laid out as::

      label (11 x 00 || derivation constant) || 00 || L (2 bytes, bits) || i (1 byte) || context

  with the counter ``i`` *after* L. Derivation constants (Table 4-1): card
  cryptogram 00, host cryptogram 01, card challenge 02, S-ENC 04, S-MAC 06,
  S-RMAC 07.
* **Session keys** (§6.2.1): context = host challenge || card challenge;
  S-ENC from K-ENC, S-MAC and S-RMAC from K-MAC, each as long as the static key.
* **Cryptograms** (§6.2.2.2, §6.2.2.3): derivation under S-MAC with constant 00
  (card) or 01 (host), the same context and L = 64 bits (S8 mode) or 128 bits
  (S16 mode, 16-byte challenges).
* **C-MAC** (§6.2.4): AES-CMAC under S-MAC over ``MAC chaining value || CLA'
  INS P1 P2 Lc' || data``; the first 8 (S8) or 16 (S16) bytes are appended and the
  whole 16-byte CMAC is the next chaining value (zero before EXTERNAL
  AUTHENTICATE).
* **C-DECRYPTION** (§6.2.6): command data padded with ``80 00 ..`` and
  AES-CBC-enciphered under S-ENC with ICV = AES(S-ENC)[encryption counter], the
  counter (16 bytes, big-endian) counting every command after EXTERNAL
  AUTHENTICATE from 1.
* **R-MAC / R-ENCRYPTION** (§6.2.5, §6.2.7): AES-CMAC under S-RMAC over
  ``MAC chaining value || response data || SW``; response data deciphered under
  S-ENC with ICV = AES(S-ENC)[80 || counter bytes 1..15].

Static keys arrive as :class:`~cardperso.crypto.ciphers.BlockCipher` objects;
session keys are derived here and handled as bytes, never shown in a ``repr`` or
an error message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cardperso.apdu import ApduFormatError, parse_command
from cardperso.crypto.ciphers import AES, BlockCipher, CipherError
from cardperso.crypto.kdf import counter_mode_cmac
from cardperso.crypto.mac import cmac, pad_iso9797, unpad_m2, verify_mac
from cardperso.payments._digits import PaymentInputError

__all__ = [
    "CONSTANT_CARD_CHALLENGE",
    "CONSTANT_CARD_CRYPTOGRAM",
    "CONSTANT_HOST_CRYPTOGRAM",
    "CONSTANT_S_ENC",
    "CONSTANT_S_MAC",
    "CONSTANT_S_RMAC",
    "InitializeUpdateResponse",
    "Scp03Error",
    "Scp03Session",
    "Scp03SessionKeys",
    "card_cryptogram",
    "command_mac",
    "derive_session_keys",
    "host_cryptogram",
    "kdf",
    "parse_initialize_update_response",
    "pseudo_random_card_challenge",
    "response_mac",
]

CONSTANT_CARD_CRYPTOGRAM = 0x00
CONSTANT_HOST_CRYPTOGRAM = 0x01
CONSTANT_CARD_CHALLENGE = 0x02
CONSTANT_S_ENC = 0x04
CONSTANT_S_MAC = 0x06
CONSTANT_S_RMAC = 0x07

_CLA_SM = 0x04
_LEVEL_C_MAC = 0x01
_LEVEL_C_DEC = 0x02
_LEVEL_R_MAC = 0x10
_LEVEL_R_ENC = 0x20
_LEVELS = (0x00, 0x01, 0x03, 0x11, 0x13, 0x31, 0x33)


class Scp03Error(PaymentInputError):
    """Bad SCP03 input or a failed check; names the check, never key material."""


@dataclass(frozen=True, slots=True, repr=False)
class Scp03SessionKeys:
    """S-ENC, S-MAC and S-RMAC for one session. ``repr`` shows no key bytes."""

    s_enc: bytes
    s_mac: bytes
    s_rmac: bytes

    def __repr__(self) -> str:
        return "Scp03SessionKeys(<redacted>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class InitializeUpdateResponse:
    """An SCP03 INITIALIZE UPDATE response (Amendment D §7.1.2), status word removed."""

    key_diversification_data: bytes
    key_version: int
    scp_id: int
    i_param: int
    card_challenge: bytes
    card_cryptogram: bytes
    sequence_counter: bytes  # empty when the card uses random challenges


def _check_len(value: bytes, sizes: tuple[int, ...], name: str) -> bytes:
    if len(value) not in sizes:
        want = " or ".join(str(s) for s in sizes)
        raise Scp03Error(f"{name} must be {want} bytes, not {len(value)}")
    return bytes(value)


def _static_key_length(key: BlockCipher) -> int:
    if key.algorithm != "AES":
        raise Scp03Error(f"SCP03 keys must be AES keys, not {key.algorithm}")
    n = key.key_length
    if n not in (16, 24, 32):
        raise Scp03Error("SCP03 keys must be 16, 24 or 32 bytes")
    return n


def kdf(key: BlockCipher, constant: int, context: bytes, length_bits: int) -> bytes:
    """SCP03 data derivation (Amendment D §4.1.5 / §6.2.1): ``length_bits`` bits.

    The PRF input for counter ``i`` is
    ``00 * 11 || constant || 00 || L (16 bits) || i (8 bits) || context``.
    """
    if key.algorithm != "AES":
        raise Scp03Error(f"SCP03 keys must be AES keys, not {key.algorithm}")
    if not 0 <= constant <= 0xFF:
        raise Scp03Error("derivation constant must be one byte")
    if length_bits <= 0 or length_bits % 8 or length_bits > 0xFFFF:
        raise Scp03Error("output length must be a positive whole number of bytes")
    head = bytes(11) + bytes([constant]) + b"\x00" + length_bits.to_bytes(2, "big")
    tail = bytes(context)

    def fixed_input(i: int) -> bytes:
        return head + bytes([i]) + tail

    return counter_mode_cmac(key, length_bits // 8, fixed_input)


def derive_session_keys(
    k_enc: BlockCipher, k_mac: BlockCipher, host_challenge: bytes, card_challenge: bytes
) -> Scp03SessionKeys:
    """S-ENC, S-MAC and S-RMAC (§6.2.1), as long as the static keys."""
    host = _check_len(host_challenge, (8, 16), "host challenge")
    card = _check_len(card_challenge, (len(host),), "card challenge")
    context = host + card
    enc_bits = _static_key_length(k_enc) * 8
    mac_bits = _static_key_length(k_mac) * 8
    return Scp03SessionKeys(
        s_enc=kdf(k_enc, CONSTANT_S_ENC, context, enc_bits),
        s_mac=kdf(k_mac, CONSTANT_S_MAC, context, mac_bits),
        s_rmac=kdf(k_mac, CONSTANT_S_RMAC, context, mac_bits),
    )


def _aes(key: bytes, name: str) -> AES:
    try:
        return AES(key)
    except CipherError:
        raise Scp03Error(f"{name} must be 16, 24 or 32 bytes") from None


def _cryptogram(s_mac: bytes, constant: int, host: bytes, card: bytes) -> bytes:
    host = _check_len(host, (8, 16), "host challenge")
    card = _check_len(card, (len(host),), "card challenge")
    return kdf(_aes(s_mac, "S-MAC"), constant, host + card, len(host) * 8)


def card_cryptogram(s_mac: bytes, host_challenge: bytes, card_challenge: bytes) -> bytes:
    """Card cryptogram (§6.2.2.2): 8 bytes in S8 mode, 16 in S16 mode."""
    return _cryptogram(s_mac, CONSTANT_CARD_CRYPTOGRAM, host_challenge, card_challenge)


def host_cryptogram(s_mac: bytes, host_challenge: bytes, card_challenge: bytes) -> bytes:
    """Host cryptogram (§6.2.2.3) for EXTERNAL AUTHENTICATE."""
    return _cryptogram(s_mac, CONSTANT_HOST_CRYPTOGRAM, host_challenge, card_challenge)


def pseudo_random_card_challenge(k_enc: BlockCipher, sequence_counter: bytes, aid: bytes) -> bytes:
    """Pseudo-random card challenge (§6.2.2.1): KDF(K-ENC, 02, counter || AID), 64 bits."""
    seq = _check_len(sequence_counter, (3,), "sequence counter")
    if not 5 <= len(aid) <= 16:
        raise Scp03Error("AID must be 5 to 16 bytes")
    return kdf(k_enc, CONSTANT_CARD_CHALLENGE, seq + bytes(aid), 64)


def command_mac(s_mac: bytes, chaining_value: bytes, mac_input: bytes) -> bytes:
    """Full 16-byte C-MAC (§6.2.4): CMAC(S-MAC)[chaining value || mac_input]."""
    chain = _check_len(chaining_value, (16,), "MAC chaining value")
    return cmac(_aes(s_mac, "S-MAC"), chain + bytes(mac_input))


def response_mac(s_rmac: bytes, chaining_value: bytes, data: bytes, sw: bytes) -> bytes:
    """Full 16-byte R-MAC (§6.2.5): CMAC(S-RMAC)[chaining value || data || SW]."""
    chain = _check_len(chaining_value, (16,), "MAC chaining value")
    status = _check_len(sw, (2,), "status word")
    return cmac(_aes(s_rmac, "S-RMAC"), chain + bytes(data) + status)


def parse_initialize_update_response(data: bytes) -> InitializeUpdateResponse:
    """Split an SCP03 INITIALIZE UPDATE response: S8 (29/32 bytes) or S16 (45/48 bytes)."""
    raw = bytes(data)
    if len(raw) in (29, 32):
        n = 8
    elif len(raw) in (45, 48):
        n = 16
    else:
        raise Scp03Error(f"INITIALIZE UPDATE response has {len(raw)} bytes, not an SCP03 length")
    if raw[11] != 0x03:
        raise Scp03Error(f"card answered for SCP{raw[11]:02X}, not SCP03")
    return InitializeUpdateResponse(
        key_diversification_data=raw[0:10],
        key_version=raw[10],
        scp_id=raw[11],
        i_param=raw[12],
        card_challenge=raw[13 : 13 + n],
        card_cryptogram=raw[13 + n : 13 + 2 * n],
        sequence_counter=raw[13 + 2 * n :],
    )


@dataclass(slots=True, repr=False)
class Scp03Session:
    """Host side of one SCP03 session (S8 or S16 mode).

    :meth:`open` derives the session keys and checks the card cryptogram;
    :meth:`external_authenticate` fixes the security level; :meth:`wrap`
    protects each command and :meth:`unwrap` checks and deciphers its response.
    """

    keys: Scp03SessionKeys
    host_challenge: bytes
    card: InitializeUpdateResponse
    security_level: int = 0
    _chain: bytes = field(default=bytes(16))
    _counter: int = 0
    _authenticated: bool = False

    @classmethod
    def open(
        cls,
        k_enc: BlockCipher,
        k_mac: BlockCipher,
        host_challenge: bytes,
        init_update_response: bytes,
    ) -> Scp03Session:
        """Derive the session keys and verify the card cryptogram (constant time)."""
        card = parse_initialize_update_response(init_update_response)
        host = _check_len(host_challenge, (len(card.card_challenge),), "host challenge")
        keys = derive_session_keys(k_enc, k_mac, host, card.card_challenge)
        expected = card_cryptogram(keys.s_mac, host, card.card_challenge)
        if not verify_mac(expected, card.card_cryptogram):
            raise Scp03Error("card cryptogram does not verify")
        return cls(keys=keys, host_challenge=host, card=card)

    @property
    def _mac_length(self) -> int:
        return len(self.card.card_challenge)

    def external_authenticate(self, security_level: int = _LEVEL_C_MAC) -> bytes:
        """The C-MACed EXTERNAL AUTHENTICATE command carrying the host cryptogram."""
        if self._authenticated:
            raise Scp03Error("EXTERNAL AUTHENTICATE was already sent in this session")
        if security_level not in _LEVELS:
            raise Scp03Error(f"security level {security_level:02X} is not defined for SCP03")
        cryptogram = host_cryptogram(self.keys.s_mac, self.host_challenge, self.card.card_challenge)
        apdu = bytes([0x80, 0x82, security_level, 0x00, len(cryptogram)]) + cryptogram
        wrapped = self._mac_command(apdu)
        self.security_level = security_level
        self._authenticated = True
        return wrapped

    def _mac_command(self, apdu: bytes) -> bytes:
        try:
            cmd = parse_command(bytes(apdu))
        except ApduFormatError as exc:
            raise Scp03Error(f"not a command APDU: {exc}") from None
        if cmd.extended:
            raise Scp03Error("SCP03 wrapping here supports short APDUs only")
        data = cmd.data
        if self.security_level & _LEVEL_C_DEC and data:
            enc = AES(self.keys.s_enc)
            icv = enc.encrypt_ecb(self._counter.to_bytes(16, "big"))
            data = enc.encrypt_cbc(pad_iso9797(data, 16, 2), icv)
        if len(data) + self._mac_length > 255:
            raise Scp03Error("protected command data would exceed 255 bytes")
        header = bytes([cmd.cla | _CLA_SM, cmd.ins, cmd.p1, cmd.p2, len(data) + self._mac_length])
        self._chain = command_mac(self.keys.s_mac, self._chain, header + data)
        out = header + data + self._chain[: self._mac_length]
        if cmd.le:
            out += bytes([0 if cmd.le == 256 else cmd.le])
        return out

    def wrap(self, apdu: bytes) -> bytes:
        """Protect one command APDU at the session's security level."""
        if not self._authenticated:
            raise Scp03Error("send EXTERNAL AUTHENTICATE before wrapping commands")
        self._counter += 1
        if self.security_level & _LEVEL_C_MAC:
            return self._mac_command(apdu)
        return bytes(apdu)

    def unwrap(self, response: bytes) -> bytes:
        """Check the R-MAC and decipher the response (data || SW); return data || SW."""
        if len(response) < 2:
            raise Scp03Error("response shorter than a status word")
        body, sw = bytes(response[:-2]), bytes(response[-2:])
        if not self.security_level & _LEVEL_R_MAC:
            return body + sw
        n = self._mac_length
        if sw[0] not in (0x90, 0x62, 0x63):
            return body + sw  # an error status carries no R-MAC (Amendment D §6.2.5)
        if len(body) < n:
            raise Scp03Error("response lacks its R-MAC")
        data, received = body[:-n], body[-n:]
        expected = response_mac(self.keys.s_rmac, self._chain, data, sw)[:n]
        if not verify_mac(expected, received):
            raise Scp03Error("response MAC does not verify")
        if self.security_level & _LEVEL_R_ENC and data:
            if len(data) % 16:
                raise Scp03Error("enciphered response data is not a whole number of blocks")
            enc = AES(self.keys.s_enc)
            icv = enc.encrypt_ecb(b"\x80" + self._counter.to_bytes(16, "big")[1:])
            try:
                data = unpad_m2(enc.decrypt_cbc(data, icv), 16)
            except CipherError:
                raise Scp03Error("response data padding is malformed") from None
        return data + sw

    def __repr__(self) -> str:
        return f"Scp03Session(level={self.security_level:02X}, keys=<redacted>)"

    __str__ = __repr__
