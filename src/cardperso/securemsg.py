"""Secure messaging as both ends speak it: the card OS and the security module.

Shared vocabulary like ``apdu`` and ``tlv``: pure functions over key bytes that
each side holds inside its own boundary (the card in its RAM, the host inside
``cardperso.hsm``). Nothing here stores a key beyond the :class:`SmChannel` the
caller owns.

Session set-up (GENERAL AUTHENTICATE, template 7C) with a card key K:
``SK.ENC = KDF(K, "cardperso SM ENC", RND.H || RND.C)`` and ``SK.MAC`` likewise
(NIST SP 800-108r1 counter mode, CMAC PRF); 2-key 3DES session keys for a 3DES K,
AES keys of K's length for an AES K. Card cryptogram ``MAC(01 || RND.H || RND.C)``,
host cryptogram ``MAC(02 || RND.C || RND.H)``.

Protected APDUs (ISO/IEC 7816-4 §10, profiled like ICAO Doc 9303-11 §9.8): CLA
b4b3 = 11; data in DO 87 (01 || cryptogram of the ISO-padded data), Ne in DO 97,
status in DO 99, an 8-byte MAC in DO 8E over SSC || padded header || DOs (command)
or SSC || DOs (response); the send sequence counter is incremented before each
command and each response. AES: CBC with IV = E(SK.ENC, SSC), CMAC; 3DES: CBC with
a zero IV, ISO/IEC 9797-1 MAC algorithm 3.

Key agreement (GENERAL AUTHENTICATE with a P-256 key of usage key agreement, sent
under the session in force, docs/card-os.md §8.3): Z = ECDH(card key, host
ephemeral point) (SEC 1 v2 §3.3.1), then the two-step KDF of NIST SP 800-56C r2
§5: ``K_DK = AES-CMAC(salt = 0^16, Z)`` and ``SK.ENC``, ``SK.MAC``, ``K_KC`` =
SP 800-108r1 counter-mode AES-CMAC under K_DK, labels ``cardperso ECDH ENC`` /
``MAC`` / ``KC``, context ``host point || card point || card nonce``, 16 bytes
each. The card proves it computed Z with the tag of SP 800-56A r3 §5.9.1
(unilateral key confirmation by the static party V, the card, to U, the host):
``CMAC(K_KC, "KC_1_V" || serial || card point || card nonce || host point)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cardperso import tlv
from cardperso.apdu import CommandAPDU
from cardperso.crypto.ciphers import AES, DES, TDES, BlockCipher, CipherError
from cardperso.crypto.kdf import sp800_108_counter_cmac
from cardperso.crypto.mac import cmac, mac_alg3, pad_iso9797, unpad_m2, verify_mac

__all__ = [
    "ECDH_ENC_LABEL",
    "ECDH_KC_LABEL",
    "ECDH_MAC_LABEL",
    "ECDH_NONCE_LENGTH",
    "SmChannel",
    "SmError",
    "card_cryptogram",
    "derive_session",
    "ecdh_confirmation",
    "ecdh_key_derivation_key",
    "ecdh_session",
    "host_cryptogram",
    "session_mac",
]

ECDH_ENC_LABEL = b"cardperso ECDH ENC"
ECDH_MAC_LABEL = b"cardperso ECDH MAC"
ECDH_KC_LABEL = b"cardperso ECDH KC"
ECDH_NONCE_LENGTH = 16
"""Bytes of the card's nonce in a key agreement (its contribution to the session keys)."""
_ECDH_SALT = bytes(16)
_ECDH_KEY_LENGTH = 16
_KC_MESSAGE = b"KC_1_V"  # SP 800-56A r3 §5.9.1.1: key confirmation provided by V


class SmError(ValueError):
    """A secure-messaging fault; ``sw`` is what a card answers (6987 or 6988)."""

    def __init__(self, sw: int, reason: str) -> None:
        super().__init__(reason)
        self.sw = sw


def derive_session(
    k: BlockCipher, family: str, key_len: int, rh: bytes, rc: bytes
) -> tuple[bytes, bytes]:
    """(SK.ENC, SK.MAC) for one session."""
    n = 16 if family == "TDES" else key_len
    ctx = rh + rc
    return (
        sp800_108_counter_cmac(k, b"cardperso SM ENC", ctx, n),
        sp800_108_counter_cmac(k, b"cardperso SM MAC", ctx, n),
    )


def ecdh_key_derivation_key(z: bytes) -> BlockCipher:
    """K_DK = AES-CMAC(salt = 0^16, Z): randomness extraction, SP 800-56C r2 §5.1."""
    return AES(cmac(AES(_ECDH_SALT), z))


