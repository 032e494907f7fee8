"""The HSM's secure-messaging channel with a simulated card (KD-protected loading,
the chapter's Figure 10.63): KD derived inside the HSM from KM and the serial the
card reports; a PIN prepared under the transport key is decrypted and re-protected
for the card inside the HSM; the APDU trace never shows it in clear."""

from __future__ import annotations

import json

import pytest

from cardperso import tlv
from cardperso.errors import HsmError
from cardperso.hsm import Role, SmCommand
from cardperso.hsm.roles import PermissionDeniedError
from cardperso.readers import cos
from cardperso.readers.virtual import virtual_reader

from .support import IV, SERIAL, Harness, Kit, build_kit, watch_pin


@pytest.fixture
def kit(hsm: Harness) -> Kit:
    return build_kit(hsm)


def _initialized_card(hsm: Harness, kit: Kit, km_attr: str = "km_aes"):  # type: ignore[no-untyped-def]
    init = hsm.session(Role.INITIALIZATION)
    reader = virtual_reader(11, serial=SERIAL)
    reader.reset()

    def send(apdu: bytes) -> bytes:
        r = reader.transmit(apdu)
        assert r[-2:] == b"\x90\x00", r[-2:].hex()
        return r[:-2]

    km = getattr(kit, km_attr)
    kd = init.kd_for_initialization(km, SERIAL)
    alg = cos.ALG_AES128 if km_attr == "km_aes" else cos.ALG_TDES2
    send(cos.create_file(cos.fcp_df(0x3F00)))
    send(cos.create_file(cos.fcp_transparent(0x0101, 32, sfi=1, sec=cos.ac(read=cos.SM_SC))))
    send(cos.put_key(1, alg, cos.USE_SM | cos.USE_INT_AUTH, kd.reveal()))
    send(cos.set_lifecycle(cos.INITIALIZED))
    return reader, send, km


def _open(hsm: Harness, kit: Kit, role: Role = Role.PERSONALIZATION, km_attr: str = "km_aes"):  # type: ignore[no-untyped-def]
    reader, send, km = _initialized_card(hsm, kit, km_attr)
    session = hsm.session(role)
    bs = 16 if km_attr == "km_aes" else 8
    rh = bytes(range(bs))
    serial = tlv.to_dict(send(cos.get_data(0xDF01)))[0xDF01]
    reply = send(cos.general_authenticate_1(1, rh))
    channel = session.card_sm_open(km, serial, rh, reply)
    send(cos.general_authenticate_2(1, channel.host_cryptogram))
    return reader, send, session, channel


@pytest.mark.parametrize("km_attr", ["km_aes", "km_tdes"])
def test_pin_loaded_under_sm_from_a_transport_cryptogram(
    hsm: Harness, kit: Kit, km_attr: str
) -> None:
    reader, send, pers, channel = _open(hsm, kit, km_attr=km_attr)
    pin = watch_pin("80417")
    pin_block = cos.format2(pin)
    put_pin = cos.put_pin(2, pin_block, tries=3)
    tlv_data = put_pin[5:]  # the data field of PUT PIN, prepared at data preparation
    dataprep = hsm.session(Role.DATAPREP)
    cryptogram = dataprep.encrypt_data(kit.transport, tlv_data, IV)
    trace: list[bytes] = []
    apdu = pers.card_sm_wrap(channel, put_pin[:4], cryptogram, transport=kit.transport, iv=IV)
    trace.append(apdu)
    resp = reader.transmit(apdu)
    trace.append(resp)
    assert pers.card_sm_unwrap(channel, resp) == (b"", 0x9000)
    # the PIN works on the card, and never crossed the interface in clear
    assert send(cos.verify(2, pin_block)) == b""
    for blob in trace:
        assert pin_block not in blob and tlv_data not in blob


def test_reading_an_sm_only_file_through_the_channel(hsm: Harness, kit: Kit) -> None:
    qc_reader, _qc_send, qc, channel = _open(hsm, kit, Role.QC)
    resp = qc_reader.transmit(qc.card_sm_wrap(channel, bytes([0, 0xB0, 0x81, 0]), le=32))
    data, sw = qc.card_sm_unwrap(channel, resp)
    assert (data, sw) == (bytes(32), 0x9000)
    assert qc_reader.transmit(cos.read_binary(0, 32, sfi=1))[-2:] == b"\x69\x82"


def test_wrong_master_key_is_refused_at_open(hsm: Harness, kit: Kit) -> None:
    _reader, send, _ = _initialized_card(hsm, kit)
    pers = hsm.session(Role.PERSONALIZATION)
    reply = send(cos.general_authenticate_1(1, bytes(16)))
    with pytest.raises(HsmError, match="card cryptogram does not verify"):
        pers.card_sm_open(kit.km_aes256, SERIAL, bytes(16), reply)


def test_tampered_response_closes_the_channel(hsm: Harness, kit: Kit) -> None:
    reader, _send, pers, channel = _open(hsm, kit)
    resp = bytearray(reader.transmit(pers.card_sm_wrap(channel, bytes([0, 0xB0, 0x81, 0]), le=8)))
    resp[3] ^= 1
    with pytest.raises(HsmError):
        pers.card_sm_unwrap(channel, bytes(resp))
    with pytest.raises(HsmError, match="no such open card channel"):
        pers.card_sm_wrap(channel, bytes([0, 0xB0, 0x81, 0]), le=8)


