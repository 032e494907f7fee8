"""ECDH-protected loading through the HSM (the chapter's Figure 10.64, docs/card-os.md §8.3).

A KD-keyed channel (opened with ``card_sm_open``) vouches for the card's P-256
public key: the HSM takes the point only from the card's protected answer to
GENERATE ASYMMETRIC KEY PAIR on that channel. ``card_sm_agree`` then makes the
ephemeral key and the protected GENERAL AUTHENTICATE; ``card_sm_open_ecdh`` checks
the card's key confirmation and returns the channel keyed by the agreement.
"""

from __future__ import annotations

import json

import pytest

from cardperso import tlv
from cardperso.apdu import parse_command
from cardperso.crypto.ciphers import TDES
from cardperso.errors import HsmError
from cardperso.hsm import CardChannel, HsmSession, PinBlockFormat, PinCopy, Role
from cardperso.hsm.roles import PermissionDeniedError
from cardperso.payments import pinblock
from cardperso.readers import VirtualReader, cos
from cardperso.readers.virtual import virtual_reader
from cardperso.securemsg import SmChannel

from .support import CLEAR, IV, SERIAL, Harness, Kit, build_kit, watch_pin

EC_REF = 3


@pytest.fixture
def kit(hsm: Harness) -> Kit:
    return build_kit(hsm)


class Card:
    """A simulated card with KD (key 1, SM) and room for EC keys, INITIALIZED."""

    def __init__(self, hsm: Harness, kit: Kit) -> None:
        kd = hsm.session(Role.INITIALIZATION).kd_for_initialization(kit.km_aes, SERIAL)
        self.reader: VirtualReader = virtual_reader(12, serial=SERIAL)
        self.reader.reset()
        self.trace: list[bytes] = []
        self.ok(cos.create_file(cos.fcp_df(0x3F00)))
        self.ok(cos.put_key(1, cos.ALG_AES128, cos.USE_SM, kd.reveal()))
        self.ok(cos.set_lifecycle(cos.INITIALIZED))
        self.trace.clear()  # initialization is another room

    def send(self, apdu: bytes) -> bytes:
        resp = self.reader.transmit(apdu)
        self.trace += [apdu, resp]
        return resp

    def ok(self, apdu: bytes) -> bytes:
        resp = self.send(apdu)
        assert resp[-2:] == b"\x90\x00", resp[-2:].hex()
        return resp[:-2]


def _sm(pers: HsmSession, card: Card, channel: CardChannel, apdu: bytes) -> tuple[bytes, int]:
    cmd = parse_command(apdu)
    header = bytes([cmd.cla, cmd.ins, cmd.p1, cmd.p2])
    wrapped = pers.card_sm_wrap(channel, header, cmd.data, le=cmd.le)
    return pers.card_sm_unwrap(channel, card.send(wrapped))


def _kd_channel(hsm: Harness, kit: Kit, card: Card) -> tuple[HsmSession, CardChannel]:
    pers = hsm.session(Role.PERSONALIZATION)
    rh = bytes(range(16))
    channel = pers.card_sm_open(kit.km_aes, SERIAL, rh, card.ok(cos.general_authenticate_1(1, rh)))
    card.ok(cos.general_authenticate_2(1, channel.host_cryptogram))
    return pers, channel


def _ecdh_channel(hsm: Harness, kit: Kit, card: Card) -> tuple[HsmSession, CardChannel]:
    pers, kd = _kd_channel(hsm, kit, card)
    data, sw = _sm(pers, card, kd, cos.generate_key_pair(EC_REF, cos.USE_KEY_AGREEMENT))
    assert sw == 0x9000 and data[:2] == b"\x7f\x49"
    answer = card.send(pers.card_sm_agree(kd, EC_REF))
    return pers, pers.card_sm_open_ecdh(kd, answer)


