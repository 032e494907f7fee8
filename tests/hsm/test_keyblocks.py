"""TR-31 key blocks through the HSM: export/import round trips and the rules around them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardperso.crypto.ciphers import AES
from cardperso.crypto.rand import SeededRandom
from cardperso.errors import KeyUsageError
from cardperso.hsm import HsmError, KeyAlgorithm, KeyUsage, PermissionDeniedError, Role
from cardperso.payments import tr31

from .conftest import make_soft
from .support import CLEAR, H, Harness, Kit, build_kit

A128, A256 = KeyAlgorithm.AES_128, KeyAlgorithm.AES_256
T2, T3 = KeyAlgorithm.TDES_2KEY, KeyAlgorithm.TDES_3KEY


@pytest.fixture
def kit(hsm: Harness) -> Kit:
    return build_kit(hsm)


@pytest.fixture
def receiver(tmp_path: Path) -> Harness:
    """A second HSM that shares the AES KEK with the first (entered by the same ceremony)."""
    (tmp_path / "receiver").mkdir()
    h = make_soft(tmp_path / "receiver", seed="receiver")
    h.load("kek-aes", A256, KeyUsage.KEK, CLEAR["kek-aes"])
    return h


@pytest.mark.parametrize(
    ("alg", "usage"),
    [
        (A128, KeyUsage.MAC),
        (A256, KeyUsage.TRANSPORT),
        (T2, KeyUsage.PIN_ENCRYPTION),
        (T3, KeyUsage.KD_MASTER),
        (T2, KeyUsage.CVK),
        (T2, KeyUsage.PIN_VERIFICATION),
        (T2, KeyUsage.EMV_IMK),
        (A128, KeyUsage.KEK),
    ],
)
def test_round_trip_between_two_hsms(
    hsm: Harness, kit: Kit, receiver: Harness, alg: KeyAlgorithm, usage: KeyUsage
) -> None:
    key = hsm.officer.generate_key("travels", alg, usage, exportable=True, version="07")
    block = hsm.officer.export_key_block(kit.kek, key)
    assert block.startswith("D") and block[9:11] == "07" and block[11] == "N"
    kek = receiver.officer.get_key("kek-aes")
    got = receiver.officer.import_key_block(kek, block, "arrived")
    assert (got.algorithm, got.usage, got.kcv, got.version) == (alg, usage, key.kcv, "07")
    assert got.exportable is False  # the receiver may not pass it on
    again = hsm.officer.export_key_block(kit.kek, key, exportable_by_receiver=True)
    assert receiver.officer.import_key_block(kek, again, "again").exportable is True


def test_tdes_kek_writes_version_b(hsm: Harness, kit: Kit) -> None:
    key = hsm.officer.generate_key("pek", T2, KeyUsage.PIN_ENCRYPTION, exportable=True)
    block = hsm.officer.export_key_block(kit.kek_tdes, key)
    assert block[0] == "B" and block[5:9] == "P0TB"
    back = hsm.officer.import_key_block(kit.kek_tdes, block, "pek-copy")
    assert back.kcv == key.kcv


def test_blocks_made_outside_import_with_their_usage(hsm: Harness, kit: Kit) -> None:
    clear = H("3F419E1CB7079442AA37474C2EFBF8B8")
    header = tr31.KeyBlockHeader("D", "D0", "A", "B", "01", "E")
    block = tr31.wrap(AES(CLEAR["kek-aes"]), header, clear, SeededRandom(3))
    handle = hsm.officer.import_key_block(kit.kek, block, "issuer-transport")
    assert handle.usage is KeyUsage.TRANSPORT and handle.exportable
    ct = hsm.session(Role.DATAPREP).encrypt_data(handle, b"x", bytes(16))
    assert AES(clear).decrypt_cbc(ct, bytes(16))[:1] == b"x"


def test_issuer_kek_exports_response_data_but_imports_nothing(hsm: Harness, kit: Kit) -> None:
    pin_key = hsm.officer.generate_key("resp", T2, KeyUsage.PIN_ENCRYPTION, exportable=True)
    block = hsm.officer.export_key_block(kit.issuer_kek, pin_key)
    with pytest.raises(KeyUsageError):
        hsm.officer.import_key_block(kit.issuer_kek, block, "nope")
    # A K1 block can be imported as an issuer KEK when the officer says so.
    kek_block = hsm.officer.export_key_block(
        kit.kek, hsm.officer.generate_key("x", A256, KeyUsage.KEK, exportable=True)
    )
    got = hsm.officer.import_key_block(kit.kek, kek_block, "for-issuer", usage=KeyUsage.ISSUER_KEK)
    assert got.usage is KeyUsage.ISSUER_KEK
    with pytest.raises(KeyUsageError, match="cannot become"):
        hsm.officer.import_key_block(kit.kek, kek_block, "bad", usage=KeyUsage.MAC)


def test_export_rules(hsm: Harness, kit: Kit) -> None:
    so = hsm.officer
    with pytest.raises(KeyUsageError, match="not exportable"):
        so.export_key_block(kit.kek, kit.mac)
    strong = so.generate_key("strong", A256, KeyUsage.MAC, exportable=True)
    with pytest.raises(KeyUsageError, match="weaker"):
        so.export_key_block(kit.kek_tdes, strong)
    with pytest.raises(KeyUsageError):
        so.export_key_block(kit.km_aes, kit.exportable)  # a KD master key wraps nothing
    ec = so.generate_key("ec-x", KeyAlgorithm.EC_P256, KeyUsage.KEY_AGREEMENT, exportable=True)
    with pytest.raises(KeyUsageError):
        so.export_key_block(kit.kek, ec)
    for role in Role:
        if role is not Role.SECURITY_OFFICER:
            with pytest.raises(PermissionDeniedError):
                hsm.session(role).export_key_block(kit.kek, kit.exportable)


def test_import_rules(hsm: Harness, kit: Kit) -> None:
    so = hsm.officer
    block = so.export_key_block(kit.kek, kit.exportable)
    so.import_key_block(kit.kek, block, "copy")
    with pytest.raises(HsmError, match="already exists"):
        so.import_key_block(kit.kek, block, "copy")
    with pytest.raises(HsmError, match="MAC"):
        so.import_key_block(kit.kek, block[:-2] + "00", "bad-mac")
    with pytest.raises(HsmError):
        so.import_key_block(kit.kek, "not a key block", "junk")
    # An AES-256 key wrapped under an AES-128 KEK: refused on the way in too.
    weak = hsm.load("weak-kek", A128, KeyUsage.KEK, H("000102030405060708090A0B0C0D0E0F"))
    block = tr31.wrap(
        AES(H("000102030405060708090A0B0C0D0E0F")), tr31.KeyBlockHeader("D", "M6", "A", "C"),
        bytes(range(32)), SeededRandom(1),
    )  # fmt: skip
    with pytest.raises(KeyUsageError, match="weaker"):
        so.import_key_block(weak, block, "too-strong")
    assert "too-strong" not in {h.label for h in so.list_keys()}