def ecdh_session(
    z: bytes, host_public: bytes, card_public: bytes, nonce: bytes
) -> tuple[bytes, bytes, bytes]:
    """(SK.ENC, SK.MAC, K_KC) agreed by ECDH: AES-128 keys, one session's worth.

    Key expansion (SP 800-56C r2 §5.1 step 2, with SP 800-108r1 counter mode):
    each key is KDF(K_DK, label, host point || card point || nonce)."""
    kdk = ecdh_key_derivation_key(z)
    ctx = host_public + card_public + nonce
    return (
        sp800_108_counter_cmac(kdk, ECDH_ENC_LABEL, ctx, _ECDH_KEY_LENGTH),
        sp800_108_counter_cmac(kdk, ECDH_MAC_LABEL, ctx, _ECDH_KEY_LENGTH),
        sp800_108_counter_cmac(kdk, ECDH_KC_LABEL, ctx, _ECDH_KEY_LENGTH),
    )


def ecdh_confirmation(
    k_kc: bytes, serial: bytes, card_public: bytes, nonce: bytes, host_public: bytes
) -> bytes:
    """The card's key-confirmation tag (16 bytes), SP 800-56A r3 §5.9.1.

    MacData = "KC_1_V" || ID_V || Nonce_V || EphemPub_U, where V (the card) is
    identified by its chip serial and its static public point, Nonce_V is the
    card's nonce and EphemPub_U the host's ephemeral point; MAC = AES-CMAC under
    K_KC, a key used for nothing else. ID_U is empty: the host is authenticated by
    the session that carries the command, not by a name."""
    return cmac(AES(k_kc), _KC_MESSAGE + serial + card_public + nonce + host_public)


def _mac_ciphers(family: str, k_mac: bytes) -> tuple[BlockCipher, ...]:
    """The cipher(s) :func:`_mac` runs under: AES(SK.MAC), or DES(K1), DES(K2)."""
    if family == "AES":
        return (AES(k_mac),)
    return DES(k_mac[:8]), DES(k_mac[8:16])


def _mac(family: str, ciphers: tuple[BlockCipher, ...], data: bytes) -> bytes:
    if family == "AES":
        return cmac(ciphers[0], pad_iso9797(data, 16, 2))[:8]
    return mac_alg3(ciphers[0], ciphers[1], data, 2)[:8]


def session_mac(family: str, k_mac: bytes, data: bytes) -> bytes:
    """8-byte MAC: CMAC-AES over M2-padded data, or the retail MAC for 3DES."""
    return _mac(family, _mac_ciphers(family, k_mac), data)


def card_cryptogram(family: str, k_mac: bytes, rh: bytes, rc: bytes) -> bytes:
    return session_mac(family, k_mac, b"\x01" + rh + rc)


def host_cryptogram(family: str, k_mac: bytes, rh: bytes, rc: bytes) -> bytes:
    return session_mac(family, k_mac, b"\x02" + rc + rh)


