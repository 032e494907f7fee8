"""Secure messaging: session set-up with GENERAL AUTHENTICATE and protected APDUs.

Session set-up (GENERAL AUTHENTICATE, 7816-4 §11.5.5, dynamic authentication data
template 7C) with a card key K of usage SM, in two steps:

1. host -> card ``7C{81 RND.H}``; the card draws RND.C, derives
   ``SK.ENC = KDF(K, "cardperso SM ENC", RND.H||RND.C)`` and ``SK.MAC`` likewise
   (NIST SP 800-108r1 counter mode with CMAC), and answers
   ``7C{82 RND.C, 83 MAC(SK.MAC, 01||RND.H||RND.C)}``;
2. host -> card ``7C{84 MAC(SK.MAC, 02||RND.C||RND.H)}``; a match opens the session
   and counts as authentication with K (a wrong one spends a try of K).

Protected APDUs follow ISO/IEC 7816-4 §10 as profiled by ICAO Doc 9303-11 §9.8:
CLA with b4b3 = 11, data in DO 87 (01 || cryptogram, ISO padding), Le in DO 97,
status in DO 99, an 8-byte MAC in DO 8E over the send sequence counter (SSC),
the padded header and the data objects. AES sessions use CBC with IV = E(SK.ENC,
SSC) and CMAC; 3DES sessions use CBC with a zero IV and the ISO/IEC 9797-1
algorithm 3 (retail) MAC. Any SM fault ends the session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cardperso import tlv
from cardperso.apdu import CommandAPDU
from cardperso.card.errors import CardError
from cardperso.card.objects import ALGORITHMS, KEY_ALG, USAGE_SM, find_object, key_cipher
from cardperso.card.store import ObjType
from cardperso.crypto.ciphers import AES, DES, TDES, BlockCipher, CipherError
from cardperso.crypto.kdf import sp800_108_counter_cmac
from cardperso.crypto.mac import cmac, mac_alg3, pad_iso9797, unpad_m2, verify_mac

if TYPE_CHECKING:
    from cardperso.card.os import CardOS, SmSession

__all__ = ["derive_session", "process_sm", "session_cipher", "session_mac"]


def derive_session(
    k: BlockCipher, family: str, key_len: int, rh: bytes, rc: bytes
) -> tuple[bytes, bytes]:
    """SK.ENC and SK.MAC for one session: 2-key 3DES for 3DES keys, AES of the
    card key's length for AES keys."""
    n = 16 if family == "TDES" else key_len
    ctx = rh + rc
    return (
        sp800_108_counter_cmac(k, b"cardperso SM ENC", ctx, n),
        sp800_108_counter_cmac(k, b"cardperso SM MAC", ctx, n),
    )


def session_cipher(family: str, key: bytes) -> BlockCipher:
    return AES(key) if family == "AES" else TDES(key)


def session_mac(family: str, k_mac: bytes, data: bytes) -> bytes:
    """8-byte MAC: CMAC-AES over M2-padded data, or the retail MAC for 3DES."""
    if family == "AES":
        return cmac(AES(k_mac), pad_iso9797(data, 16, 2))[:8]
    return mac_alg3(DES(k_mac[:8]), DES(k_mac[8:16]), data, 2)[:8]


def general_authenticate(card: CardOS, cmd: CommandAPDU) -> bytes:
    from cardperso.card.commands_security import check_key_cryptogram
    from cardperso.card.os import SmSession

    if cmd.p1 != 0x00 or cmd.p2 & 0x70 or not 1 <= cmd.p2 & 0x0F <= 15:
        raise CardError(0x6A86)
    ref = cmd.p2 & 0x0F
    try:
        outer = tlv.to_dict(cmd.data)
        inner = tlv.to_dict(outer[0x7C]) if set(outer) == {0x7C} else None
    except tlv.TlvError:
        inner = None
    if inner is None or len(inner) != 1:
        raise CardError(0x6A80)
    hit = find_object(card, ObjType.KEY, ref)
    if hit is None:
        raise CardError(0x6A88)
    idx, e = hit
    if not e.extra[1] & USAGE_SM:
        raise CardError(0x6985)
    if e.extra[3] and e.extra[4] == 0:
        raise CardError(0x6983)
    family, key_len = ALGORITHMS[e.extra[KEY_ALG]]
    k = key_cipher(card, e)
    bs = k.block_size
    if 0x81 in inner:
        rh = inner[0x81]
        if len(rh) != bs or cmd.le == 0:
            raise CardError(0x6A80 if len(rh) != bs else 0x6700)
        rc = card.rand(bs)
        k_enc, k_mac = derive_session(k, family, key_len, rh, rc)
        card.timing.crypto("aes" if family == "AES" else "des", 8)
        cc = session_mac(family, k_mac, b"\x01" + rh + rc)
        card.ram.ga_pending = (ref, family, k_enc, k_mac, rh, rc)
        card.ram.sm = None
        return tlv.encode(0x7C, [tlv.encode(0x82, rc), tlv.encode(0x83, cc)])
    if 0x84 in inner:
        pend, card.ram.ga_pending = card.ram.ga_pending, None
        if pend is None or pend[0] != ref:
            raise CardError(0x6985)
        _, fam, k_enc, k_mac, rh, rc = pend
        expected = session_mac(fam, k_mac, b"\x02" + rc + rh)
        card.timing.crypto("aes" if fam == "AES" else "des", 2)
        check_key_cryptogram(card, idx, e, expected, inner[0x84])
        card.ram.sm = SmSession(fam, k_enc, k_mac, 0, ref)
        card.ram.auth_keys.add(ref)
        return b""
    raise CardError(0x6A80)


