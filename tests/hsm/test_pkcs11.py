"""What only the PKCS#11 backend promises: keys stay in the token, derived keys vanish.

The contract suite runs on this backend too (``hsm`` fixture); these tests look
into the token itself, through a separate PKCS#11 session, the way an auditor
would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from cardperso.crypto.secret import SecretStr
from cardperso.hsm import HsmError, KeyAlgorithm, KeystoreError, KeyUsage, Role
from cardperso.hsm.pkcs11 import Pkcs11Hsm, Pkcs11Location, open_session, parse_pkcs11_url
from cardperso.hsm.softhsm import SoftHsmToken

from .softhsm import make_pkcs11
from .support import CLEAR, SERIAL, Harness, TickClock, build_kit

pytestmark = pytest.mark.realcomponent


@pytest.fixture
def harness(softhsm_token: SoftHsmToken, tmp_path: Path) -> Iterator[Harness]:
    h = make_pkcs11(tmp_path)
    yield h
    h.close()


@pytest.fixture
def auditor(softhsm_token: SoftHsmToken) -> Iterator[Any]:
    """A second, independent PKCS#11 session on the same token."""
    session = open_session(softhsm_token.location, softhsm_token.pin)
    yield session
    session.close()


def objects_labelled(session: Any, label: str) -> list[Any]:
    return list(session.get_objects({Attribute.LABEL: label}))


def test_a_ceremony_key_cannot_be_read_or_wrapped(harness: Harness, auditor: Any) -> None:
    kit = build_kit(harness)
    for label in (kit.km_aes.label, kit.cvk.label, kit.cvk.label + "#k1", kit.kek_tdes.label):
        (obj,) = objects_labelled(auditor, label)
        assert obj[Attribute.SENSITIVE] is True and obj[Attribute.EXTRACTABLE] is False
        assert obj[Attribute.TOKEN] is True
        with pytest.raises(pkcs11.AttributeSensitive):
            obj[Attribute.VALUE]
    wrapper = auditor.generate_key(
        KeyType.AES, 128, store=False, template={Attribute.WRAP: True, Attribute.TOKEN: False}
    )
    (km,) = objects_labelled(auditor, kit.km_aes.label)
    with pytest.raises(pkcs11.KeyUnextractable):
        wrapper.wrap_key(km, mechanism=Mechanism.AES_KEY_WRAP)
    # The EC private key too: sensitive, not extractable.
    (ec,) = list(
        auditor.get_objects(
            {Attribute.LABEL: kit.ec.label, Attribute.CLASS: ObjectClass.PRIVATE_KEY}
        )
    )
    assert ec[Attribute.SENSITIVE] is True and ec[Attribute.EXTRACTABLE] is False
    # The token computes the same KCV the ceremony showed.
    assert km.encrypt(bytes(16), mechanism=Mechanism.AES_ECB) != bytes(16)


def test_only_exportable_keys_are_extractable_and_still_sensitive(
    harness: Harness, auditor: Any
) -> None:
    kit = build_kit(harness)
    (obj,) = objects_labelled(auditor, kit.exportable.label)
    assert obj[Attribute.EXTRACTABLE] is True and obj[Attribute.SENSITIVE] is True
    with pytest.raises(pkcs11.AttributeSensitive):
        obj[Attribute.VALUE]
    block = harness.officer.export_key_block(kit.kek, kit.exportable)
    assert block.startswith("D")


def token_objects(hsm: Pkcs11Hsm) -> int:
    return hsm.object_count(session_objects=True)


