"""Card secrets for data preparation: PINs and card keys made inside the HSM, leaving it
only as CARD_SECRET cryptograms bound to one PUT PIN / PUT KEY command, opened only
into a card's secure-messaging channel; PIN copies, PVVs, TR-31 response data; CVVs
in batches; one audit record per batch; repeatable randomness per request."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cardperso import tlv
from cardperso.crypto.ciphers import AES, DES, TDES
from cardperso.crypto.mac import cmac
from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretStr
from cardperso.errors import HsmError, KeyUsageError
from cardperso.hsm import (
    CardSecret,
    CardSecretRequest,
    CvvRequest,
    DerivedKey,
    DerivedPin,
    HsmSession,
    IssuerPin,
    KdScheme,
    KeyAlgorithm,
    KeyHandle,
    KeyUsage,
    PinBlockFormat,
    PinCopy,
    PvvRequest,
    RandomKey,
    RandomPin,
    RequestSeededRandom,
    Role,
    SoftHsm,
    WrappedKey,
    verify_chain,
)
from cardperso.hsm.audit import AuditLog
from cardperso.payments import cvv, ibm3624, pinblock, pvv, tr31
from cardperso.readers import cos
from cardperso.readers.virtual import VirtualReader, virtual_reader

from .conftest import FAST_SCRYPT, PASSPHRASE
from .support import CLEAR, PAN, SERIAL, Harness, Kit, TickClock, build_kit, watch_key, watch_pin

F0, F1 = PinBlockFormat.ISO_0, PinBlockFormat.ISO_1
A128, A256, T2 = KeyAlgorithm.AES_128, KeyAlgorithm.AES_256, KeyAlgorithm.TDES_2KEY
TABLE = "0123456789012345"
ISSUER_KEK = bytes.fromhex("3C5D7E9F0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F607182930415")
PIN_PREFIX = b"".join(
    tlv.encode(t, bytes([v])) for t, v in ((0x80, 3), (0x81, 0), (0x82, 0), (0x83, 4), (0x84, 12))
)


def put_pin(ref: int) -> bytes:
    return bytes([0x80, 0xD8, 0x01, ref])


def put_key(ref: int) -> bytes:
    return bytes([0x80, 0xD8, 0x00, ref])


def key_prefix(alg: int, usage: int) -> bytes:
    return tlv.encode(0x80, bytes([alg])) + tlv.encode(0x81, bytes([usage]))


@dataclass
class Bench:
    h: Harness
    kit: Kit
    secret: KeyHandle
    issuer_kek: KeyHandle

    @property
    def dp(self) -> HsmSession:
        return self.h.session(Role.DATAPREP)


@pytest.fixture
def bench(hsm: Harness) -> Bench:
    kit = build_kit(hsm)
    secret = hsm.new("card-secret", A128, KeyUsage.CARD_SECRET)
    issuer_kek = hsm.load("issuer-kek-known", A256, KeyUsage.ISSUER_KEK, ISSUER_KEK)
    return Bench(hsm, kit, secret, issuer_kek)


class Card:
    """A simulated card initialized with KD (ref 1, SM) and an open SM channel."""

    def __init__(self, b: Bench) -> None:
        self.b = b
        self.reader: VirtualReader = virtual_reader(3, serial=SERIAL)
        self.reader.reset()
        kd = b.h.session(Role.INITIALIZATION).kd_for_initialization(b.kit.km_aes, SERIAL)
        for apdu in (
            cos.create_file(cos.fcp_df(0x3F00)),
            cos.put_key(1, cos.ALG_AES128, cos.USE_SM, kd.reveal()),
            cos.set_lifecycle(cos.INITIALIZED),
        ):
            assert self.send(apdu) == b"\x90\x00"
        self.pers = b.h.session(Role.PERSONALIZATION)
        rh = bytes(range(16))
        reply = self.reader.transmit(cos.general_authenticate_1(1, rh))[:-2]
        self.channel = self.pers.card_sm_open(b.kit.km_aes, SERIAL, rh, reply)
        assert self.send(cos.general_authenticate_2(1, self.channel.host_cryptogram)) == b"\x90\x00"

    def send(self, apdu: bytes) -> bytes:
        return self.reader.transmit(apdu)

    def load(self, header: bytes, secret: CardSecret) -> int:
        wrapped = self.pers.card_sm_wrap(
            self.channel, header, secret.cryptogram, transport=self.b.secret, iv=secret.iv
        )
        _, sw = self.pers.card_sm_unwrap(self.channel, self.send(wrapped))
        return sw

    def verify(self, ref: int, pin: str) -> int:
        return int.from_bytes(self.send(cos.verify(ref, cos.format2(pin)))[-2:], "big")


def read_pin(b: Bench, block: bytes, fmt: PinBlockFormat = F0, key: KeyHandle | None = None) -> str:
    """The lettershop prints the mailer; the test reads it like the cardholder would."""
    seen: list[str] = []

    def render(pin: SecretStr) -> bytes:
        seen.append(pin.reveal())
        return b"letter"

    b.h.session(Role.LETTERSHOP).print_pin_mailer(key or b.kit.zpk, block, PAN, fmt, render)
    return watch_pin(seen[0])


# -- PINs ---------------------------------------------------------------------------------


def test_random_pin_reaches_the_card_and_the_mailer(bench: Bench) -> None:
    req = CardSecretRequest(
        "rec-1", put_pin(2), RandomPin(6), prefix=PIN_PREFIX, pan=PAN,
        copies=(PinCopy(bench.kit.zpk, F0), PinCopy(bench.kit.zpk, F1)),
        pvv=PvvRequest(bench.kit.pvk, "1"),
    )  # fmt: skip
    (got,) = bench.dp.card_secrets(bench.secret, [req])
    pin = read_pin(bench, got.copies[0])
    assert len(pin) == 6 and read_pin(bench, got.copies[1], F1) == pin
    assert got.pvv == pvv.pvv(TDES(CLEAR["pvk"]), PAN, "1", pin)
    assert got.key_block is None and got.kcv is None
    card = Card(bench)
    assert card.load(put_pin(2), got) == 0x9000
    assert card.verify(2, pin) == 0x9000


def test_issuer_pin_block_and_ibm3624_pin(bench: Bench) -> None:
    pin = watch_pin("7391")
    issuer_block = pinblock.encrypt_pin_block(TDES(CLEAR["zpk"]), F0, pin, PAN, SeededRandom(1))
    natural = ibm3624.natural_pin(TDES(CLEAR["pvk"]), PAN[-12:], TABLE, 4, "F")
    offset = "1234"
    with_offset = ibm3624.pin_from_offset(TDES(CLEAR["pvk"]), PAN[-12:], TABLE, offset, "F")
    reqs = [
        CardSecretRequest("rec-1", put_pin(1), IssuerPin(bench.kit.zpk, issuer_block, F0),
                          prefix=PIN_PREFIX, pan=PAN, copies=(PinCopy(bench.kit.zpk, F0),)),
        CardSecretRequest("rec-1", put_pin(2), DerivedPin(bench.kit.pvk, PAN[-12:], TABLE),
                          prefix=PIN_PREFIX, pan=PAN, copies=(PinCopy(bench.kit.zpk, F0),)),
        CardSecretRequest("rec-1", put_pin(3),
                          DerivedPin(bench.kit.pvk, PAN[-12:], TABLE, offset=offset),
                          prefix=PIN_PREFIX, pan=PAN, copies=(PinCopy(bench.kit.zpk, F0),)),
    ]  # fmt: skip
    results = bench.dp.card_secrets(bench.secret, reqs)
    assert [read_pin(bench, r.copies[0]) for r in results] == [pin, natural, with_offset]
    card = Card(bench)
    for ref, r, value in zip((1, 2, 3), results, (pin, natural, with_offset), strict=True):
        assert card.load(put_pin(ref), r) == 0x9000
        assert card.verify(ref, value) == 0x9000


# -- keys ---------------------------------------------------------------------------------


def _internal_auth(card: Card, ref: int, challenge: bytes) -> bytes:
    r = card.send(cos.internal_authenticate(ref, challenge))
    assert r[-2:] == b"\x90\x00"
    return r[:-2]


def test_random_key_goes_to_the_card_and_back_to_the_issuer(bench: Bench) -> None:
    req = CardSecretRequest(
        "rec-1", put_key(2), RandomKey(A128),
        prefix=key_prefix(cos.ALG_AES128, cos.USE_INT_AUTH),
        export_under=bench.issuer_kek, key_version="07",
    )  # fmt: skip
    (got,) = bench.dp.card_secrets(bench.secret, [req])
    assert got.key_block is not None and got.key_block.startswith("D")
    header, key = tr31.unwrap(AES(ISSUER_KEK), got.key_block)
    watch_key(key)
    assert (header.key_usage, header.mode_of_use, header.key_version_number) == ("E6", "N", "07")
    assert got.kcv == cmac(AES(key), bytes(16))[:3].hex().upper()
    card = Card(bench)
    assert card.load(put_key(2), got) == 0x9000
    challenge = bytes(range(8))
    assert _internal_auth(card, 2, challenge) == cmac(AES(key), b"\x88" + challenge)


def test_derived_key_is_the_kd_of_its_diversifier(bench: Bench) -> None:
    iccid = b"89490010000000000017"
    reqs = [
        CardSecretRequest("rec-1", put_key(2), DerivedKey(bench.kit.km_aes, iccid),
                          prefix=key_prefix(cos.ALG_AES128, cos.USE_INT_AUTH)),
        CardSecretRequest("rec-1", put_key(3),
                          DerivedKey(bench.kit.km_tdes, bytes.fromhex(PAN[-14:] + "00"),
                                     KdScheme.EMV_3DES),
                          prefix=key_prefix(cos.ALG_TDES2, cos.USE_INT_AUTH)),
    ]  # fmt: skip
    aes, tdes = bench.dp.card_secrets(bench.secret, reqs)
    assert aes.kcv is None and aes.key_block is None
    card = Card(bench)
    assert card.load(put_key(2), aes) == 0x9000
    assert card.load(put_key(3), tdes) == 0x9000
    qc = bench.h.session(Role.QC)
    ch = bytes(range(16))
    assert qc.verify_card_cryptogram(bench.kit.km_aes, iccid, ch, _internal_auth(card, 2, ch))
    y = bytes.fromhex(PAN[-14:] + "00")
    got = _internal_auth(card, 3, ch)
    assert len(got) == 8
    assert qc.verify_card_cryptogram(bench.kit.km_tdes, y, ch, got, scheme=KdScheme.EMV_3DES)


def test_issuer_keys_as_tr31_blocks_and_ecb_cryptograms(bench: Bench) -> None:
    ki, opc = bytes(range(100, 116)), bytes(range(200, 216))
    watch_key(ki)
    watch_key(opc)
    block = tr31.wrap(AES(CLEAR["kek-aes"]), tr31.KeyBlockHeader("D", "E6", "A", "N"), ki,
                      SeededRandom(2))  # fmt: skip
    ecb = AES(CLEAR["kek-aes"]).encrypt_ecb(opc)
    prefix = key_prefix(cos.ALG_AES128, cos.USE_INT_AUTH)
    reqs = [
        CardSecretRequest("sim-1", put_key(1), WrappedKey(bench.kit.kek, block), prefix=prefix),
        CardSecretRequest("sim-1", put_key(2), WrappedKey(bench.kit.kek, ecb), prefix=prefix),
    ]
    a, b = bench.dp.card_secrets(bench.secret, reqs)
    assert a.kcv == cmac(AES(ki), bytes(16))[:3].hex().upper()
    assert b.kcv == cmac(AES(opc), bytes(16))[:3].hex().upper()
    card = Card(bench)
    assert card.load(put_key(1), a) == 0x9000
    assert card.load(put_key(2), b) == 0x9000
    ch = b"challenge"
    assert _internal_auth(card, 1, ch) == cmac(AES(ki), b"\x88" + ch)
    assert _internal_auth(card, 2, ch) == cmac(AES(opc), b"\x88" + ch)


# -- what the cryptogram is bound to ------------------------------------------------------


def test_a_card_secret_opens_only_for_its_command(bench: Bench) -> None:
    req = CardSecretRequest("rec-1", put_pin(2), RandomPin(4), prefix=PIN_PREFIX, pan=PAN)
    (got,) = bench.dp.card_secrets(bench.secret, [req])
    card = Card(bench)
    flipped = bytes([got.cryptogram[0] ^ 1]) + got.cryptogram[1:]
    cases: list[tuple[bytes, bytes, bytes]] = [
        (put_pin(3), got.cryptogram, got.iv),  # another PIN reference
        (bytes.fromhex("00D60000"), got.cryptogram, got.iv),  # UPDATE BINARY of a file
        (put_pin(2), flipped, got.iv),  # altered
        (put_pin(2), got.cryptogram, bytes(16)),  # another IV
        (put_pin(2), got.cryptogram[:-1], got.iv),  # cut
    ]
    messages = set()
    for header, data, iv in cases:
        with pytest.raises(HsmError) as info:
            card.pers.card_sm_wrap(card.channel, header, data, transport=bench.secret, iv=iv)
        messages.add(str(info.value))
    # One message for every failure: no oracle on padding or binding.
    assert messages == {
        "HSM card_sm_wrap: the card secret does not verify for this command and key"
    }
    # Data preparation cannot open what it made: a CARD_SECRET key is no TRANSPORT key.
    with pytest.raises(KeyUsageError):
        bench.dp.decrypt_data(bench.secret, got.cryptogram, got.iv)
    # And a TRANSPORT key cannot protect card secrets.
    with pytest.raises(KeyUsageError):
        bench.dp.card_secrets(bench.kit.transport, [req])


BAD: list[tuple[str, Callable[[Bench], CardSecretRequest], type[HsmError], str]] = [
    ("pin by put key", lambda b: CardSecretRequest("r-1", put_key(1), RandomPin(4)),
     HsmError, "a PIN is loaded only by PUT PIN (80 D8 01 ref)"),
    ("key by put pin", lambda b: CardSecretRequest("r-1", put_pin(1), RandomKey(A128)),
     HsmError, "a key is loaded only by PUT KEY (80 D8 00 ref)"),
    ("key by update binary",
     lambda b: CardSecretRequest("r-1", bytes.fromhex("00D60000"), RandomKey(A128)),
     HsmError, "a key is loaded only by PUT KEY (80 D8 00 ref)"),
    ("derived key to the issuer",
     lambda b: CardSecretRequest("r-1", put_key(1), DerivedKey(b.kit.km_aes, SERIAL),
                                 export_under=b.issuer_kek),
     KeyUsageError, "only keys generated here go back to the issuer"),
    ("export under a plain kek",
     lambda b: CardSecretRequest("r-1", put_key(1), RandomKey(A128), export_under=b.kit.kek),
     KeyUsageError, "needs ISSUER_KEK"),
    ("pin key as pdk",
     lambda b: CardSecretRequest("r-1", put_pin(1), DerivedPin(b.kit.zpk, PAN[-12:], TABLE)),
     KeyUsageError, "needs PIN_VERIFICATION"),
    ("pvv without pan",
     lambda b: CardSecretRequest("r-1", put_pin(1), RandomPin(4), pvv=PvvRequest(b.kit.pvk, "1")),
     HsmError, "the PVV needs the PAN"),
    ("copies of a key",
     lambda b: CardSecretRequest("r-1", put_key(1), RandomKey(A128),
                                 copies=(PinCopy(b.kit.zpk, F0),)),
     HsmError, "PIN copies and PVVs are for PIN sources"),
    ("ec key", lambda b: CardSecretRequest("r-1", put_key(1), RandomKey(KeyAlgorithm.EC_P256)),
     HsmError, "EC key pairs are generated on the card"),
    ("short cryptogram",
     lambda b: CardSecretRequest("r-1", put_key(1), WrappedKey(b.kit.kek, bytes(8))),
     HsmError, "a key cryptogram is 16, 24 or 32 bytes"),
    ("bad context", lambda b: CardSecretRequest("", put_pin(1), RandomPin(4)),
     HsmError, "a request context is 1-128 printable ASCII characters"),
    ("bad pin block",
     lambda b: CardSecretRequest("r-1", put_pin(1), IssuerPin(b.kit.zpk, bytes(8), F0), pan=PAN),
     HsmError, "not a valid"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make", "kind", "message"), BAD, ids=[c[0] for c in BAD])
def test_bad_requests_are_refused_and_audited(
    bench: Bench,
    name: str,
    make: Callable[[Bench], CardSecretRequest],
    kind: type[HsmError],
    message: str,
) -> None:
    good = CardSecretRequest("r-0", put_pin(1), RandomPin(4), prefix=PIN_PREFIX)
    with pytest.raises(kind) as info:
        bench.dp.card_secrets(bench.secret, [good, make(bench)])
    assert message in str(info.value)
    assert info.value.operation == "card_secrets"
    assert bench.h.audit is not None
    last = json.loads(bench.h.audit.read_text().splitlines()[-1])
    assert last["operation"] == "card_secrets" and last["result"] == type(info.value).__name__


def test_failures_name_the_request(bench: Bench) -> None:
    good = CardSecretRequest("r-0", put_pin(1), RandomPin(4), prefix=PIN_PREFIX)
    bad = CardSecretRequest("BATCH-7/000002", put_pin(1), IssuerPin(bench.kit.zpk, bytes(8), F0),
                            pan=PAN)  # fmt: skip
    with pytest.raises(HsmError) as info:
        bench.dp.card_secrets(bench.secret, [good, bad])
    assert str(info.value).startswith("HSM card_secrets: request 1 (BATCH-7/000002): ")


# -- batches, audit, determinism ------------------------------------------------------------


def test_one_audit_record_per_batch(bench: Bench) -> None:
    assert bench.h.audit is not None
    before = len(bench.h.audit.read_text().splitlines())
    reqs = [
        CardSecretRequest(f"rec-{i}", put_pin(1), RandomPin(4), prefix=PIN_PREFIX, pan=PAN,
                          copies=(PinCopy(bench.kit.zpk, F0),))
        for i in range(50)
    ]  # fmt: skip
    assert len(bench.dp.card_secrets(bench.secret, reqs)) == 50
    lines = bench.h.audit.read_text().splitlines()
    assert len(lines) == before + 1
    record = json.loads(lines[-1])
    assert record["detail"] == {
        "requests": "50", "pins": "50", "keys": "0", "first": "rec-0", "last": "rec-49"
    }  # fmt: skip
    assert [k["label"] for k in record["keys"]] == ["card-secret", "zpk"]


def test_cvvs_in_one_call(bench: Bench) -> None:
    reqs = [CvvRequest(bench.kit.cvk, PAN, "2812", code) for code in ("101", "000", "999")]
    got = bench.dp.generate_cvvs(reqs)
    key_a, key_ab = DES(CLEAR["cvk"][:8]), TDES(CLEAR["cvk"])
    assert got == [cvv.cvv(key_a, key_ab, PAN, "2812", c) for c in ("101", "000", "999")]
    with pytest.raises(KeyUsageError):
        bench.dp.generate_cvvs([CvvRequest(bench.kit.pvk, PAN, "2812", "101")])
    with pytest.raises(HsmError, match="request 1: "):
        bench.dp.generate_cvvs([reqs[0], CvvRequest(bench.kit.cvk, PAN, "28", "101")])


def _seeded(tmp_path: Path, name: str, order: list[int]) -> list[CardSecret]:
    """A fresh soft HSM (same seed) that makes the same cards in another order."""
    path = tmp_path / f"{name}.cpks"
    hsm = SoftHsm.create(path, PASSPHRASE, rng=RequestSeededRandom("golden"), clock=TickClock(),
                         scrypt_n=FAST_SCRYPT)  # fmt: skip
    h = Harness("soft", hsm, path, hsm.audit_path)
    zpk = h.load("zpk", T2, KeyUsage.PIN_ENCRYPTION, CLEAR["zpk"])
    secret = h.load("card-secret", A128, KeyUsage.CARD_SECRET, CLEAR["transport"])
    reqs = {
        i: CardSecretRequest(f"rec-{i}", put_pin(1), RandomPin(4), prefix=PIN_PREFIX, pan=PAN,
                             copies=(PinCopy(zpk, F0),))
        for i in order
    }  # fmt: skip
    dp = h.session(Role.DATAPREP)
    by_index = dict(zip(order, dp.card_secrets(secret, [reqs[i] for i in order]), strict=True))
    h.close()
    return [by_index[i] for i in sorted(order)]


def test_request_seeded_randomness_does_not_depend_on_order(tmp_path: Path) -> None:
    forward = _seeded(tmp_path, "a", [0, 1, 2, 3])
    backward = _seeded(tmp_path, "b", [3, 2, 1, 0])
    assert forward == backward
    assert len({r.cryptogram for r in forward}) == 4


# -- the audit log shared by processes ------------------------------------------------------


def test_two_logs_on_one_file_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    a, b = AuditLog(path), AuditLog(path)
    for i in range(5):
        (a if i % 2 else b).append("op", "dataprep", "w", [], "ok", {"i": str(i)})
    a.append("op", "dataprep", "w", [], "ok")
    assert verify_chain(path).count == 6
    assert a.count == 6
    a.close()
    b.close()


def _append_many(path: str, who: str, n: int) -> None:
    log = AuditLog(path)
    for i in range(n):
        log.append("op", "dataprep", who, [], "ok", {"i": str(i)})
    log.close()


def test_processes_appending_at_once_keep_one_chain(tmp_path: Path) -> None:
    path = str(tmp_path / "audit.jsonl")
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_append_many, args=(path, f"w{k}", 300)) for k in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
        assert w.exitcode == 0
    assert verify_chain(path).count == 600


# -- a PIN the card generates (GENERATE PIN) ---------------------------------------------------


def test_a_card_generated_pin_leaves_the_hsm_only_as_pin_blocks(bench: Bench) -> None:
    card = Card(bench)
    header = bytes.fromhex("80DA0005")
    generate = cos.generate_pin(5, length=6, tries=3)
    wrapped = card.pers.card_sm_wrap(card.channel, header, generate[5:-1], le=256)
    answer = card.send(wrapped)
    # The station cannot open the answer itself: the PIN would be in clear.
    with pytest.raises(HsmError, match="opens only through card_sm_unwrap_pin"):
        card.pers.card_sm_unwrap(card.channel, answer)
    copies = [PinCopy(bench.kit.zpk, F0), PinCopy(bench.kit.zpk, F1)]
    blocks, sw = card.pers.card_sm_unwrap_pin(card.channel, answer, copies, PAN)
    assert sw == 0x9000 and len(blocks) == 2
    pin = read_pin(bench, blocks[0])
    assert len(pin) == 6 and read_pin(bench, blocks[1], F1) == pin
    assert card.verify(5, pin) == 0x9000
    # Only the answer to GENERATE PIN goes through card_sm_unwrap_pin.
    wrapped = card.pers.card_sm_wrap(
        card.channel, bytes.fromhex("00CA0000")[:2] + b"\xdf\x01", le=256
    )
    with pytest.raises(HsmError, match="takes only the answer to GENERATE PIN"):
        card.pers.card_sm_unwrap_pin(card.channel, card.send(wrapped), copies, PAN)
    with pytest.raises(HsmError, match="at least one PinCopy"):
        card.pers.card_sm_unwrap_pin(card.channel, b"\x90\x00", [], PAN)
    with pytest.raises(KeyUsageError):
        card.pers.card_sm_unwrap_pin(card.channel, b"\x90\x00", [PinCopy(bench.kit.pvk, F0)])


def test_an_error_answer_to_generate_pin_gives_no_blocks(bench: Bench) -> None:
    card = Card(bench)
    bad = tlv.encode(0x80, b"\x03")  # a PIN length below 4: the card refuses
    wrapped = card.pers.card_sm_wrap(card.channel, bytes.fromhex("80DA0005"), bad, le=256)
    blocks, sw = card.pers.card_sm_unwrap_pin(
        card.channel, card.send(wrapped), [PinCopy(bench.kit.zpk, F0)], PAN
    )
    assert (blocks, sw) == ((), 0x6A80)


def test_an_emv_imk_derives_card_keys_by_option_a_only(bench: Bench) -> None:
    y = bytes.fromhex(PAN[-14:] + "00")
    prefix = key_prefix(cos.ALG_TDES2, cos.USE_INT_AUTH)
    ok = CardSecretRequest("r-1", put_key(3), DerivedKey(bench.kit.imk, y, KdScheme.EMV_3DES),
                           prefix=prefix)  # fmt: skip
    (got,) = bench.dp.card_secrets(bench.secret, [ok])
    card = Card(bench)
    assert card.load(put_key(3), got) == 0x9000
    from cardperso.payments.emv_keys import derive_icc_mk_a

    icc = derive_icc_mk_a(TDES(CLEAR["km-tdes"]), PAN, "00")  # kit.imk holds this value
    assert _internal_auth(card, 3, b"ch") == cmac(TDES(icc), b"\x88" + b"ch")
    bad = CardSecretRequest("r-1", put_key(3), DerivedKey(bench.kit.imk, SERIAL))
    with pytest.raises(KeyUsageError, match="EMV Option A only"):
        bench.dp.card_secrets(bench.secret, [bad])
