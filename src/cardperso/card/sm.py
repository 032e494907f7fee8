"""Secure messaging: session set-up with GENERAL AUTHENTICATE and protected APDUs.

Session set-up (GENERAL AUTHENTICATE, 7816-4 §11.5.5, dynamic authentication data
template 7C) with a card key K of usage SM, in two steps:

1. host -> card ``7C{81 RND.H}``; the card draws RND.C, derives
   ``SK.ENC = KDF(K, "cardperso SM ENC", RND.H||RND.C)`` and ``SK.MAC`` likewise
   (NIST SP 800-108r1 counter mode with CMAC), and answers
   ``7C{82 RND.C, 83 MAC(SK.MAC, 01||RND.H||RND.C)}``;
2. host -> card ``7C{84 MAC(SK.MAC, 02||RND.C||RND.H)}``; a match opens the session
   and counts as authentication with K (a wrong one spends a try of K).

Key agreement (ECDH-protected loading, docs/card-os.md §8.3) with a P-256 key of
usage key agreement, shaped like BSI TR-03110 Chip Authentication 2: host -> card
``7C{80 host ephemeral point}`` **under the session in force**; the card computes Z
with its private key, draws a nonce, derives SK.ENC, SK.MAC and K_KC
(:func:`cardperso.securemsg.ecdh_session`) and answers ``7C{81 nonce, 82
key-confirmation tag}``, protected by the old session; secure messaging then
restarts under the new keys with SSC = 0 (as ICAO Doc 9303-11 Chip Authentication
does after BAC/PACE). Sent in plain it is refused: the new session inherits the
host authentication of the one it replaces, so only an authenticated host can
open one.

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
from cardperso.card.objects import (
    ALGORITHMS,
    KEY_ALG,
    USAGE_KEY_AGREEMENT,
    USAGE_SM,
    find_object,
    key_cipher,
    read_value,
)
from cardperso.card.store import ObjType
from cardperso.crypto import ec
from cardperso.crypto.ciphers import CipherError
from cardperso.securemsg import (
    ECDH_NONCE_LENGTH,
    SmChannel,
    SmError,
    card_cryptogram,
    derive_session,
    ecdh_confirmation,
    ecdh_session,
    host_cryptogram,
)

if TYPE_CHECKING:
    from cardperso.card.os import CardOS

__all__ = ["general_authenticate", "process_sm"]


def general_authenticate(card: CardOS, cmd: CommandAPDU) -> bytes:
    from cardperso.card.commands_security import check_key_cryptogram

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
    if 0x80 in inner:
        return _key_agreement(card, cmd, ref, inner[0x80])
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
        cc = card_cryptogram(family, k_mac, rh, rc)
        card.ram.ga_pending = (ref, family, k_enc, k_mac, rh, rc)
        card.ram.sm = None
        return tlv.encode(0x7C, [tlv.encode(0x82, rc), tlv.encode(0x83, cc)])
    if 0x84 in inner:
        pend, card.ram.ga_pending = card.ram.ga_pending, None
        if pend is None or pend[0] != ref:
            raise CardError(0x6985)
        _, fam, k_enc, k_mac, rh, rc = pend
        expected = host_cryptogram(fam, k_mac, rh, rc)
        card.timing.crypto("aes" if fam == "AES" else "des", 2)
        check_key_cryptogram(card, idx, e, expected, inner[0x84])
        card.ram.sm = SmChannel(fam, k_enc, k_mac, 0, ref)
        card.ram.auth_keys.add(ref)
        return b""
    raise CardError(0x6A80)


def _key_agreement(card: CardOS, cmd: CommandAPDU, ref: int, host_public: bytes) -> bytes:
    """GENERAL AUTHENTICATE ``7C{80 host point}`` with EC key ``ref`` (see the module notes).

    Checks in order: the key exists (6A88) and has the key-agreement usage (6985);
    the command came under secure messaging (6982); it asks for data (6700); the
    point is a valid uncompressed P-256 point (6A80, checked in full before any use
    of the private key, SEC 1 v2 §3.2.2.1). Nothing is written to EEPROM."""
    hit = find_object(card, ObjType.ECKEY, ref)
    if hit is None:
        raise CardError(0x6A88)
    e = hit[1]
    if not e.extra[1] & USAGE_KEY_AGREEMENT:
        raise CardError(0x6985)
    if not card.ram.sm_command or card.ram.sm is None:
        raise CardError(0x6982)
    if cmd.le == 0:
        raise CardError(0x6700)
    value = read_value(card, e)
    d, card_public = value[:32], value[32:97]
    card.timing.crypto("ecdh")
    try:
        z = ec.p256_ecdh(d, host_public)
    except CipherError:
        raise CardError(0x6A80) from None
    nonce = card.rand(ECDH_NONCE_LENGTH)
    k_enc, k_mac, k_kc = ecdh_session(z, host_public, card_public, nonce)
    tag = ecdh_confirmation(k_kc, card.chip_serial, card_public, nonce, host_public)
    # CMAC blocks: extraction 2, three expansions of 11, the tag 10, subkeys 5
    card.timing.crypto("aes", 50)
    card.ram.ga_pending = None
    card.ram.sm = SmChannel("AES", k_enc, k_mac, 0, ref, chained=True)
    return tlv.encode(0x7C, [tlv.encode(0x81, nonce), tlv.encode(0x82, tag)])


def process_sm(card: CardOS, cmd: CommandAPDU, base_cla: int) -> bytes:
    """Unwrap, execute and wrap one SM command; every SM fault drops the session."""
    s = card.ram.sm
    if s is None:
        raise CardError(0x6882)
    n_blocks = 2 + len(cmd.data) // s.block
    card.timing.crypto("aes" if s.family == "AES" else "des", n_blocks)
    try:
        data, le = s.unwrap_command(cmd)
    except SmError as e:
        card.ram.sm = None
        raise CardError(e.sw) from None
    inner = CommandAPDU(base_cla, cmd.ins, cmd.p1, cmd.p2, data, le, len(data) > 255)
    try:
        out, sw = card.execute(inner, sm=True)
    except CardError as e:
        out, sw = b"", e.sw
    new = card.ram.sm
    if new is not s and (new is None or not new.chained):
        return sw.to_bytes(2, "big")  # the command itself ended the session
    resp = s.wrap_response(out, sw)  # a key agreement's answer: still the old session
    card.timing.crypto("aes" if s.family == "AES" else "des", 2 + len(resp) // s.block)
    return card._deliver(cmd, resp, sw)
