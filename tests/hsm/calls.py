"""One valid call of every HSM operation, for the permission and usage matrices."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from cardperso.crypto.ec import p256_public_key
from cardperso.crypto.secret import SecretBytes
from cardperso.errors import HsmError
from cardperso.hsm import (
    CardSecretRequest,
    CvvRequest,
    HsmSession,
    KeyAlgorithm,
    KeyHandle,
    KeyUsage,
    Operation,
    PinBlockFormat,
    PinCopy,
    RandomPin,
    Role,
)
from cardperso.hsm.ceremony import key_check_value
from cardperso.hsm.roles import PermissionDeniedError

from .support import IV, PAN, SERIAL, Harness, Kit, build_kit

F0 = PinBlockFormat.ISO_0
CARD_PUBLIC = p256_public_key(bytes(31) + b"\x07")
TABLE = "0123456789012345"
_counter = itertools.count()


@dataclass
class Prepared:
    """A kit plus data made with it: a PIN block, issuer data, a key block."""

    h: Harness
    kit: Kit
    pin_block: bytes
    issuer_data: bytes
    key_block: str
    pvv: str
    offset: str
    cvv: str
    mac: bytes
    cryptogram: bytes
    card_secret: KeyHandle


def prepare(h: Harness) -> Prepared:
    kit = build_kit(h)
    dp = h.session(Role.DATAPREP)
    block = dp.generate_pin(kit.zpk, PAN, F0, length=6)
    return Prepared(
        h=h,
        kit=kit,
        pin_block=block,
        issuer_data=dp.encrypt_data(kit.transport, b"issuer record", IV),
        key_block=h.officer.export_key_block(kit.kek, kit.exportable),
        pvv=dp.pvv(kit.pvk, kit.zpk, block, PAN, F0, "1"),
        offset=dp.ibm3624_offset(kit.pvk, kit.zpk, block, PAN, F0, PAN[-12:], TABLE),
        cvv=dp.generate_cvv(kit.cvk, PAN, "2812", "101"),
        mac=dp.generate_mac(kit.mac, b"data"),
        cryptogram=h.session(Role.QC).card_cryptogram(kit.km_aes, SERIAL, bytes(16)),
        card_secret=h.new("card-secret", KeyAlgorithm.AES_128, KeyUsage.CARD_SECRET),
    )


def _label() -> str:
    return f"made-{next(_counter)}"


def _destroy(s: HsmSession, p: Prepared) -> object:
    return s.destroy_key(p.h.new(_label(), KeyAlgorithm.AES_128, KeyUsage.MAC))


def _ceremony(s: HsmSession, p: Prepared) -> object:
    c = s.begin_ceremony(_label(), KeyAlgorithm.AES_128, KeyUsage.MAC)
    for name, part in (("alice", bytes(range(16))), ("bob", bytes(range(1, 17)))):
        c.add_component(name, SecretBytes(part), key_check_value(KeyAlgorithm.AES_128, part))
    return c.complete()


def _translate_to_session(s: HsmSession, p: Prepared) -> object:
    # Session keys belong to the session that agreed them; a role that may not agree
    # keys gets some from a personalization session (and is refused before using them).
    agreeing = s if s.role is Role.PERSONALIZATION else p.h.session(Role.PERSONALIZATION)
    keys = agreeing.ecdh_agree(CARD_PUBLIC)
    return s.translate_to_session(p.kit.transport, p.issuer_data, IV, keys)


def _card_reply(p: Prepared) -> tuple[object, bytes, bytes]:
    """A simulated card holding KD (from an initialization session) after GENERAL
    AUTHENTICATE step 1 with a zero host random: (reader, host random, reply)."""
    from cardperso.readers import cos
    from cardperso.readers.virtual import virtual_reader

    kd = p.h.session(Role.INITIALIZATION).kd_for_initialization(p.kit.km_aes, SERIAL)
    reader = virtual_reader(1, serial=SERIAL)
    reader.reset()
    for apdu in (
        cos.create_file(cos.fcp_df(0x3F00)),
        cos.put_key(1, cos.ALG_AES128, cos.USE_SM, kd.reveal()),
    ):
        reader.transmit(apdu)
    rh = bytes(16)
    reply = reader.transmit(cos.general_authenticate_1(1, rh))[:-2]
    return reader, rh, reply


def _channel_for(s: HsmSession, p: Prepared) -> object:
    opener = s if s.role in (Role.PERSONALIZATION, Role.QC) else p.h.session(Role.PERSONALIZATION)
    _, rh, reply = _card_reply(p)
    return opener.card_sm_open(p.kit.km_aes, SERIAL, rh, reply)


def _card_sm_open(s: HsmSession, p: Prepared) -> object:
    _, rh, reply = _card_reply(p)
    return s.card_sm_open(p.kit.km_aes, SERIAL, rh, reply)


def _agreeing_channel(s: HsmSession, p: Prepared) -> tuple[HsmSession, object, object]:
    """A KD-keyed channel (made by ``s`` if it may, else by a personalization session)
    on which the card generated agreement key 3: (opener, reader, channel)."""
    from cardperso.readers import cos

    opener = s if s.role is Role.PERSONALIZATION else p.h.session(Role.PERSONALIZATION)
    reader, rh, reply = _card_reply(p)
    channel = opener.card_sm_open(p.kit.km_aes, SERIAL, rh, reply)
    reader.transmit(cos.general_authenticate_2(1, channel.host_cryptogram))  # type: ignore[attr-defined]
    generate = bytes.fromhex("00478003")
    wrapped = opener.card_sm_wrap(channel, generate, b"\x81\x01\x10", le=256)
    opener.card_sm_unwrap(channel, reader.transmit(wrapped))  # type: ignore[attr-defined]
    return opener, reader, channel


def _card_sm_agree(s: HsmSession, p: Prepared) -> object:
    _, _, channel = _agreeing_channel(s, p)
    return s.card_sm_agree(channel, 3)  # type: ignore[arg-type]


def _card_sm_open_ecdh(s: HsmSession, p: Prepared) -> object:
    opener, reader, channel = _agreeing_channel(s, p)
    answer = reader.transmit(opener.card_sm_agree(channel, 3))  # type: ignore[arg-type, attr-defined]
    return s.card_sm_open_ecdh(channel, answer)  # type: ignore[arg-type]


def _card_sm_wrap(s: HsmSession, p: Prepared) -> object:
    channel = _channel_for(s, p)
    return s.card_sm_wrap(channel, bytes([0, 0xB0, 0, 0]), le=4)  # type: ignore[arg-type]


def _card_sm_unwrap(s: HsmSession, p: Prepared) -> object:
    from cardperso.securemsg import SmChannel

    channel = _channel_for(s, p)
    try:  # a response the channel accepts needs the card; any reply shows the gate
        return s.card_sm_unwrap(channel, b"\x90\x00")  # type: ignore[arg-type]
    except HsmError as e:
        if isinstance(e, PermissionDeniedError):
            raise
        return SmChannel  # permitted: refused for the content, not for the role


PUT_PIN_1 = bytes.fromhex("80D80101")


def _card_secrets(s: HsmSession, p: Prepared) -> object:
    request = CardSecretRequest(
        "record-1", PUT_PIN_1, RandomPin(4), pan=PAN, copies=(PinCopy(p.kit.zpk, F0),)
    )
    return s.card_secrets(p.card_secret, [request])


def _card_sm_unwrap_pin(s: HsmSession, p: Prepared) -> object:
    channel = _channel_for(s, p)
    try:  # without a GENERATE PIN on the channel the answer is refused for its content
        return s.card_sm_unwrap_pin(channel, b"\x90\x00", [PinCopy(p.kit.zpk, F0)], PAN)  # type: ignore[arg-type]
    except HsmError as e:
        if isinstance(e, PermissionDeniedError):
            raise
        return None


CALLS: dict[Operation, Callable[[HsmSession, Prepared], object]] = {
    Operation.LIST_KEYS: lambda s, p: s.list_keys(),
    Operation.GENERATE_KEY: lambda s, p: s.generate_key(
        _label(), KeyAlgorithm.AES_128, KeyUsage.MAC
    ),
    Operation.DESTROY_KEY: _destroy,
    Operation.CEREMONY: _ceremony,
    Operation.IMPORT_KEY_BLOCK: lambda s, p: s.import_key_block(p.kit.kek, p.key_block, _label()),
    Operation.EXPORT_KEY_BLOCK: lambda s, p: s.export_key_block(p.kit.kek, p.kit.exportable),
    Operation.PUBLIC_KEY: lambda s, p: s.public_key(p.kit.ec),
    Operation.KD_FOR_INITIALIZATION: lambda s, p: s.kd_for_initialization(p.kit.km_aes, SERIAL),
    Operation.CARD_CRYPTOGRAM: lambda s, p: s.card_cryptogram(p.kit.km_aes, SERIAL, bytes(16)),
    Operation.VERIFY_CARD_CRYPTOGRAM: lambda s, p: s.verify_card_cryptogram(
        p.kit.km_aes, SERIAL, bytes(16), p.cryptogram
    ),
    Operation.EXTERNAL_AUTH_CRYPTOGRAM: lambda s, p: s.external_auth_cryptogram(
        p.kit.km_aes, SERIAL, bytes(16)
    ),
    Operation.EMV_CRYPTOGRAM: lambda s, p: s.emv_cryptogram(
        p.kit.imk, PAN, "00", bytes(8), b"amount"
    ),
    Operation.TRANSLATE_TO_CARD: lambda s, p: s.translate_to_card(
        p.kit.transport, p.issuer_data, IV, p.kit.km_aes, SERIAL
    ),
    Operation.TRANSLATE_TO_SESSION: _translate_to_session,
    Operation.ENCRYPT_DATA: lambda s, p: s.encrypt_data(p.kit.transport, b"x", IV),
    Operation.DECRYPT_DATA: lambda s, p: s.decrypt_data(p.kit.transport, p.issuer_data, IV),
    Operation.GENERATE_PIN: lambda s, p: s.generate_pin(p.kit.zpk, PAN, F0),
    Operation.IBM3624_PIN: lambda s, p: s.ibm3624_pin(
        p.kit.pvk, p.kit.zpk, PAN, F0, PAN[-12:], TABLE
    ),
    Operation.IBM3624_OFFSET: lambda s, p: s.ibm3624_offset(
        p.kit.pvk, p.kit.zpk, p.pin_block, PAN, F0, PAN[-12:], TABLE
    ),
    Operation.VERIFY_IBM3624: lambda s, p: s.verify_ibm3624(
        p.kit.pvk, p.kit.zpk, p.pin_block, PAN, F0, PAN[-12:], TABLE, p.offset
    ),
    Operation.PVV: lambda s, p: s.pvv(p.kit.pvk, p.kit.zpk, p.pin_block, PAN, F0, "1"),
    Operation.VERIFY_PVV: lambda s, p: s.verify_pvv(
        p.kit.pvk, p.kit.zpk, p.pin_block, PAN, F0, "1", p.pvv
    ),
    Operation.TRANSLATE_PIN_BLOCK: lambda s, p: s.translate_pin_block(
        p.kit.zpk, p.kit.zpk, p.pin_block, PAN, F0, PinBlockFormat.ISO_3
    ),
    Operation.PRINT_PIN_MAILER: lambda s, p: s.print_pin_mailer(
        p.kit.zpk, p.pin_block, PAN, F0, lambda pin: b"letter"
    ),
    Operation.GENERATE_CVV: lambda s, p: s.generate_cvv(p.kit.cvk, PAN, "2812", "101"),
    Operation.VERIFY_CVV: lambda s, p: s.verify_cvv(p.kit.cvk, PAN, "2812", "101", p.cvv),
    Operation.GENERATE_MAC: lambda s, p: s.generate_mac(p.kit.mac, b"data"),
    Operation.VERIFY_MAC: lambda s, p: s.verify_mac(p.kit.mac, b"data", p.mac),
    Operation.ECDH_AGREE: lambda s, p: s.ecdh_agree(CARD_PUBLIC, key=p.kit.ec),
    Operation.CARD_SM_OPEN: _card_sm_open,
    Operation.CARD_SM_AGREE: _card_sm_agree,
    Operation.CARD_SM_OPEN_ECDH: _card_sm_open_ecdh,
    Operation.CARD_SM_WRAP: _card_sm_wrap,
    Operation.CARD_SM_UNWRAP: _card_sm_unwrap,
    Operation.CARD_SECRETS: _card_secrets,
    Operation.CARD_SM_UNWRAP_PIN: _card_sm_unwrap_pin,
    Operation.GENERATE_CVVS: lambda s, p: s.generate_cvvs(
        [CvvRequest(p.kit.cvk, PAN, "2812", "101")]
    ),
}
