"""Key usage enforcement: each wrong use of a key is refused with KeyUsageError and audited."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from cardperso.errors import KeyUsageError
from cardperso.hsm import (
    CvvRequest,
    HsmSession,
    KdScheme,
    KeyAlgorithm,
    KeyUsage,
    MacAlgorithm,
    Role,
)
from cardperso.hsm import PinBlockFormat as F

from .calls import CARD_PUBLIC, TABLE, Prepared, prepare
from .conftest import BACKENDS, make_harness
from .support import IV, PAN, SERIAL

R = Role
Case = tuple[str, Role, Callable[[HsmSession, Prepared], object]]

CASES: list[Case] = [
    # The three the issue names.
    ("pin key cannot encrypt data", R.DATAPREP,
     lambda s, p: s.encrypt_data(p.kit.zpk_aes, b"data", IV)),
    ("kek cannot mac", R.DATAPREP, lambda s, p: s.generate_mac(p.kit.kek, b"data")),
    ("kd master cannot export", R.SECURITY_OFFICER,
     lambda s, p: s.export_key_block(p.kit.km_aes, p.kit.exportable)),
    # Key management.
    ("non-exportable key stays in", R.SECURITY_OFFICER,
     lambda s, p: s.export_key_block(p.kit.kek, p.kit.mac)),
    ("weaker kek cannot wrap", R.SECURITY_OFFICER,
     lambda s, p: s.export_key_block(p.kit.kek_tdes, s.generate_key(
         "aes256-x", KeyAlgorithm.AES_256, KeyUsage.MAC, exportable=True))),
    ("transport key cannot wrap", R.SECURITY_OFFICER,
     lambda s, p: s.export_key_block(p.kit.transport, p.kit.exportable)),
    ("issuer kek cannot import", R.SECURITY_OFFICER,
     lambda s, p: s.import_key_block(p.kit.issuer_kek, p.key_block, "never")),
    ("mac key cannot unwrap", R.SECURITY_OFFICER,
     lambda s, p: s.import_key_block(p.kit.mac, p.key_block, "never")),
    ("session usage cannot be generated", R.SECURITY_OFFICER,
     lambda s, p: s.generate_key("s", KeyAlgorithm.AES_128, KeyUsage.SESSION_ENC)),
    ("cvk must be 2-key tdes", R.SECURITY_OFFICER,
     lambda s, p: s.generate_key("c", KeyAlgorithm.AES_128, KeyUsage.CVK)),
    ("transport must be aes", R.SECURITY_OFFICER,
     lambda s, p: s.generate_key("t", KeyAlgorithm.TDES_2KEY, KeyUsage.TRANSPORT)),
    ("ec key is for agreement only", R.SECURITY_OFFICER,
     lambda s, p: s.generate_key("e", KeyAlgorithm.EC_P256, KeyUsage.MAC)),
    ("public key of a symmetric key", R.SECURITY_OFFICER, lambda s, p: s.public_key(p.kit.mac)),
    # Card keys.
    ("transport key cannot derive kd", R.PERSONALIZATION,
     lambda s, p: s.card_cryptogram(p.kit.transport, SERIAL, bytes(16))),
    ("emv imk is not a kd master", R.INITIALIZATION,
     lambda s, p: s.kd_for_initialization(p.kit.imk, SERIAL)),
    ("kd master makes no emv cryptogram", R.QC,
     lambda s, p: s.emv_cryptogram(p.kit.km_tdes, PAN, "00", bytes(8), b"")),
    ("aes scheme needs an aes master", R.PERSONALIZATION,
     lambda s, p: s.card_cryptogram(p.kit.km_tdes, SERIAL, bytes(8),
                                    scheme=KdScheme.AES_SP800_108)),
    ("3des scheme needs a tdes master", R.PERSONALIZATION,
     lambda s, p: s.external_auth_cryptogram(p.kit.km_aes, SERIAL, bytes(16),
                                             scheme=KdScheme.EMV_3DES)),
    ("kd master cannot decrypt issuer data", R.PERSONALIZATION,
     lambda s, p: s.translate_to_card(p.kit.km_aes, p.issuer_data, IV, p.kit.km_aes, SERIAL)),
    ("mac key is no transport key", R.DATAPREP,
     lambda s, p: s.decrypt_data(p.kit.mac, p.issuer_data, IV)),
    ("transport key is no kd master", R.DATAPREP,
     lambda s, p: s.translate_to_card(p.kit.transport, p.issuer_data, IV, p.kit.transport,
                                      SERIAL)),
    ("mac key cannot agree keys", R.PERSONALIZATION,
     lambda s, p: s.ecdh_agree(CARD_PUBLIC, key=p.kit.mac)),
    ("session keys in the wrong slots", R.PERSONALIZATION,
     lambda s, p: (lambda k: s.translate_to_session(
         p.kit.transport, p.issuer_data, IV, replace(k, enc=k.mac, mac=k.enc)))(
             s.ecdh_agree(CARD_PUBLIC))),
    # PINs.
    ("mac key cannot encipher pins", R.DATAPREP,
     lambda s, p: s.generate_pin(p.kit.mac, PAN, F.ISO_0)),
    ("pvk cannot encipher pins", R.DATAPREP,
     lambda s, p: s.generate_pin(p.kit.pvk, PAN, F.ISO_0)),
    ("pin key is no pvk", R.DATAPREP,
     lambda s, p: s.pvv(p.kit.zpk, p.kit.zpk, p.pin_block, PAN, F.ISO_0, "1")),
    ("cvk is no pdk", R.DATAPREP,
     lambda s, p: s.ibm3624_pin(p.kit.cvk, p.kit.zpk, PAN, F.ISO_0, PAN[-12:], TABLE)),
    ("kek cannot translate pins", R.DATAPREP,
     lambda s, p: s.translate_pin_block(p.kit.zpk, p.kit.kek, p.pin_block, PAN, F.ISO_0,
                                        F.ISO_3)),
    ("transport key prints no pin mailer", R.LETTERSHOP,
     lambda s, p: s.print_pin_mailer(p.kit.transport, p.pin_block, PAN, F.ISO_0,
                                     lambda pin: b"")),
    # Card verification values and MACs.
    ("mac key cannot make cvvs", R.DATAPREP,
     lambda s, p: s.generate_cvv(p.kit.mac, PAN, "2812", "101")),
    ("pvk cannot verify cvvs", R.QC,
     lambda s, p: s.verify_cvv(p.kit.pvk, PAN, "2812", "101", "123")),
    ("cvk cannot mac", R.DATAPREP, lambda s, p: s.generate_mac(p.kit.cvk, b"data")),
    ("pin key cannot verify macs", R.QC,
     lambda s, p: s.verify_mac(p.kit.zpk, b"data", p.mac)),
    ("retail mac needs 2-key tdes", R.DATAPREP,
     lambda s, p: s.generate_mac(p.kit.mac, b"data", algorithm=MacAlgorithm.RETAIL)),
    # Card secrets: only a CARD_SECRET key protects them, and nothing opens one to a caller.
    ("card secret key cannot decrypt data", R.DATAPREP,
     lambda s, p: s.decrypt_data(p.card_secret, p.issuer_data, IV)),
    ("card secret key cannot encrypt data", R.DATAPREP,
     lambda s, p: s.encrypt_data(p.card_secret, b"data", IV)),
    ("card secret key cannot translate to a card", R.PERSONALIZATION,
     lambda s, p: s.translate_to_card(p.card_secret, p.issuer_data, IV, p.kit.km_aes, SERIAL)),
    ("transport key cannot protect card secrets", R.DATAPREP,
     lambda s, p: s.card_secrets(p.kit.transport, [])),
    ("kd master cannot protect card secrets", R.DATAPREP,
     lambda s, p: s.card_secrets(p.kit.km_aes, [])),
    ("pvk cannot make cvvs in a batch", R.DATAPREP,
     lambda s, p: s.generate_cvvs([CvvRequest(p.kit.pvk, PAN, "2812", "101")])),
    ("card secret key is aes only", R.SECURITY_OFFICER,
     lambda s, p: s.generate_key("cs", KeyAlgorithm.TDES_2KEY, KeyUsage.CARD_SECRET)),
]  # fmt: skip


@pytest.fixture(scope="module", params=BACKENDS)
def prepared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prepared]:
    harness = make_harness(request.param, tmp_path_factory.mktemp(request.param))
    yield prepare(harness)
    harness.close()


@pytest.mark.parametrize(("name", "role", "call"), CASES, ids=[c[0] for c in CASES])
def test_wrong_usage_is_refused(
    prepared: Prepared, name: str, role: Role, call: Callable[[HsmSession, Prepared], object]
) -> None:
    hsm = prepared.h
    before = {k.label for k in hsm.officer.list_keys()}
    with pytest.raises(KeyUsageError) as info:
        call(hsm.session(role), prepared)
    assert info.value.operation  # names the operation
    assert hsm.audit is not None
    last = json.loads(hsm.audit.read_text().splitlines()[-1])
    assert last["result"] == "KeyUsageError" and last["role"] == role.value
    after = {k.label for k in hsm.officer.list_keys()}
    assert after - before <= {"aes256-x"}  # nothing stored by a refused call