def _ssc(s: SmSession) -> bytes:
    return s.ssc.to_bytes(16 if s.algorithm == "AES" else 8, "big")


def _iv(s: SmSession, c: BlockCipher) -> bytes:
    return c.encrypt_ecb(_ssc(s)) if s.algorithm == "AES" else bytes(8)


def process_sm(card: CardOS, cmd: CommandAPDU, base_cla: int) -> bytes:
    """Unwrap, execute and wrap one SM command; every SM fault drops the session."""
    s = card.ram.sm
    if s is None:
        raise CardError(0x6882)
    try:
        dos = tlv.decode(cmd.data)
    except tlv.TlvError:
        card.ram.sm = None
        raise CardError(0x6988) from None
    tags = [t for t, _ in dos]
    if not tags or tags[-1] != 0x8E:
        card.ram.sm = None
        raise CardError(0x6987)
    if any(t not in (0x87, 0x97) for t in tags[:-1]) or len(set(tags)) != len(tags):
        card.ram.sm = None
        raise CardError(0x6988)
    d = dict(dos)
    bs = 16 if s.algorithm == "AES" else 8
    s.ssc += 1
    header = pad_iso9797(bytes([cmd.cla, cmd.ins, cmd.p1, cmd.p2]), bs, 2)
    body = b"".join(tlv.encode(t, v) for t, v in dos[:-1])
    mac_in = _ssc(s) + header + body
    card.timing.crypto("aes" if s.algorithm == "AES" else "des", 2 + len(mac_in) // bs)
    if not verify_mac(session_mac(s.algorithm, s.k_mac, mac_in), d[0x8E]):
        card.ram.sm = None
        raise CardError(0x6988)
    c = session_cipher(s.algorithm, s.k_enc)
    data = b""
    if 0x87 in d:
        cg = d[0x87]
        try:
            if not cg or cg[0] != 0x01 or (len(cg) - 1) % bs or len(cg) == 1:
                raise CipherError("bad cryptogram")
            data = unpad_m2(c.decrypt_cbc(cg[1:], _iv(s, c)), bs)
        except CipherError:
            card.ram.sm = None
            raise CardError(0x6988) from None
    le = 0
    if 0x97 in d:
        v = d[0x97]
        if len(v) not in (1, 2):
            card.ram.sm = None
            raise CardError(0x6988)
        le = int.from_bytes(v, "big") or (256 if len(v) == 1 else 65536)
    inner = CommandAPDU(base_cla, cmd.ins, cmd.p1, cmd.p2, data, le, len(data) > 255)
    try:
        out, sw = card.execute(inner, sm=True)
    except CardError as e:
        out, sw = b"", e.sw
    if card.ram.sm is not s:  # the command itself ended the session
        return sw.to_bytes(2, "big")
    s.ssc += 1
    resp = b""
    if out:
        padded = pad_iso9797(out, bs, 2)
        resp += tlv.encode(0x87, b"\x01" + c.encrypt_cbc(padded, _iv(s, c)))
    resp += tlv.encode(0x99, sw.to_bytes(2, "big"))
    mac = session_mac(s.algorithm, s.k_mac, _ssc(s) + resp)
    resp += tlv.encode(0x8E, mac)
    card.timing.crypto("aes" if s.algorithm == "AES" else "des", 2 + len(resp) // bs)
    return card._deliver(cmd, resp, 0x9000 if sw == 0x9000 else sw)