def test_secrets_load_under_the_agreed_keys_and_never_cross_in_clear(
    hsm: Harness, kit: Kit
) -> None:
    card = Card(hsm, kit)
    pers, channel = _ecdh_channel(hsm, kit, card)
    assert channel.host_cryptogram == b"" and channel.serial == SERIAL
    # the card really switched: its session is keyed by the agreement, counting afresh
    sm = card.reader.card.ram.sm
    assert isinstance(sm, SmChannel) and sm.key_ref == EC_REF and sm.ssc == 0
    pin = watch_pin("731904")
    put_pin = cos.put_pin(2, cos.format2(pin), tries=3)
    cryptogram = hsm.session(Role.DATAPREP).encrypt_data(kit.transport, put_pin[5:], IV)
    wrapped = pers.card_sm_wrap(channel, put_pin[:4], cryptogram, transport=kit.transport, iv=IV)
    assert pers.card_sm_unwrap(channel, card.send(wrapped)) == (b"", 0x9000)
    assert card.ok(cos.verify(2, cos.format2(pin))) == b""
    trace = b"".join(card.trace[:-2])
    session_keys = (sm.k_enc, sm.k_mac)
    for secret in (cos.format2(pin), put_pin[5:], pin.encode(), *session_keys):
        assert secret not in trace


def test_the_audit_names_the_card_key_and_both_channels(hsm: Harness, kit: Kit) -> None:
    card = Card(hsm, kit)
    _ecdh_channel(hsm, kit, card)
    assert hsm.audit is not None
    records = [json.loads(line) for line in hsm.audit.read_text().splitlines()]
    agree, opened = records[-2], records[-1]
    assert (agree["operation"], opened["operation"]) == ("card_sm_agree", "card_sm_open_ecdh")
    assert agree["detail"]["card_key"] == opened["detail"]["card_key"]
    assert len(agree["detail"]["card_key"]) == 6
    assert opened["detail"]["ecdh_channel"] != opened["detail"]["channel"]
    assert opened["result"] == "ok"


def test_only_a_point_the_card_reported_under_the_channel_is_used(hsm: Harness, kit: Kit) -> None:
    card = Card(hsm, kit)
    pers, kd = _kd_channel(hsm, kit, card)
    # generated in plain: the HSM never saw it under the channel, so it will not agree
    card.ok(cos.generate_key_pair(4, cos.USE_KEY_AGREEMENT))
    with pytest.raises(HsmError, match="has not reported EC key 4"):
        pers.card_sm_agree(kd, 4)
    # read back under the channel, it is vouched for
    assert _sm(pers, card, kd, cos.read_public_key(4))[1] == 0x9000
    answer = card.send(pers.card_sm_agree(kd, 4))
    assert pers.card_sm_open_ecdh(kd, answer).label != kd.label
    with pytest.raises(HsmError, match="no such open card channel"):
        pers.card_sm_wrap(kd, bytes.fromhex("00B00000"), le=4)


def test_a_tampered_key_confirmation_is_refused(hsm: Harness, kit: Kit) -> None:
    """A device that holds KD but not the card's EC private key (a KD clone) can MAC
    whatever it likes under the old session - but not the key-confirmation tag."""
    card = Card(hsm, kit)
    pers, kd = _kd_channel(hsm, kit, card)
    _sm(pers, card, kd, cos.generate_key_pair(EC_REF, cos.USE_KEY_AGREEMENT))
    old = card.reader.card.ram.sm
    assert isinstance(old, SmChannel)
    answer = card.send(pers.card_sm_agree(kd, EC_REF))
    # what the clone sees (the old session's keys), and its forgery re-protected with them
    opener = SmChannel(old.family, old.k_enc, old.k_mac, old.ssc - 1)
    plain, _ = opener.unwrap_response(answer[:-2], 0x9000)
    nonce = tlv.to_dict(tlv.to_dict(plain)[0x7C])[0x81]
    forged = tlv.encode(0x7C, [tlv.encode(0x81, nonce), tlv.encode(0x82, bytes(16))])
    forger = SmChannel(old.family, old.k_enc, old.k_mac, old.ssc - 1)
    with pytest.raises(HsmError, match="key confirmation does not verify"):
        pers.card_sm_open_ecdh(kd, forger.wrap_response(forged, 0x9000) + b"\x90\x00")
    with pytest.raises(HsmError, match="no such open card channel"):
        pers.card_sm_wrap(kd, bytes.fromhex("00B00000"), le=4)


