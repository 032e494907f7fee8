"""Security commands (ISO/IEC 7816-4:2020 §11.5; ISO/IEC 7816-8 for key pairs):
VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, GET CHALLENGE, EXTERNAL /
INTERNAL AUTHENTICATE, GENERATE ASYMMETRIC KEY PAIR.

A comparison's outcome (retry counter, new value) is committed in one uniform
transaction before any answer leaves the card: cutting the power on a guess
neither saves a try nor reveals the outcome, and the object stays wholly old or
wholly new.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cardperso import tlv
from cardperso.apdu import CommandAPDU
from cardperso.card.errors import CardError
from cardperso.card.objects import (
    KEY_LEFT,
    KEY_LIMIT,
    KEY_USAGE,
    PIN_FLAGS,
    PIN_LEFT,
    PIN_LIMIT,
    PIN_MAX,
    PIN_MIN,
    PIN_PUK,
    PIN_TRANSPORT,
    USAGE_EXT_AUTH,
    USAGE_INT_AUTH,
    USAGE_KEY_AGREEMENT,
    find_object,
    key_cipher,
    parse_format2,
    read_value,
    same,
    store_object,
)
from cardperso.card.store import PHASE_PERSO_WRITTEN, Entry, Lifecycle, ObjType
from cardperso.crypto import ec
from cardperso.crypto.ciphers import BlockCipher
from cardperso.crypto.mac import cmac

if TYPE_CHECKING:
    from cardperso.card.os import CardOS

__all__ = ["HANDLERS"]


def _ref(p2: int) -> int:
    """Reference number from P2: b8 global/specific, b5-b1 the number (1..15 here)."""
    if p2 & 0x60 or not 1 <= p2 & 0x1F <= 15:
        raise CardError(0x6A86)
    return p2 & 0x0F


def _pin(card: CardOS, ref: int) -> tuple[int, Entry]:
    hit = find_object(card, ObjType.PIN, ref)
    if hit is None:
        raise CardError(0x6A88)
    return hit


def _counted(e: Entry, left_i: int, limit_i: int, match: bool) -> Entry:
    """The entry after one comparison: counter back to its limit, or one less."""
    new = e.copy()
    new.extra[left_i] = new.extra[limit_i] if match else new.extra[left_i] - 1
    return new


def _commit_uniform(card: CardOS) -> None:
    """Commit the outcome of a secret comparison.

    The decision is made in RAM and written in one transaction that stages the
    same pages whatever the outcome (a wrong guess rewrites the old value where a
    right one writes the new), committed uniformly; the answer leaves the card only
    after the commit. Cutting the power therefore neither saves a try nor reveals
    the outcome - the aim of the classic "decrement first" rule - while the object
    stays wholly old or wholly new."""
    card.st.commit(uniform=True)


def verify(card: CardOS, cmd: CommandAPDU) -> bytes:
    ref = _ref(cmd.p2)
    if cmd.le:
        raise CardError(0x6700)
    if cmd.p1 == 0xFF:  # reset the verification status (7816-4 §11.5.6)
        if cmd.data:
            raise CardError(0x6700)
        _pin(card, ref)
        card.ram.verified_pins.discard(ref)
        return b""
    if cmd.p1 != 0x00:
        raise CardError(0x6A86)
    idx, e = _pin(card, ref)
    if e.extra[PIN_FLAGS] & PIN_TRANSPORT:
        raise CardError(0x6984)  # a transport PIN must be changed before any use
    if not cmd.data:  # status query
        if e.extra[PIN_LEFT] == 0:
            raise CardError(0x6983)
        if ref in card.ram.verified_pins:
            return b""
        raise CardError(0x63C0 | e.extra[PIN_LEFT])
    if len(cmd.data) != 8:
        raise CardError(0x6700)
    parse_format2(cmd.data)
    if e.extra[PIN_LEFT] == 0:
        raise CardError(0x6983)
    match = same(read_value(card, e), cmd.data)
    new = _counted(e, PIN_LEFT, PIN_LIMIT, match)
    card.st.begin()
    card.st.put_entry(idx, new)
    _commit_uniform(card)
    if not match:
        card.ram.verified_pins.discard(ref)
        raise CardError(0x63C0 | new.extra[PIN_LEFT])
    card.ram.verified_pins.add(ref)
    return b""


def _new_pin_value(e: Entry, block: bytes) -> None:
    n = parse_format2(block)
    if not e.extra[PIN_MIN] <= n <= e.extra[PIN_MAX]:
        raise CardError(0x6A80)


def _with_new_value(card: CardOS, e: Entry) -> Entry:
    """Entry changes that go with a new PIN value: no longer a transport PIN, and
    marked as personalization data once the card has left MANUFACTURED."""
    e.extra[PIN_FLAGS] &= ~PIN_TRANSPORT & 0xFF
    if card.st.system.lifecycle != Lifecycle.MANUFACTURED:
        e.phase |= PHASE_PERSO_WRITTEN
    return e


def change_reference_data(card: CardOS, cmd: CommandAPDU) -> bytes:
    ref = _ref(cmd.p2)
    if cmd.le:
        raise CardError(0x6700)
    idx, e = _pin(card, ref)
    st = card.st
    if cmd.p1 == 0x00:
        if len(cmd.data) != 16:
            raise CardError(0x6700)
        old, new_block = cmd.data[:8], cmd.data[8:]
        parse_format2(old)
        _new_pin_value(e, new_block)
        if e.extra[PIN_FLAGS] & PIN_TRANSPORT and same(old, new_block):
            raise CardError(0x6A80)  # the transport PIN must really change
        if e.extra[PIN_LEFT] == 0:
            raise CardError(0x6983)
        current = read_value(card, e)
        match = same(current, old)
        new = _counted(e, PIN_LEFT, PIN_LIMIT, match)
        st.begin()
        st.txn.write(e.body, new_block if match else current)
        st.put_entry(idx, _with_new_value(card, new) if match else new)
        _commit_uniform(card)
        if not match:
            card.ram.verified_pins.discard(ref)
            raise CardError(0x63C0 | new.extra[PIN_LEFT])
    elif cmd.p1 == 0x01:  # new value only: needs this PIN verified in this session
        if len(cmd.data) != 8:
            raise CardError(0x6700)
        if e.extra[PIN_FLAGS] & PIN_TRANSPORT or ref not in card.ram.verified_pins:
            raise CardError(0x6982)
        _new_pin_value(e, cmd.data)
        st.begin()
        st.txn.write(e.body, cmd.data)
        st.put_entry(idx, _with_new_value(card, e.copy()))
        st.commit()
    else:
        raise CardError(0x6A86)
    card.ram.verified_pins.add(ref)
    return b""


def reset_retry_counter(card: CardOS, cmd: CommandAPDU) -> bytes:
    ref = _ref(cmd.p2)
    if cmd.le:
        raise CardError(0x6700)
    if cmd.p1 not in (0x00, 0x01):
        raise CardError(0x6A86)
    idx, e = _pin(card, ref)
    if not e.extra[PIN_PUK]:
        raise CardError(0x6985)  # this PIN has no unblocking PIN
    hit = find_object(card, ObjType.PIN, e.extra[PIN_PUK])
    if hit is None:
        raise CardError(0x6A88)
    pidx, puk = hit
    want = 16 if cmd.p1 == 0x00 else 8
    if len(cmd.data) != want:
        raise CardError(0x6700)
    parse_format2(cmd.data[:8])
    if cmd.p1 == 0x00:
        _new_pin_value(e, cmd.data[8:])
    if puk.extra[PIN_LEFT] == 0:
        raise CardError(0x6983)
    match = same(read_value(card, puk), cmd.data[:8])
    new_puk = _counted(puk, PIN_LEFT, PIN_LIMIT, match)
    pin = e.copy()
    if match:
        pin.extra[PIN_LEFT] = pin.extra[PIN_LIMIT]
    st = card.st
    st.begin()
    st.put_entry(pidx, new_puk)
    if cmd.p1 == 0x00:
        st.txn.write(e.body, cmd.data[8:] if match else read_value(card, e))
        if match:
            _with_new_value(card, pin)
    st.put_entry(idx, pin)
    _commit_uniform(card)
    if not match:
        raise CardError(0x63C0 | new_puk.extra[PIN_LEFT])
    card.ram.verified_pins.discard(ref)
    return b""


def get_challenge(card: CardOS, cmd: CommandAPDU) -> bytes:
    if cmd.p1 or cmd.p2:
        raise CardError(0x6A86)
    if cmd.data or not 8 <= cmd.le <= 32:
        raise CardError(0x6700)
    card.ram.challenge = card.rand(cmd.le)
    return card.ram.challenge


def _key(card: CardOS, ref: int, usage: int) -> tuple[int, Entry]:
    hit = find_object(card, ObjType.KEY, ref)
    if hit is None:
        raise CardError(0x6A88)
    if not hit[1].extra[KEY_USAGE] & usage:
        raise CardError(0x6985)
    if hit[1].extra[KEY_LIMIT] and hit[1].extra[KEY_LEFT] == 0:
        raise CardError(0x6983)  # a key whose try counter ran out is blocked for all uses
    return hit


def check_key_cryptogram(
    card: CardOS, idx: int, e: Entry, expected: bytes, received: bytes
) -> None:
    """Compare a host cryptogram under a key; a key with a try limit counts, in
    one uniform commit like the PINs (see :func:`_commit_uniform`)."""
    if e.extra[KEY_LIMIT] and e.extra[KEY_LEFT] == 0:
        raise CardError(0x6983)
    match = same(expected, received)
    if e.extra[KEY_LIMIT]:
        new = _counted(e, KEY_LEFT, KEY_LIMIT, match)
        card.st.begin()
        card.st.put_entry(idx, new)
        _commit_uniform(card)
        if not match:
            card.ram.auth_keys.discard(e.fid)
            raise CardError(0x63C0 | new.extra[KEY_LEFT])
    elif not match:
        card.ram.auth_keys.discard(e.fid)
        raise CardError(0x6300)


def external_authenticate(card: CardOS, cmd: CommandAPDU) -> bytes:
    if cmd.p1 != 0x00:
        raise CardError(0x6A86)
    ref = _ref(cmd.p2)
    if cmd.le:
        raise CardError(0x6700)
    idx, e = _key(card, ref, USAGE_EXT_AUTH)
    cipher = key_cipher(card, e)
    challenge, card.ram.challenge = card.ram.challenge, None
    if challenge is None or len(challenge) != cipher.block_size:
        raise CardError(0x6985)  # GET CHALLENGE of the key's block size first
    if len(cmd.data) != cipher.block_size:
        raise CardError(0x6700)
    card.timing.crypto("aes" if cipher.algorithm == "AES" else "des")
    check_key_cryptogram(card, idx, e, cipher.encrypt_ecb(challenge), cmd.data)
    card.ram.auth_keys.add(ref)
    return b""


def internal_authenticate(card: CardOS, cmd: CommandAPDU) -> bytes:
    if cmd.p1 != 0x00:
        raise CardError(0x6A86)
    ref = _ref(cmd.p2)
    if not cmd.data or cmd.le == 0:
        raise CardError(0x6700)
    hit = find_object(card, ObjType.ECKEY, ref)
    if hit is not None:
        e = hit[1]
        if not e.extra[1] & USAGE_INT_AUTH:
            raise CardError(0x6985)
        if len(cmd.data) > 64:
            raise CardError(0x6700)
        card.timing.crypto("ecdsa_sign")
        return ec.p256_sign(read_value(card, e)[:32], cmd.data)
    _, e = _key(card, ref, USAGE_INT_AUTH)
    cipher = key_cipher(card, e)
    if len(cmd.data) > 64:
        raise CardError(0x6700)
    card.timing.crypto("aes" if cipher.algorithm == "AES" else "des", 2 + len(cmd.data) // 8)
    return internal_auth_response(cipher, cmd.data)


def internal_auth_response(cipher: BlockCipher, challenge: bytes) -> bytes:
    """The card's proof of a symmetric key: CMAC(K, 88 || challenge), one block.

    The leading INS byte separates this from every other use of K: a plain
    encryption of the challenge would let anyone turn INTERNAL AUTHENTICATE into
    the cryptogram EXTERNAL AUTHENTICATE expects, or into the CMAC blocks of the
    SM session-key derivation (whose input starts with a 00 counter byte)."""
    return cmac(cipher, b"\x88" + challenge)


def generate_key_pair(card: CardOS, cmd: CommandAPDU) -> bytes:
    ref = _ref(cmd.p2)
    if cmd.p1 == 0x81:  # read the public key of an existing pair
        if cmd.data:
            raise CardError(0x6700)
        hit = find_object(card, ObjType.ECKEY, ref)
        if hit is None:
            raise CardError(0x6A88)
        public = read_value(card, hit[1])[32:]
    elif cmd.p1 == 0x80:
        if card.st.system.lifecycle not in (Lifecycle.MANUFACTURED, Lifecycle.INITIALIZED):
            raise CardError(0x6985)
        usage = USAGE_INT_AUTH | USAGE_KEY_AGREEMENT
        if cmd.data:
            try:
                u = tlv.to_dict(cmd.data).get(0x81)
            except tlv.TlvError:
                raise CardError(0x6A80) from None
            if (
                u is None
                or len(u) != 1
                or not u[0]
                or u[0] & ~(USAGE_INT_AUTH | USAGE_KEY_AGREEMENT)
            ):
                raise CardError(0x6A80)
            usage = u[0]
        d = ec.p256_generate_scalar(card.rng)
        public = ec.p256_public_key(d)
        card.timing.crypto("ec_keygen")
        st = card.st
        st.begin()
        store_object(card, ObjType.ECKEY, ref, d + public, bytes([0x01, usage, 0x01]))
        st.commit()
    else:
        raise CardError(0x6A86)
    return tlv.encode(0x7F49, tlv.encode(0x86, public))


HANDLERS = {
    (0x00, 0x20): verify,
    (0x00, 0x24): change_reference_data,
    (0x00, 0x2C): reset_retry_counter,
    (0x00, 0x84): get_challenge,
    (0x00, 0x82): external_authenticate,
    (0x00, 0x88): internal_authenticate,
    (0x00, 0x47): generate_key_pair,
}
