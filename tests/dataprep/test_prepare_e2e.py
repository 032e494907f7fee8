"""Each PIN method and key route, end to end against the simulated card.

Data preparation makes the cards (dataprep role), a test station initializes and
personalizes simulated cards with them (initialization and personalization roles),
and then the card is used the way its holder and issuer would: VERIFY with the PIN
from the PIN mailer (the lettershop prints it; the test reads it), authentication
with every card key - through the HSM (QC role) for keys it derives, and with the
issuer's own copy for keys that went back as response data or came from the
issuer. The transport PIN works only after it is changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from perso_station import Station
from prep_kit import Keystore, clear_key, lab_profile, lab_record, make_keystore

from cardperso import tlv
from cardperso.crypto.ciphers import AES, TDES
from cardperso.crypto.ec import p256_verify
from cardperso.crypto.mac import cmac
from cardperso.crypto.secret import SecretStr
from cardperso.dataprep.generator import generate_records
from cardperso.dataprep.magstripe import parse_track2
from cardperso.dataprep.prepare import CardPreparer
from cardperso.dataprep.prepared import PreparedCard, StepKind
from cardperso.dataprep.secrets import EMV_PSN
from cardperso.hsm import Hsm, HsmSession, KdScheme, PinBlockFormat, Role
from cardperso.payments import pinblock, tr31
from cardperso.profiles.loader import load_builtin
from cardperso.profiles.schema import Profile
from cardperso.readers import Reader, cos
from cardperso.readers.virtual import virtual_reader

TODAY = date(2026, 3, 15)


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    return make_keystore(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def hsm(keystore: Keystore) -> Iterator[Hsm]:
    h = keystore.open()
    yield h
    h.close()


@dataclass
class Made:
    """A prepared, initialized and personalized card, ready to use."""

    profile: Profile
    record: dict[str, str]
    card: PreparedCard
    reader: Reader
    collected: dict[str, bytes]
    qc: HsmSession
    pin_blocks: dict[str, tuple[bytes, ...]]

    def send(self, apdu: bytes) -> tuple[bytes, int]:
        r = self.reader.transmit(apdu)
        return r[:-2], int.from_bytes(r[-2:], "big")

    def verify(self, ref: int, pin: str) -> int:
        return self.send(cos.verify(ref, cos.format2(pin)))[1]

    def serial(self) -> bytes:
        return tlv.to_dict(self.send(cos.get_data(0xDF01))[0])[0xDF01]

    def internal_auth(self, ref: int, challenge: bytes) -> bytes:
        data, sw = self.send(cos.internal_authenticate(ref, challenge))
        assert sw == 0x9000, f"{sw:04X}"
        return data

    def external_auth(self, ref: int, encrypt: Callable[[bytes], bytes]) -> int:
        challenge, sw = self.send(cos.get_challenge(16))
        assert sw == 0x9000
        return self.send(cos.external_authenticate(ref, encrypt(challenge)))[1]

    def hsm_external_auth(self, ref: int, master: str, diversifier: bytes) -> int:
        km = self.qc.get_key(master)

        def crypt(challenge: bytes) -> bytes:
            return self.qc.external_auth_cryptogram(km, diversifier, challenge)

        return self.external_auth(ref, crypt)


def make(hsm: Hsm, profile: Profile, record: dict[str, str], seq: int = 1) -> Made:
    dp = hsm.session(Role.DATAPREP, "dataprep")
    preparer = CardPreparer(profile, dp, batch_id="E2E-1", file="e2e.csv")
    cards, problems = preparer.prepare([(seq, seq + 1, record)])
    assert not problems and len(cards) == 1
    card = PreparedCard.from_line(cards[0].to_line())  # what the line reads back
    reader = virtual_reader(seq, serial=bytes.fromhex(f"C0DE00000000{seq:04X}"))
    station = Station(hsm)
    collected = station.make(reader, preparer.init_script, card)
    qc = hsm.session(Role.QC, "qc")
    return Made(profile, record, card, reader, collected, qc, station.pin_blocks)


def mailer_pins(hsm: Hsm, m: Made) -> dict[str, str]:
    """What the cardholder reads on the PIN mailer (the lettershop prints it blind)."""
    assert m.card.mailer is not None
    mail = hsm.session(Role.LETTERSHOP, "lettershop")
    pan = m.record.get("pan")
    out: dict[str, str] = {}
    for p in m.card.mailer.pins:
        # A PIN the card generated has its mailer block from the line (copy 0).
        block = p.block or m.pin_blocks[f"pin_blocks:{p.name}"][0]
        seen: list[str] = []

        def render(pin: SecretStr, seen: list[str] = seen) -> bytes:
            seen.append(pin.reveal())
            return b"%PDF-mailer"

        mail.print_pin_mailer(mail.get_key(p.key), block, pan, PinBlockFormat(p.format), render)
        out[p.name] = seen[0]
    return out


def records(profile: Profile, n: int = 2, seed: int = 5) -> list[dict[str, str]]:
    return list(generate_records(profile, n, seed, TODAY))


# -- (d) IBM 3624 PIN with PVV; derived keys (KD at initialization, EMV keys from the PAN) ---


def test_debit_ibm3624_pin_pvv_cvv_and_derived_keys(hsm: Hsm) -> None:
    p = load_builtin("debit")
    rec = records(p)[0]
    m = make(hsm, p, rec)
    pins = mailer_pins(hsm, m)
    assert set(pins) == {"PIN"} and len(pins["PIN"]) == 4
    assert m.verify(1, pins["PIN"]) == 0x9000
    # The mailer block checks against the IBM 3624 derivation (offset 0000) and the PVV.
    assert m.card.mailer is not None
    block = m.card.mailer.pins[0].block
    qc, pan = m.qc, rec["pan"]
    print_key, pdk, pvk = (qc.get_key(k) for k in ("ZPK.PRINT", "PDK.DEBIT", "PVK.DEBIT"))
    f0 = PinBlockFormat.ISO_0
    assert qc.verify_ibm3624(pdk, print_key, block, pan, f0, pan[3:15], "0123456789012345", "0000")
    t2 = parse_track2(m.card.tracks[2])
    pvki, pvv, cvv = t2.discretionary[0], t2.discretionary[1:5], t2.discretionary[5:8]
    assert qc.verify_pvv(pvk, print_key, block, pan, f0, pvki, pvv)
    assert qc.verify_cvv(qc.get_key("CVK.DEBIT"), pan, rec["expiry"], "201", cvv)
    # The chip's track 2 equivalent data carries the iCVV and reads back as written.
    ef_t2 = next(s for s in m.card.script if s.note.startswith("READ BINARY EF.T2"))
    assert ef_t2.expect_data is not None
    icvv = ef_t2.expect_data.hex().upper().split("D")[1][7 + 5 : 7 + 8]
    assert qc.verify_cvv(qc.get_key("CVK.DEBIT"), pan, rec["expiry"], "999", icvv)
    # KD_PERSO and KD_ADMIN (derived from the chip serial at initialization).
    serial = m.serial()
    assert m.hsm_external_auth(1, "KM.DEBIT.PERSO", serial) == 0x9000
    assert m.hsm_external_auth(2, "KM.DEBIT.ADMIN", serial) == 0x9000
    # MK_AC (EMV Option A from the PAN, loaded at personalization).
    y = bytes.fromhex((pan + EMV_PSN)[-16:])
    ch = bytes(range(8))
    answer = m.internal_auth(3, ch)
    assert qc.verify_card_cryptogram(qc.get_key("IMK.DEBIT.AC"), y, ch, answer,
                                     scheme=KdScheme.EMV_3DES)  # fmt: skip
    # The card is personalized: PUT KEY / PUT PIN are closed now.
    assert m.send(cos.put_pin(9, cos.format2("1234")))[1] == 0x6985


# -- (c) bureau random PINs, PUKs back to the issuer; issuer keys as ECB cryptograms --------


def test_sim_bureau_random_pins_puks_and_issuer_keys(hsm: Hsm) -> None:
    p = load_builtin("sim")
    rec = records(p)[1]
    m = make(hsm, p, rec, seq=2)
    pins = mailer_pins(hsm, m)
    assert {k: len(v) for k, v in pins.items()} == {"PIN1": 4, "PUK1": 8, "PIN2": 4, "PUK2": 8}
    assert m.verify(1, pins["PIN1"]) == 0x9000
    assert m.verify(3, pins["PIN2"]) == 0x9000
    # The PUKs went back to the operator under its PIN key, ISO format 1.
    returned = {r.name: r for r in m.card.response_pins}
    assert set(returned) == {"PUK1", "PUK2"}
    zpk = TDES(clear_key("ZPK.MNO"))
    puk1 = pinblock.decrypt_pin_block(zpk, PinBlockFormat.ISO_1, returned["PUK1"].block, None)
    assert puk1 == pins["PUK1"]
    # Block PIN1, then unblock it with the PUK the operator holds.
    wrong = "0000" if pins["PIN1"] != "0000" else "1111"
    for _ in range(3):
        m.verify(1, wrong)
    assert m.verify(1, pins["PIN1"]) == 0x6983
    sw = m.send(cos.reset_retry_counter(1, cos.format2(puk1), cos.format2("2468")))[1]
    assert sw == 0x9000 and m.verify(1, "2468") == 0x9000
    # Ki and OPc: the operator's cryptograms under KEK.MNO, now in the card.
    kek = AES(clear_key("KEK.MNO"))
    ch = b"RAND-0123456789"
    for ref, field in ((1, "ki"), (2, "opc")):
        key = kek.decrypt_ecb(bytes.fromhex(rec[field]))
        assert m.internal_auth(ref, ch) == cmac(AES(key), b"\x88" + ch)
    assert dict((n, r) for n, r, _ in m.card.key_checks) == {"KI": 1, "OPC": 2}
    # ADM derived from the ICCID; EF.IMSI written after authenticating it; EF.ICCID
    # written at initialization (its update condition is never).
    assert m.hsm_external_auth(3, "KM.SIM.ADM", rec["iccid"].encode()) == 0x9000
    assert [s.note for s in m.card.init_steps][:1] == ["SELECT EF.ICCID"]
    assert m.send(cos.select_path(0x7F20, 0x6F07))[1] == 0x9000
    imsi, sw = m.send(cos.read_binary(0, 9))
    assert sw == 0x9000 and imsi[1] in (0x09, 0x19, 0x29, 0x39, 0x49, 0x59, 0x69, 0x79, 0x89, 0x99)
    assert m.send(cos.select_path(0x2FE2))[1] == 0x9000
    iccid, _ = m.send(cos.read_binary(0, 10))
    assert iccid.hex().upper()[:2] == rec["iccid"][1] + rec["iccid"][0]
    assert m.hsm_external_auth(4, "KM.SIM.PERSO", m.serial()) == 0x9000


# -- (a) transport PIN; card-generated key pairs -----------------------------------------------


def test_employee_transport_pin_and_card_generated_keys(hsm: Hsm) -> None:
    p = load_builtin("employee")
    rec = records(p)[0]
    m = make(hsm, p, rec, seq=3)
    assert m.card.mailer is None  # a transport PIN has no PIN letter
    assert m.verify(1, "000000") == 0x6984  # refused until it is changed
    assert m.send(cos.verify(1))[1] == 0x6984
    change = cos.change_reference_data(1, cos.format2("000000"), cos.format2("482916"))
    assert m.send(change)[1] == 0x9000
    assert m.verify(1, "482916") == 0x9000
    # The PUK went to the issuer's helpdesk under ZPK.HR.
    (puk,) = m.card.response_pins
    zpk = TDES(clear_key("ZPK.HR"))
    puk_value = pinblock.decrypt_pin_block(zpk, PinBlockFormat.ISO_1, puk.block, None)
    assert len(puk_value) == 8
    for _ in range(3):
        m.verify(1, "999999")
    unblock = cos.reset_retry_counter(1, cos.format2(puk_value), cos.format2("135790"))
    assert m.send(unblock)[1] == 0x9000 and m.verify(1, "135790") == 0x9000
    # Key pairs generated on the card: the public key collected at the line is the one
    # the card reports, and the card's signature verifies with it.
    assert m.card.collect == ("public_key:KEY_AUTH", "public_key:KEY_LOAD")
    for ref, name in ((2, "KEY_AUTH"), (3, "KEY_LOAD")):
        data, sw = m.send(cos.read_public_key(ref))
        assert sw == 0x9000 and data == m.collected[f"public_key:{name}"]
    public = tlv.to_dict(tlv.to_dict(m.collected["public_key:KEY_AUTH"])[0x7F49])[0x86]
    challenge = b"employee sign-on challenge"
    assert p256_verify(public, challenge, m.internal_auth(2, challenge))
    # Loaded under keys agreed by ECDH with KEY_LOAD, inside a session KD_ADMIN opened.
    assert m.card.channel_key == "KEY_LOAD" and "KD_ADMIN" in m.card.protection_note
    kinds = [s.kind for s in m.card.script]
    assert kinds[: kinds.index(StepKind.OPEN_ECDH)] == [StepKind.OPEN_SM] + [StepKind.APDU] * 2
    assert m.hsm_external_auth(1, "KM.EMPLOYEE.ADMIN", m.serial()) == 0x9000


# -- (b) issuer PIN blocks and card-generated PINs; keys random at the bureau and from the issuer


def test_lab_issuer_pin_block_card_generated_pin_bureau_key_and_issuer_tr31_key(hsm: Hsm) -> None:
    issuer_key = bytes(range(0x40, 0x50))
    rec = lab_record("8316", issuer_key)
    m = make(hsm, lab_profile(), rec, seq=4)
    pins = mailer_pins(hsm, m)
    assert pins["PIN"] == "8316"
    assert m.verify(1, "8316") == 0x9000
    # PIN2 was generated by the card at the line: the mailer block and the issuer's
    # block come from the HSM, which opened the card's protected answer.
    assert len(pins["PIN2"]) == 6 and m.verify(2, pins["PIN2"]) == 0x9000
    (generated,) = [r for r in m.card.response_pins if r.name == "PIN2"]
    assert generated.block == b"" and m.card.collect == ("pin_blocks:PIN2",)
    issuer_copy = m.pin_blocks["pin_blocks:PIN2"][1]
    zpk = TDES(clear_key("ZPK.LAB"))
    assert pinblock.decrypt_pin_block(zpk, PinBlockFormat.ISO_1, issuer_copy, None) == pins["PIN2"]
    # The bureau's random key went back as response data; the issuer unwraps it and
    # authenticates the card with it.
    (resp,) = m.card.response_keys
    assert (resp.name, resp.ref, resp.kek) == ("BANK_KEY", 2, "ISSUER.KEK.LAB")
    header, bank_key = tr31.unwrap(AES(clear_key("ISSUER.KEK.LAB")), resp.block)
    assert header.key_version_number == "03"
    assert resp.kcv == cmac(AES(bank_key), bytes(16))[:3].hex().upper()
    assert m.external_auth(2, AES(bank_key).encrypt_ecb) == 0x9000
    ch = b"issuer check"
    assert m.internal_auth(2, ch) == cmac(AES(bank_key), b"\x88" + ch)
    # The issuer's own key arrived in a TR-31 block and is in the card.
    assert m.internal_auth(3, ch) == cmac(AES(issuer_key), b"\x88" + ch)
    assert m.hsm_external_auth(1, "KM.LAB.PERSO", m.serial()) == 0x9000


def test_prepared_cards_read_back_equal(hsm: Hsm, tmp_path: Path) -> None:
    p = load_builtin("sim")
    dp = hsm.session(Role.DATAPREP, "dp")
    cards, _ = CardPreparer(p, dp, batch_id="RT").prepare(
        [(i + 1, i + 3, r) for i, r in enumerate(records(p, 3))]
    )
    for c in cards:
        assert PreparedCard.from_line(c.to_line()) == c
        assert PreparedCard.from_line(c.to_line()).to_line() == c.to_line()


def test_tdes_keys_derive_for_the_card(hsm: Hsm) -> None:
    """MK_SMI/MK_SMC of the debit card answer as the EMV ICC master keys of the PAN."""
    p = load_builtin("debit")
    rec = records(p, 3, seed=9)[2]
    m = make(hsm, p, rec, seq=5)
    from cardperso.payments.emv_keys import derive_icc_mk_a

    icc = derive_icc_mk_a(TDES(clear_key("IMK.DEBIT.AC")), rec["pan"], EMV_PSN)
    ch = bytes(8)
    assert m.internal_auth(3, ch) == cmac(TDES(icc), b"\x88" + ch)