def test_a_refused_agreement_keeps_the_old_channel(hsm: Harness, kit: Kit) -> None:
    card = Card(hsm, kit)
    pers, kd = _kd_channel(hsm, kit, card)
    # a signing-only key: the card refuses the agreement with 6985
    _sm(pers, card, kd, cos.generate_key_pair(5, cos.USE_INT_AUTH))
    with pytest.raises(HsmError, match="refused the key agreement \\(SW 6985\\)"):
        pers.card_sm_open_ecdh(kd, card.send(pers.card_sm_agree(kd, 5)))
    data, sw = _sm(pers, card, kd, cos.read_public_key(5))
    assert sw == 0x9000 and data[:2] == b"\x7f\x49"


def test_the_pending_agreement_opens_only_through_card_sm_open_ecdh(hsm: Harness, kit: Kit) -> None:
    card = Card(hsm, kit)
    pers, kd = _kd_channel(hsm, kit, card)
    _sm(pers, card, kd, cos.generate_key_pair(EC_REF, cos.USE_KEY_AGREEMENT))
    with pytest.raises(HsmError, match="no key agreement is pending"):
        pers.card_sm_open_ecdh(kd, b"\x90\x00")
    answer = card.send(pers.card_sm_agree(kd, EC_REF))
    with pytest.raises(HsmError, match="key agreement is pending"):
        pers.card_sm_unwrap(kd, answer)
    with pytest.raises(HsmError, match="key agreement is pending"):
        pers.card_sm_wrap(kd, bytes.fromhex("00B00000"), le=4)
    with pytest.raises(HsmError, match="1 to 15"):
        pers.card_sm_agree(pers.card_sm_open_ecdh(kd, answer), 0)
    with pytest.raises(HsmError, match="no such open card channel"):  # the old one is closed
        pers.card_sm_open_ecdh(kd, answer)


def test_the_agreement_belongs_to_the_personalization_room(hsm: Harness, kit: Kit) -> None:
    card = Card(hsm, kit)
    pers, kd = _kd_channel(hsm, kit, card)
    _sm(pers, card, kd, cos.generate_key_pair(EC_REF, cos.USE_KEY_AGREEMENT))
    for role in (Role.QC, Role.INITIALIZATION, Role.DATAPREP):
        with pytest.raises(PermissionDeniedError):
            hsm.session(role).card_sm_agree(kd, EC_REF)
    # another session's channel is unknown here, even to the same role
    with pytest.raises(HsmError, match="no such open card channel"):
        hsm.hsm.session(Role.PERSONALIZATION, "other-station").card_sm_agree(kd, EC_REF)


def test_a_pin_the_card_generates_leaves_the_ecdh_channel_only_as_pin_blocks(
    hsm: Harness, kit: Kit
) -> None:
    card = Card(hsm, kit)
    pers, channel = _ecdh_channel(hsm, kit, card)
    cmd = parse_command(cos.generate_pin(4, length=6))
    header = bytes([cmd.cla, cmd.ins, cmd.p1, cmd.p2])
    answer = card.send(pers.card_sm_wrap(channel, header, cmd.data, le=cmd.le))
    with pytest.raises(HsmError, match="card_sm_unwrap_pin"):
        pers.card_sm_unwrap(channel, answer)
    copies = [PinCopy(kit.zpk, PinBlockFormat.ISO_1)]
    (block,), sw = pers.card_sm_unwrap_pin(channel, answer, copies)
    assert sw == 0x9000
    pin = pinblock.decrypt_pin_block(TDES(CLEAR["zpk"]), PinBlockFormat.ISO_1, block, None)
    assert len(pin) == 6 and card.ok(cos.verify(4, cos.format2(pin))) == b""
    assert cos.format2(pin) not in b"".join(card.trace[:-2])