def test_roles_without_the_channel_are_refused(hsm: Harness, kit: Kit) -> None:
    _, send, _ = _initialized_card(hsm, kit)
    reply = send(cos.general_authenticate_1(1, bytes(16)))
    for role in (Role.INITIALIZATION, Role.DATAPREP, Role.LETTERSHOP):
        with pytest.raises(PermissionDeniedError):
            hsm.session(role).card_sm_open(kit.km_aes, SERIAL, bytes(16), reply)


def test_a_channel_belongs_to_its_session(hsm: Harness, kit: Kit) -> None:
    _, _, _, channel = _open(hsm, kit)
    other = hsm.hsm.session(Role.PERSONALIZATION, "another-station")
    with pytest.raises(HsmError, match="no such open card channel"):
        other.card_sm_wrap(channel, bytes([0, 0xB0, 0x81, 0]), le=8)


# -- several commands per call (card_sm_wrap_many / card_sm_unwrap_many) -----------------

READ_SM = bytes([0, 0xB0, 0x81, 0])  # READ BINARY of the SM-only file (SFI 1)
UPDATE_SM = bytes([0, 0xD6, 0x81, 0])  # UPDATE BINARY of it


def _audit_ops(hsm: Harness) -> list[str]:
    return [json.loads(line)["operation"] for line in hsm.audit.read_text().splitlines()]


@pytest.mark.parametrize("km_attr", ["km_aes", "km_tdes"])
def test_several_commands_wrap_in_one_call_and_the_channel_stays_in_step(
    hsm: Harness, kit: Kit, km_attr: str
) -> None:
    reader, _send, pers, channel = _open(hsm, kit, km_attr=km_attr)
    before = len(_audit_ops(hsm))
    commands = [
        SmCommand(UPDATE_SM, bytes(range(1, 17))),
        SmCommand(UPDATE_SM[:3] + b"\x10", bytes(range(17, 33))),
        SmCommand(READ_SM, le=32),
    ]
    wrapped = pers.card_sm_wrap_many(channel, commands)
    answers = [reader.transmit(apdu) for apdu in wrapped]
    opened = pers.card_sm_unwrap_many(channel, answers)
    assert opened == [(b"", 0x9000), (b"", 0x9000), (bytes(range(1, 33)), 0x9000)]
    # one audit record for each call, naming the commands, never their data
    ops = _audit_ops(hsm)[before:]
    assert ops == ["card_sm_wrap", "card_sm_unwrap"]
    record = json.loads(hsm.audit.read_text().splitlines()[-2])
    assert record["detail"]["commands"] == "3" and record["detail"]["ins"] == "D6 D6 B0"
    # a single command afterwards still agrees with the card's counter
    resp = reader.transmit(pers.card_sm_wrap(channel, READ_SM, le=4))
    assert pers.card_sm_unwrap(channel, resp) == (bytes([1, 2, 3, 4]), 0x9000)


def test_a_run_cut_short_by_the_card_leaves_the_channel_in_step(hsm: Harness, kit: Kit) -> None:
    reader, _send, pers, channel = _open(hsm, kit)
    wrapped = pers.card_sm_wrap_many(
        channel,
        [
            SmCommand(READ_SM, le=8),
            SmCommand(bytes([0, 0xB0, 0x85, 0]), le=8),  # SFI 5: no such file
            SmCommand(READ_SM, le=8),  # never sent
        ],
    )
    answers = [reader.transmit(wrapped[0]), reader.transmit(wrapped[1])]
    opened = pers.card_sm_unwrap_many(channel, answers)
    assert [sw for _, sw in opened] == [0x9000, 0x6A82]
    resp = reader.transmit(pers.card_sm_wrap(channel, READ_SM, le=8))
    assert pers.card_sm_unwrap(channel, resp) == (bytes(8), 0x9000)


def test_a_tampered_answer_ends_the_list_and_the_channel(hsm: Harness, kit: Kit) -> None:
    reader, _send, pers, channel = _open(hsm, kit)
    wrapped = pers.card_sm_wrap_many(channel, [SmCommand(READ_SM, le=8)] * 3)
    answers = [bytearray(reader.transmit(apdu)) for apdu in wrapped]
    answers[1][3] ^= 1
    opened = pers.card_sm_unwrap_many(channel, [bytes(a) for a in answers])
    assert opened == [(bytes(8), 0x9000)]
    with pytest.raises(HsmError, match="no such open card channel"):
        pers.card_sm_wrap_many(channel, [SmCommand(READ_SM, le=8)])


def test_a_batch_with_a_bad_header_wraps_nothing(hsm: Harness, kit: Kit) -> None:
    reader, _send, pers, channel = _open(hsm, kit)
    with pytest.raises(HsmError, match="header"):
        pers.card_sm_wrap_many(channel, [SmCommand(READ_SM, le=8), SmCommand(b"\x0c\xb0\x81")])
    with pytest.raises(HsmError):
        pers.card_sm_wrap_many(channel, [])
    resp = reader.transmit(pers.card_sm_wrap(channel, READ_SM, le=8))
    assert pers.card_sm_unwrap(channel, resp) == (bytes(8), 0x9000)
