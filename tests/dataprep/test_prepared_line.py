"""``PreparedCard.to_line`` writes its JSON directly (no dictionaries in between, each
step's text made once): it must be byte for byte compact ``json`` of ``to_json()``."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from prep_kit import Keystore, make_keystore
from test_prepare_batch import lab_file, lab_resolver
from test_prepare_e2e import lab_record

from cardperso.dataprep.batch import prepare_file
from cardperso.dataprep.generator import write_issuer_file
from cardperso.dataprep.prepared import (
    CardBodyData,
    CarrierData,
    KeyResponse,
    MailerData,
    MailerPin,
    PinResponse,
    PreparedCard,
    Step,
    StepKind,
)
from cardperso.profiles.loader import load_builtin

TODAY = date(2026, 3, 15)


def reference(card: PreparedCard) -> bytes:
    """What ``to_line`` wrote before it was written by hand."""
    return json.dumps(card.to_json(), separators=(",", ":")).encode("ascii") + b"\n"


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    return make_keystore(tmp_path_factory.mktemp("keys"))


@pytest.mark.parametrize("product", ["debit", "sim", "employee", "lab"])
def test_every_prepared_card_line_is_its_json(
    keystore: Keystore, tmp_path: Path, product: str
) -> None:
    out = tmp_path / "out"
    if product == "lab":  # issuer PIN blocks, a card-generated PIN, keys to and from the issuer
        records = [lab_record(f"{n:04d}", bytes([n] * 16), n) for n in range(1, 26)]
        src = lab_file(tmp_path / "lab.jsonl", records)
        r = prepare_file(src, out, hsm=keystore.open, today=TODAY, resolver=lab_resolver)
    else:
        src = tmp_path / f"{product}.csv"
        write_issuer_file(load_builtin(product), src, 25, 11, TODAY, batch_id=f"LINE-{product}")
        r = prepare_file(src, out, hsm=keystore.open, today=TODAY, workers=0)
    lines = (r.folder / "cards.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) == 25
    for line in lines:
        card = PreparedCard.from_line(line)
        assert card.to_line() == reference(card) == line
        assert card.to_line() == line  # again, with every step's text remembered


def test_odd_values_are_written_as_json_writes_them() -> None:
    steps = (
        Step(
            StepKind.OPEN_SM,
            "GENERAL AUTHENTICATE",
            key_ref=1,
            master_key="KM",
            diversifier="chip_serial",
            scheme="aes-sp800-108",
        ),
        Step(
            StepKind.APDU,
            'quote " backslash \\ tab \t é € \u2028',
            apdu=b"\x00\xa4",
            sm=True,
            expect_data=b"",
        ),
        Step(StepKind.LOAD_KD, "PUT KEY", header=b"\x80\xd8", data=b"\x01\x02", expect_sw=0x6A82),
        Step(StepKind.SECRET, "PUT PIN", header=b"\x80", cryptogram=b"\xff" * 48, iv=bytes(16)),
        Step(
            StepKind.GENERATE_PIN,
            "GENERATE PIN",
            apdu=b"\x80\x01",
            sm=True,
            collect="pin_blocks:P",
            copies=(("ZPK.PRINT", 0), ("ZPK.MNO", 1)),
            pan="4761739001010010",
        ),
        Step(
            StepKind.EXTERNAL_AUTH,
            "EXTERNAL AUTHENTICATE",
            apdu=b"\x00\x84\x00\x00\x08",
            key_ref=15,
            master_key="KM.X",
            diversifier="00AB",
            scheme="emv-3des",
        ),
    )
    card = PreparedCard(
        batch_id="B/ü",
        seq=12,
        line=14,
        profile="lab",
        profile_version=3,
        channel_key="KD_PERSO",
        protection_note="ECDH … stands in",
        init_steps=steps[2:3],
        script=steps,
        tracks={2: ";4761739001010010=2812201?", 1: "%B4761739001010010^MUELLER/J^2812?"},
        card_body=CardBodyData(
            (("number", 1, "4761 7390"), ("name", 2, "JÜRGEN")),
            (("front", 10.5, 20.0, 2.5, "Müller"), ("back", 0.0, 1e-05, 10.0, "x")),
            {"side": "front", "x_mm": 1.5, "width_px": 16, "rows": "F00F"},
        ),
        presort=("DE", "80", "331"),
        carrier=CarrierData("carrier", ("Jürgen Müller", "Hauptstraße 5"), None, 85.0),
        mailer=MailerData(
            "mailer",
            ("a",),
            3,
            (MailerPin("PIN", "ZPK", 0, b"\x12\x34"), MailerPin("P2", "Z", 1, b"")),
        ),
        response_keys=(KeyResponse("BANK_KEY", 2, "ISSUER.KEK", "D0112...", "1A2B3C"),),
        response_pins=(PinResponse("PIN2", "ZPK.LAB", 1, b"\xab"),),
        key_checks=(("MK_AC", 3, "ABCDEF"), ("K", 4, "")),
        collect=("public_key:ID", "pin_blocks:PIN2"),
    )
    assert card.to_line() == reference(card)
    bare = PreparedCard("B", 1, 1, "p", 1, "K", "", (), ())
    assert bare.to_line() == reference(bare)
    assert PreparedCard.from_line(card.to_line()).to_line() == card.to_line()