def test_derived_keys_never_outlive_the_call(harness: Harness) -> None:
    kit = build_kit(harness)
    hsm = harness.hsm
    assert isinstance(hsm, Pkcs11Hsm)
    pers = harness.session(Role.PERSONALIZATION)
    dp = harness.session(Role.DATAPREP)
    pers.card_cryptogram(kit.km_aes, SERIAL, b"challenge")  # warm up (nothing is cached)
    before = token_objects(hsm)
    for km in (kit.km_aes, kit.km_aes256, kit.km_tdes):
        pers.card_cryptogram(km, SERIAL, b"challenge")
        pers.external_auth_cryptogram(km, SERIAL, bytes(16 if km.algorithm.is_aes else 8))
        ct = dp.encrypt_data(kit.transport, b"issuer data", bytes(16))
        pers.translate_to_card(kit.transport, ct, bytes(16), km, SERIAL)
        assert token_objects(hsm) == before
    # A failing call destroys its derived keys too.
    with pytest.raises(HsmError):
        pers.external_auth_cryptogram(kit.km_aes, SERIAL, b"short")
    assert token_objects(hsm) == before


def test_session_keys_live_with_the_session(harness: Harness) -> None:
    from cardperso.crypto.ec import p256_generate_scalar, p256_public_key
    from cardperso.crypto.rand import SeededRandom

    kit = build_kit(harness)
    hsm = harness.hsm
    assert isinstance(hsm, Pkcs11Hsm)
    before = token_objects(hsm)
    pers = hsm.session(Role.PERSONALIZATION, "short session")
    card = p256_public_key(p256_generate_scalar(SeededRandom("card")))
    agreed = pers.ecdh_agree(card)
    assert token_objects(hsm) == before + 2  # SK.ENC, SK.MAC (the ephemeral key is gone)
    pers.destroy_key(agreed.enc)
    assert token_objects(hsm) == before + 1
    pers.ecdh_agree(card, key=kit.ec)
    pers.close()
    assert token_objects(hsm) == before


def test_keys_survive_a_reopen_and_the_audit_continues(
    softhsm_token: SoftHsmToken, tmp_path: Path
) -> None:
    h = make_pkcs11(tmp_path)
    made = h.load("km", KeyAlgorithm.AES_128, KeyUsage.KD_MASTER, CLEAR["km-aes"])
    ec = h.new("ec", KeyAlgorithm.EC_P256, KeyUsage.KEY_AGREEMENT)
    cvk = h.new("cvk", KeyAlgorithm.TDES_2KEY, KeyUsage.CVK)
    cvv = h.session(Role.DATAPREP).generate_cvv(cvk, "4123456789012345", "8701", "101")
    audit = h.audit
    assert audit is not None
    h.close()
    with pytest.raises(KeystoreError, match="wrong PIN"):
        Pkcs11Hsm.open(softhsm_token.location, SecretStr("not the pin"), audit, operator="intruder")
    again = Pkcs11Hsm.open(softhsm_token.url, softhsm_token.pin, audit, clock=TickClock())
    try:
        so = again.session(Role.SECURITY_OFFICER, "officer")
        assert so.list_keys() == [cvk, ec, made]
        assert so.public_key(ec) == so.public_key(so.get_key("ec"))
        dp = again.session(Role.DATAPREP, "dataprep")
        assert dp.generate_cvv(cvk, "4123456789012345", "8701", "101") == cvv
        assert again.verify_audit().count == len(audit.read_text().splitlines())
    finally:
        again.close()
    results = [json.loads(x) for x in audit.read_text().splitlines() if "open_keystore" in x]
    assert [(r["operator"], r["result"]) for r in results] == [
        ("intruder", "KeystoreError"),
        ("unknown", "ok"),
    ]


def test_urls() -> None:
    assert parse_pkcs11_url("pkcs11:/usr/lib/softhsm/libsofthsm2.so?token=bureau") == (
        Pkcs11Location("/usr/lib/softhsm/libsofthsm2.so", "bureau")
    )
    assert parse_pkcs11_url("pkcs11:token=my%20token?module-path=/opt/x.so").token == "my token"
    for bad in ("softhsm:/x.so?token=a", "pkcs11:/x.so"):
        with pytest.raises(HsmError):
            parse_pkcs11_url(bad)
