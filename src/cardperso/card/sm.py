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
from cardperso.securemsg import (
    SmChannel,
    SmError,
    card_cryptogram,
    derive_session,
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
    if card.ram.sm is not s:  # the command itself ended the session
        return sw.to_bytes(2, "big")
    resp = s.wrap_response(out, sw)
    card.timing.crypto("aes" if s.family == "AES" else "des", 2 + len(resp) // s.block)
    return card._deliver(cmd, resp, sw)