@dataclass(slots=True)
class SmChannel:
    """One open session: keys, family and the send sequence counter.

    The session's cipher objects (SK.ENC, and SK.MAC as AES or as the retail MAC's
    two DES keys) are built on first use and kept for the channel's life; they are
    rebuilt if ``family``, ``k_enc`` or ``k_mac`` is ever replaced.
    """

    family: str  # "AES" or "TDES"
    k_enc: bytes
    k_mac: bytes
    ssc: int = 0
    key_ref: int = 0
    chained: bool = False
    """Opened by a key agreement sent under the previous session: the card protects
    that command's answer with the previous session, then switches to this one."""
    # (family, key bytes, cipher(s)) built from them; never compared or shown
    _enc_cache: tuple[str, bytes, BlockCipher] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _mac_cache: tuple[str, bytes, tuple[BlockCipher, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __repr__(self) -> str:
        return f"SmChannel({self.family}, key_ref={self.key_ref}, ssc={self.ssc})"

    @property
    def block(self) -> int:
        return 16 if self.family == "AES" else 8

    def _ssc(self) -> bytes:
        return self.ssc.to_bytes(self.block, "big")

    def _cipher(self) -> BlockCipher:
        cached = self._enc_cache
        if cached is not None and cached[1] is self.k_enc and cached[0] == self.family:
            return cached[2]
        c = AES(self.k_enc) if self.family == "AES" else TDES(self.k_enc)
        self._enc_cache = (self.family, self.k_enc, c)
        return c

    def _session_mac(self, data: bytes) -> bytes:
        """:func:`session_mac` under this channel's SK.MAC, with its ciphers kept."""
        cached = self._mac_cache
        if cached is None or cached[1] is not self.k_mac or cached[0] != self.family:
            cached = (self.family, self.k_mac, _mac_ciphers(self.family, self.k_mac))
            self._mac_cache = cached
        return _mac(cached[0], cached[2], data)

    def _iv(self, c: BlockCipher) -> bytes:
        return c.encrypt_ecb(self._ssc()) if self.family == "AES" else bytes(8)

    def _encrypt(self, data: bytes) -> bytes:
        c = self._cipher()
        return b"\x01" + c.encrypt_cbc(pad_iso9797(data, self.block, 2), self._iv(c))

    def _decrypt(self, cg: bytes) -> bytes:
        bs = self.block
        if len(cg) < 1 + bs or cg[0] != 0x01 or (len(cg) - 1) % bs:
            raise SmError(0x6988, "bad cryptogram")
        c = self._cipher()
        try:
            return unpad_m2(c.decrypt_cbc(cg[1:], self._iv(c)), bs)
        except CipherError:
            raise SmError(0x6988, "bad padding") from None

    # -- host side ----------------------------------------------------------
    def wrap_command(self, cmd: CommandAPDU) -> bytes:
        """The protected APDU for ``cmd`` (its CLA must be 00 or 80)."""
        cla = cmd.cla | 0x0C
        self.ssc += 1
        body = b""
        if cmd.data:
            body += tlv.encode(0x87, self._encrypt(cmd.data))
        if cmd.le:
            le = cmd.le
            body += tlv.encode(
                0x97, bytes([le & 0xFF]) if le <= 256 else (le & 0xFFFF).to_bytes(2, "big")
            )
        header = pad_iso9797(bytes([cla, cmd.ins, cmd.p1, cmd.p2]), self.block, 2)
        body += tlv.encode(0x8E, self._session_mac(self._ssc() + header + body))
        return CommandAPDU(cla, cmd.ins, cmd.p1, cmd.p2, body, 256).to_bytes()

    def unwrap_response(self, data: bytes, sw: int) -> tuple[bytes, int]:
        """(data, inner SW) from a protected response; raises SmError on any fault."""
        if not data:
            raise SmError(0x6987, f"unprotected answer {sw:04X}")
        try:
            dos = tlv.decode(data)
        except tlv.TlvError:
            raise SmError(0x6988, "malformed response") from None
        tags = [t for t, _ in dos]
        if tags[-1:] != [0x8E] or 0x99 not in tags:
            raise SmError(0x6987, "response without status or MAC")
        self.ssc += 1
        body = b"".join(tlv.encode(t, v) for t, v in dos[:-1])
        if not verify_mac(self._session_mac(self._ssc() + body), dos[-1][1]):
            raise SmError(0x6988, "response MAC wrong")
        d = dict(dos)
        out = self._decrypt(d[0x87]) if 0x87 in d else b""
        return out, int.from_bytes(d[0x99], "big")

    # -- card side ----------------------------------------------------------
    def unwrap_command(self, cmd: CommandAPDU) -> tuple[bytes, int]:
        """(plain data, Ne) of a protected command; raises SmError on any fault."""
        try:
            dos = tlv.decode(cmd.data)
        except tlv.TlvError:
            raise SmError(0x6988, "malformed data objects") from None
        tags = [t for t, _ in dos]
        if not tags or tags[-1] != 0x8E:
            raise SmError(0x6987, "no MAC")
        if any(t not in (0x87, 0x97) for t in tags[:-1]) or len(set(tags)) != len(tags):
            raise SmError(0x6988, "unexpected data objects")
        self.ssc += 1
        header = pad_iso9797(bytes([cmd.cla, cmd.ins, cmd.p1, cmd.p2]), self.block, 2)
        body = b"".join(tlv.encode(t, v) for t, v in dos[:-1])
        mac_in = self._ssc() + header + body
        d = dict(dos)
        if not verify_mac(self._session_mac(mac_in), d[0x8E]):
            raise SmError(0x6988, "command MAC wrong")
        data = self._decrypt(d[0x87]) if 0x87 in d else b""
        le = 0
        if 0x97 in d:
            v = d[0x97]
            if len(v) not in (1, 2):
                raise SmError(0x6988, "bad Le object")
            le = int.from_bytes(v, "big") or (256 if len(v) == 1 else 65536)
        return data, le

    def wrap_response(self, data: bytes, sw: int) -> bytes:
        """Protected response data objects (87, 99, 8E) for ``data`` and ``sw``."""
        self.ssc += 1
        resp = tlv.encode(0x87, self._encrypt(data)) if data else b""
        resp += tlv.encode(0x99, sw.to_bytes(2, "big"))
        return resp + tlv.encode(0x8E, self._session_mac(self._ssc() + resp))
