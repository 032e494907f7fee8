"""Each quality-control check on its own: it passes a good card and catches its fault.

* command/response check (``chip_check_steps``): every read-back keeps its expected
  answer; what a product writes without a read-back is listed;
* HSM check (:mod:`cardperso.line.qc.chipproof`): keys proved by authentication
  verified in the HSM, a wrong key value caught, PIN object states, the chip's PAN;
* vision (:mod:`cardperso.line.qc.vision`): real OCR (Tesseract) and OCV of the text,
  the photo against the database photo;
* mag-stripe read-back (:mod:`cardperso.line.magstripe`): signal, format, content.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cardperso.crypto.rand import SeededRandom
from cardperso.dataprep.init_script import build_init_script
from cardperso.dataprep.magstripe import encode_bits
from cardperso.dataprep.prepared import CardBodyData, PreparedCard
from cardperso.hsm import Role, SoftHsm
from cardperso.line.chip import KeyCache, StepRunner
from cardperso.line.feeder import SimulatedFeeder, stock_serials
from cardperso.line.magstripe import CLOCKING_BITS, SimulatedStripe, check_track, encode_and_verify
from cardperso.line.qc import ChipProof, OcrUnavailable, QcConfig, VisionCheck, proof_plan
from cardperso.line.qc.chipproof import database_pan
from cardperso.line.qc.vision import ncc, similarity
from cardperso.line.stations import chip_check_steps, unverified_writes
from cardperso.line.visual import render_face
from cardperso.production import repo
from cardperso.production.db import Database
from cardperso.production.fieldkeys import field_cipher
from cardperso.production.models import CardJob
from cardperso.profiles.loader import load_builtin
from cardperso.readers.virtual import VirtualReader
from production.pg import REQUIRE_ALL_ENV
from production.support import Staff

from .kit import corrupt_key, import_product, misprinted, wrong_track_bits

PRODUCTS = ("debit", "sim", "employee")


@pytest.fixture(scope="module")
def ocr_vision() -> Iterator[VisionCheck]:
    vision = VisionCheck(QcConfig(ocr_every=1))
    try:
        _ = vision.reader
    except OcrUnavailable as e:
        if os.environ.get(REQUIRE_ALL_ENV) == "1":
            pytest.fail(f"{REQUIRE_ALL_ENV}=1 but Tesseract is unavailable: {e}")
        pytest.skip(f"Tesseract unavailable: {e}")
    yield vision
    vision.close()


@pytest.fixture
def cards(sqlite_db: Database, hsm: SoftHsm, tmp_path: Path) -> dict[str, list[PreparedCard]]:
    """Twelve prepared cards of each product, from the production database."""
    staff = Staff(sqlite_db)
    out: dict[str, list[PreparedCard]] = {}
    for product in PRODUCTS:
        batch = import_product(sqlite_db, hsm, staff, product, 12, tmp_path)
        with sqlite_db.reader() as s, hsm.session(Role.PERSONALIZATION, "t") as session:
            cipher = field_cipher(session)
            jobs = s.query(CardJob).filter(CardJob.batch_id == batch).all()
            out[product] = [PreparedCard.from_line(repo.open_record(j, cipher)) for j in jobs]
    return out


@dataclass
class Made:
    card: PreparedCard
    reader: VirtualReader
    serial: str
    collected: dict[str, bytes]


def personalize(hsm: SoftHsm, product: str, card: PreparedCard, n: int) -> Made:
    """Initialize, personalize and chip-check one card the way a module does."""
    serial = stock_serials(f"qc-{product}", n, 1)[0]
    raw = bytes.fromhex(serial)
    reader = SimulatedFeeder(f"qc-{product}").insert(serial, "T")
    assert isinstance(reader, VirtualReader)
    rng = SeededRandom(f"qc/{serial}")
    reader.reset()
    init = KeyCache(hsm.session(Role.INITIALIZATION, "t"))
    StepRunner("init", reader, init, raw, rng).run(
        build_init_script(load_builtin(product)).steps(card.init_steps)
    )
    perso = StepRunner("perso", reader, KeyCache(hsm.session(Role.PERSONALIZATION, "t")), raw, rng)
    perso.run(card.script)
    qc = StepRunner("chip_check", reader, KeyCache(hsm.session(Role.QC, "t")), raw, rng)
    qc.resume(chip_check_steps(card.script), 0)
    reader.close()
    return Made(card, reader, serial, dict(perso.collected))


def prover(hsm: SoftHsm) -> ChipProof:
    return ChipProof(KeyCache(hsm.session(Role.QC, "qc tests")), SeededRandom("qc tests"))


# -- command/response check -------------------------------------------------------------


def test_chip_check_keeps_every_read_back_with_its_expected_answer(
    cards: dict[str, list[PreparedCard]],
) -> None:
    for product in PRODUCTS:
        card = cards[product][0]
        steps = chip_check_steps(card.script)
        reads = [s for s in card.script if s.expect_data is not None]
        assert all(r in steps for r in reads)
        assert steps[-1].note.startswith("GET DATA DF02")
    # a debit card's record data is all read back; the gaps of the other products are
    # the files their read conditions close to QC (a PIN the host may not present)
    assert unverified_writes(cards["debit"][0]) == []
    for product in ("sim", "employee"):
        for note in unverified_writes(cards[product][0]):
            assert note.startswith("SELECT ")


# -- HSM check -----------------------------------------------------------------------------


def test_hsm_check_proves_every_derived_key_and_reads_the_chip_pan(
    hsm: SoftHsm, cards: dict[str, list[PreparedCard]]
) -> None:
    made = personalize(hsm, "debit", cards["debit"][0], 0)
    plan = proof_plan(load_builtin("debit"), made.card)
    hows = {kp.name: kp.how for kp in plan.keys}
    assert hows == {
        "KD_PERSO": "internal_auth",
        "MK_AC": "internal_auth",
        "KD_ADMIN": "external_auth",
        "MK_SMI": "secure_messaging",
        "MK_SMC": "secure_messaging",
    }
    result = prover(hsm).run(made.reader, made.serial, plan, made.collected)
    assert result.ok, result.reason
    assert sorted(result.proven) == sorted(hows)
    assert result.pins == 1
    assert result.chip_pan == database_pan(made.card) is not None


def test_hsm_check_catches_a_wrong_key_value(
    hsm: SoftHsm, cards: dict[str, list[PreparedCard]]
) -> None:
    made = personalize(hsm, "debit", cards["debit"][1], 1)
    corrupt_key(made.reader, random.Random(1))  # MK_AC: internal authentication only
    plan = proof_plan(load_builtin("debit"), made.card)
    result = prover(hsm).run(made.reader, made.serial, plan, made.collected)
    assert not result.ok
    assert result.reason.startswith("hsm check: MK_AC (ref 3)")
    assert "does not verify in the HSM" in result.reason


def test_hsm_check_verifies_a_card_generated_key_by_its_signature(
    hsm: SoftHsm, cards: dict[str, list[PreparedCard]]
) -> None:
    made = personalize(hsm, "employee", cards["employee"][0], 0)
    plan = proof_plan(load_builtin("employee"), made.card)
    assert ("KEY_AUTH", "signature") in {(kp.name, kp.how) for kp in plan.keys}
    ok = prover(hsm).run(made.reader, made.serial, plan, made.collected)
    assert ok.ok, ok.reason
    assert "KEY_AUTH" in ok.proven
    corrupt_key(made.reader, random.Random(2))
    bad = prover(hsm).run(made.reader, made.serial, plan, made.collected)
    assert not bad.ok and "KEY_AUTH" in bad.reason and "signature" in bad.reason


def test_hsm_check_reports_issuer_keys_as_present_only_and_pin_states(
    hsm: SoftHsm, cards: dict[str, list[PreparedCard]]
) -> None:
    made = personalize(hsm, "sim", cards["sim"][0], 0)
    plan = proof_plan(load_builtin("sim"), made.card)
    assert {n.split(":")[0] for n in plan.unproven} == {"KI", "OPC"}
    result = prover(hsm).run(made.reader, made.serial, plan, made.collected)
    assert result.ok, result.reason
    assert sorted(result.present) == ["KI", "OPC"]
    assert result.pins == 4  # PIN1, PUK1, PIN2, PUK2 unused and unblocked


def test_hsm_check_refuses_another_chip(hsm: SoftHsm, cards: dict[str, list[PreparedCard]]) -> None:
    made = personalize(hsm, "debit", cards["debit"][2], 2)
    plan = proof_plan(load_builtin("debit"), made.card)
    other = stock_serials("qc-debit", 99, 1)[0]
    result = prover(hsm).run(made.reader, other, plan, made.collected)
    assert not result.ok and "not the card's chip" in result.reason


# -- vision --------------------------------------------------------------------------------


def test_vision_passes_clean_faces_with_exact_reads(
    ocr_vision: VisionCheck, cards: dict[str, list[PreparedCard]]
) -> None:
    cfg = ocr_vision.config
    for product in PRODUCTS:
        for card in cards[product]:
            r = ocr_vision.check(render_face(card.card_body), card.card_body, ocr=True)
            assert r.reason(cfg) == "", (product, [x.read for x in r.lines])
            assert r.ocr == 1.0 and r.ocv == 1.0
            assert (r.photo is not None) == (product == "employee")


def test_vision_catches_a_misprinted_character_by_ocr_and_by_ocv(
    ocr_vision: VisionCheck, cards: dict[str, list[PreparedCard]]
) -> None:
    cfg = ocr_vision.config
    for product in PRODUCTS:
        for i, card in enumerate(cards[product]):
            wrong = misprinted(card.card_body, random.Random(i))
            r = ocr_vision.check(render_face(wrong), card.card_body, ocr=True)
            assert r.ocr is not None and r.ocr < cfg.ocr_threshold, (product, wrong)
            assert r.ocv < cfg.ocv_threshold
            assert r.reason(cfg).startswith("vision: card body line")


def test_vision_sees_a_character_too_many(
    ocr_vision: VisionCheck, cards: dict[str, list[PreparedCard]]
) -> None:
    body = cards["debit"][0].card_body
    area, row, text = body.emboss[-1]
    longer = CardBodyData((*body.emboss[:-1], (area, row, text + "X")), body.laser, body.photo)
    r = ocr_vision.check(render_face(longer), body, ocr=True)
    assert r.ocv < ocr_vision.config.ocv_threshold
    assert r.ocr is not None and r.ocr < 1.0


def test_vision_catches_another_cardholders_photo(
    ocr_vision: VisionCheck, cards: dict[str, list[PreparedCard]]
) -> None:
    cfg = ocr_vision.config
    people = cards["employee"]
    for i, card in enumerate(people):
        body = card.card_body
        other = people[(i + 1) % len(people)].card_body.photo
        swapped = CardBodyData(body.emboss, body.laser, other)
        r = ocr_vision.check(render_face(swapped), body, ocr=False)
        assert r.photo is not None and r.photo < cfg.photo_threshold
        assert "photo" in r.reason(cfg)


def test_scores() -> None:
    assert similarity("4761 7306", "47617306") == 1.0
    assert similarity("ABCD", "ABCE") == 0.75
    assert similarity("", "A") == 0.0
    from PIL import Image

    a = Image.new("L", (8, 8), 200)
    b = a.copy()
    b.putpixel((3, 3), 0)
    assert ncc(b, b) == pytest.approx(1.0)
    assert ncc(a, a) == 1.0 and ncc(a, b) == 0.0


# -- mag-stripe read-back ------------------------------------------------------------------


def test_stripe_read_back_checks_signal_format_and_content(
    cards: dict[str, list[PreparedCard]],
) -> None:
    tracks = cards["debit"][0].tracks
    check = encode_and_verify(SimulatedStripe(), tracks)
    assert check.ok and check.pan == database_pan(cards["debit"][0])
    t2 = tracks[2]
    bits = encode_bits(t2, CLOCKING_BITS)
    assert check_track(2, bits, t2)[0] == ""
    flipped = bits[:40] + ("0" if bits[40] == "1" else "1") + bits[41:]
    assert "read-back" in check_track(2, flipped, t2)[0]
    assert "PAN differs from the database" in check_track(2, wrong_track_bits(bits), t2)[0]
    no_end = encode_bits(t2[:-1] + "0", CLOCKING_BITS)  # no end sentinel '?'
    assert check_track(2, no_end, t2)[1] is None
    other = cards["debit"][1].tracks[2]
    why = check_track(2, encode_bits(other, CLOCKING_BITS), t2)[0]
    assert "differs from the database" in why
