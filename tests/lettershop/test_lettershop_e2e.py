"""A batch that went through the real line, then through the lettershop.

What the issue asks to see: the right name and address on the right carrier, in postal
order, its code naming the card's chip; each PIN only on its own mailer, only in the
blind-print area; missing and doubled cards diverted and their mailers held; a card
and its PIN mailer never on one day or in one envelope; test letters apart; the
manifest per region and day; an authorized, audited, once-only run that leaves
nothing behind when it fails.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from cardperso.dataprep.fields import presort_key
from cardperso.errors import HsmError, InputError
from cardperso.lettershop import Fault, LettershopConfig, PieceKind, PieceStatus, run_lettershop
from cardperso.lettershop.config import MailerLayout, Rect
from cardperso.lettershop.manifest import SeparationError, check_separation
from cardperso.lettershop.usecases import AUDIT_ACTION, LETTERSHOP_ACTION, LettershopResult
from cardperso.production.models import (
    Attempt,
    AttemptOutcome,
    AuditLog,
    Batch,
    BatchState,
    CardJob,
)
from cardperso.production.operators import PermissionDenied
from line.kit import TODAY

from . import code128
from .support import (
    PT_PER_MM,
    Bureau,
    Template,
    clear_pins,
    issuer_records,
    page_text,
    pages_words,
)

pytestmark = pytest.mark.realcomponent


def run(
    b: Bureau,
    out: Path,
    config: LettershopConfig | None = None,
    faults: dict[tuple[PieceKind, str], Fault] | None = None,
) -> LettershopResult:
    return run_lettershop(
        b.db,
        b.hsm,
        b.batch_id,
        out,
        by=b.staff.operator,
        cipher=b.cipher,
        today=TODAY,
        config=config,
        faults=faults,
    )


def chips(b: Bureau) -> dict[int, str]:
    with b.db.reader() as s:
        rows = s.execute(
            select(CardJob.seq, Attempt.chip_serial)
            .join(Attempt, Attempt.job_id == CardJob.id)
            .where(CardJob.batch_id == b.batch_id, Attempt.outcome == AttemptOutcome.GOOD)
        )
        return {seq: serial for seq, serial in rows}


def test_each_carrier_has_its_cardholders_name_and_address_in_postal_order(
    poppler: str, debit: Bureau, tmp_path: Path
) -> None:
    r = run(debit, tmp_path / "out")
    records = issuer_records(debit.issuer_file)
    serial_of = chips(debit)
    assert len(r.carriers) == len(records) == 36
    assert all(p.status is PieceStatus.DISPATCHED for p in r.carriers + r.mailers)  # clean run
    (doc,) = r.carrier_documents
    pages = pages_words(doc)
    window = LettershopConfig().carrier.address
    keys = []
    for p in r.carriers:
        rec = records[int(p.record_ref.rsplit("/", 1)[1]) - 1]  # the record's file position
        name = f"{rec['given_name']} {rec['family_name']}"
        text = page_text(doc, p.page)
        for line in (name, rec["address_line1"], f"{rec['postal_code']} {rec['city']}"):
            assert line in text, (p.record_ref, line)
        for other in records:  # nobody else's name on this carrier
            if other is not rec and other["family_name"] != rec["family_name"]:
                assert f"{other['given_name']} {other['family_name']}" not in text
        assert rec["pan"] not in text and p.pan_last4 == rec["pan"][-4:]
        words = pages[p.page - 1]
        first = rec["given_name"].split()[0]
        box = next(w for w in words if w.text == first and w.y0 < window.bottom_mm * PT_PER_MM)
        assert box.inside(window)
        assert code128.read_code(doc, p.page) == f"CP1:{debit.batch_id}:{p.seq}:{serial_of[p.seq]}"
        assert p.chip_serial == serial_of[p.seq]
        keys.append(presort_key(rec["country"], rec["postal_code"]))
    assert keys == sorted(keys)  # carriers come out presorted
    assert [p.page for p in r.carriers] == list(range(1, 37))


def test_each_pin_is_only_on_its_own_mailer_and_only_in_the_blind_area(
    poppler: str, debit: Bureau, tmp_path: Path
) -> None:
    r = run(debit, tmp_path / "out")
    pins = clear_pins(debit.hsm, debit.letters())
    blind = LettershopConfig().mailer.blind
    assert len(r.mailer_documents) == 36
    for p in r.mailers:
        pin = pins[p.record_ref]["PIN"]
        words = pages_words(r.folder / p.document)[0]
        inside = [w.text for w in words if w.inside(blind)]
        assert inside == ["Inner", "sheet", "PIN", pin]
        assert [w.inside(blind) for w in words if w.text == pin] == [True]


def test_missing_and_double_cards_are_diverted_and_their_pin_mailers_held(
    debit: Bureau, tmp_path: Path
) -> None:
    refs = [x.record_ref for x in debit.letters()]
    faults = {
        (PieceKind.CARRIER, refs[1]): Fault.MISSING_CARD,
        (PieceKind.CARRIER, refs[5]): Fault.DOUBLE_CARD,
        (PieceKind.CARRIER, refs[8]): Fault.MISSING_CARD,
        (PieceKind.CARRIER, refs[13]): Fault.DOUBLE_CARD,
        (PieceKind.CARRIER, refs[21]): Fault.WRONG_CARD,
        (PieceKind.PIN_MAILER, refs[30]): Fault.CARD_IN_MAILER,
    }
    r = run(debit, tmp_path / "out", faults=faults)
    diverted = {(p.kind, p.record_ref): p for p in r.diverted}
    assert set(diverted) == set(faults)  # all caught, nothing else
    for key, fault in faults.items():
        reason = diverted[key].reason
        expect = {
            Fault.MISSING_CARD: "card missing",
            Fault.DOUBLE_CARD: "second card",
            Fault.WRONG_CARD: "does not match",
            Fault.CARD_IN_MAILER: "a card in a PIN mailer",
        }[fault]
        assert expect in reason, (fault, reason)
    held = {p.record_ref for p in r.mailers if p.status is PieceStatus.HELD}
    assert held == {ref for (kind, ref) in faults if kind is PieceKind.CARRIER}
    assert all(not p.document for p in r.mailers if p.status is PieceStatus.HELD)  # not printed
    doc = json.loads(r.manifest.json.read_text(encoding="utf-8"))
    assert {d["envelope"] for d in doc["diverted"]} == {p.envelope for p in r.diverted}
    assert doc["totals"]["carrier"]["dispatched"] == 31
    assert doc["totals"]["pin_mailer"] == {**doc["totals"]["pin_mailer"], "held": 5, "diverted": 1}


def test_a_card_and_its_pin_mailer_never_share_a_day_or_an_envelope(
    debit: Bureau, tmp_path: Path
) -> None:
    cfg = LettershopConfig.model_validate(
        {
            "mailer_delay_days": 1,
            "daily_capacity": 16,
            "presort": {"tray_size": 8, "bundle_size": 4},
            "first_day": "2026-03-05",  # a Thursday: the next posting day after Friday is Monday
        }
    )
    r = run(debit, tmp_path / "out", config=cfg)
    cards = {p.record_ref: p for p in r.carriers}
    assert sorted({p.day for p in r.carriers}) == [
        date(2026, 3, 5),
        date(2026, 3, 6),
        date(2026, 3, 9),
    ]
    for m in r.mailers:
        card = cards[m.record_ref]
        assert m.day > card.day and m.day.weekday() < 5
        assert m.envelope != card.envelope and m.card_envelope == card.envelope
        assert m.day - card.day >= timedelta(days=1)
    friday = [m for m in r.mailers if cards[m.record_ref].day == date(2026, 3, 6)]
    assert friday and all(m.day == date(2026, 3, 9) for m in friday)
    rows = csv_rows(r.manifest.pieces)
    same = {(x["day"], x["record_ref"]) for x in rows if x["kind"] == "carrier"} & {
        (x["day"], x["record_ref"]) for x in rows if x["kind"] == "pin_mailer"
    }
    assert not same
    # and the check refuses a plan that would break the rule, whoever made it
    forged = r.mailers[0]
    forged.day = cards[forged.record_ref].day
    with pytest.raises(SeparationError, match="not after its card"):
        check_separation(r.carriers, r.mailers)
    forged.day, forged.envelope = forged.day + timedelta(days=3), cards[forged.record_ref].envelope
    with pytest.raises(SeparationError, match="shares an envelope"):
        check_separation(r.carriers, r.mailers)


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_pin_mailers_follow_the_profiles_delay_on_posting_days(
    debit: Bureau, tmp_path: Path
) -> None:
    r = run(debit, tmp_path / "out", config=LettershopConfig(first_day=date(2026, 3, 9)))
    assert {p.day for p in r.carriers} == {date(2026, 3, 9)}
    assert {p.day for p in r.mailers} == {date(2026, 3, 12)}  # debit: delay_days 3


def test_test_letters_go_first_to_the_target_region_and_are_tracked_apart(
    poppler: str, debit: Bureau, tmp_path: Path
) -> None:
    cfg = LettershopConfig.model_validate(
        {"test_letters": {"count": 12, "region": "DE:80", "days_before": 4}}
    )
    r = run(debit, tmp_path / "out", config=cfg)
    assert len(r.tests) == 12 and {(p.country, p.region) for p in r.tests} == {("DE", "80")}
    first = min(p.day for p in r.carriers)
    assert {p.day for p in r.tests} == {TODAY} and first == date(2026, 3, 6)  # 4 posting days on
    assert all(
        p.status is PieceStatus.DISPATCHED and p.kind is PieceKind.TEST_LETTER for p in r.tests
    )
    (doc,) = r.test_documents
    assert "TEST LETTER" in page_text(doc, 1) and "Postal region DE 80" in page_text(doc, 1)
    manifest = json.loads(r.manifest.json.read_text(encoding="utf-8"))
    tl = manifest["test_letters"]
    assert (tl["country"], tl["region"], tl["day"], tl["count"]) == ("DE", "80", "2026-03-02", 12)
    assert tl["totals"]["dispatched"] == 12
    assert all(row["kind"] != "test_letter" for row in manifest["by_day_and_region"])
    assert all(x["kind"] != "test_letter" for x in csv_rows(r.manifest.pieces))
    assert r.manifest.test_letters is not None
    rows = csv_rows(r.manifest.test_letters)
    assert len(rows) == 12 and {x["kind"] for x in rows} == {"test_letter"}


def test_the_manifest_lists_each_region_and_day_with_its_trays_and_bundles(
    debit: Bureau, tmp_path: Path
) -> None:
    cfg = LettershopConfig.model_validate({"presort": {"tray_size": 5, "bundle_size": 2}})
    r = run(debit, tmp_path / "out", config=cfg)
    doc = json.loads(r.manifest.json.read_text(encoding="utf-8"))
    regions = doc["by_day_and_region"]
    for kind, pieces in (("carrier", r.carriers), ("pin_mailer", r.mailers)):
        rows = [x for x in regions if x["kind"] == kind]
        assert sum(x["pieces"] for x in rows) == len(pieces)
        assert sum(x["price"] for x in rows) == sum(p.price for p in pieces)
        assert {(x["country"], x["region"]) for x in rows} == {p.region_key for p in pieces}
    for tray in doc["trays"]:
        assert tray["pieces"] <= 5 and all(b["pieces"] <= 2 for b in tray["bundles"])
        members = [
            p
            for p in r.carriers + r.mailers
            if (p.kind.value, p.day.isoformat(), p.tray)
            == (tray["kind"], tray["day"], tray["tray"])
        ]
        assert {p.region_key for p in members} == {(tray["country"], tray["region"])}
    rows = csv_rows(r.manifest.csv)
    assert len(rows) == len(regions)
    assert {"postage_standard", "postage_compact", "postage_large"} <= set(rows[0])
    assert sum(int(x["postage_standard"]) for x in rows) == 72  # every piece under 20 g
    text = r.manifest.json.read_text(encoding="utf-8") + r.manifest.pieces.read_text(
        encoding="utf-8"
    )
    for rec in issuer_records(debit.issuer_file):
        assert rec["family_name"] not in text and rec["pan"] not in text  # no cardholder data


def test_only_an_authorized_operator_runs_it_once_and_every_outcome_is_audited(
    debit: Bureau, tmp_path: Path
) -> None:
    with pytest.raises(PermissionDenied):
        run_lettershop(
            debit.db,
            debit.hsm,
            debit.batch_id,
            tmp_path / "a",
            by=debit.staff.auditor,
            cipher=debit.cipher,
        )
    run(debit, tmp_path / "out")
    with pytest.raises(InputError, match="already"):
        run(debit, tmp_path / "again")
    with debit.db.reader() as s:
        rows = s.scalars(
            select(AuditLog)
            .where(AuditLog.object == f"batch:{debit.batch_id}")
            .order_by(AuditLog.seq)
        ).all()
    allowed = LETTERSHOP_ACTION.value
    mine = [(a.actor, a.action, a.result) for a in rows if a.action in (AUDIT_ACTION, allowed)]
    assert ("ada", allowed, "denied") in mine
    assert mine[-2:] == [("olga", AUDIT_ACTION, "ok"), ("olga", AUDIT_ACTION, "refused")]
    hsm_audit = (debit.keystore.parent / "bureau.cpks.audit.jsonl").read_text(encoding="utf-8")
    prints = [line for line in hsm_audit.splitlines() if '"print_pin_mailer"' in line]
    assert len(prints) == 36 and all(
        '"lettershop/olga"' in x and '"lettershop"' in x for x in prints
    )


def test_an_unfinished_batch_is_refused(debit: Bureau, tmp_path: Path) -> None:
    with debit.db.transaction() as s:
        s.execute(update(Batch).where(Batch.id == debit.batch_id).values(state=BatchState.PAUSED))
    with pytest.raises(InputError, match="finished batches"):
        run(debit, tmp_path / "out")


def test_a_run_that_fails_leaves_nothing_behind(debit: Bureau, tmp_path: Path) -> None:
    out = tmp_path / "out"
    folded = LettershopConfig.model_validate({"carrier": {"fold": "letter"}})  # 85 mm crosses 99 mm
    with pytest.raises(InputError, match="bent by the fold at 99"):
        run(debit, out, config=folded)
    assert not out.exists() or not list(out.iterdir())
    narrow = LettershopConfig(mailer=MailerLayout(code=Rect(x_mm=20, y_mm=268, w_mm=4, h_mm=16)))
    with pytest.raises(HsmError, match="renderer failed"):  # after the carriers were printed
        run(debit, out, config=narrow)
    assert not list(out.iterdir())
    with debit.db.reader() as s:
        results = s.scalars(select(AuditLog.result).where(AuditLog.action == AUDIT_ACTION)).all()
    assert list(results) == ["failed", "failed"]
    run(debit, out)  # nothing was posted, so the batch may still go through


def test_a_sim_mailer_holds_all_four_pins_in_its_blind_area(
    poppler: str, bureau_of: Callable[[Template], Bureau], sim_template: Template, tmp_path: Path
) -> None:
    sim = bureau_of(sim_template)
    r = run(sim, tmp_path / "out")
    pins = clear_pins(sim.hsm, sim.letters())
    blind = LettershopConfig().mailer.blind
    for p in r.mailers:
        words = pages_words(r.folder / p.document)[0]
        inside = [w.text for w in words if w.inside(blind)]
        want = ["Inner", "sheet"]
        for name in ("PIN1", "PUK1", "PIN2", "PUK2"):
            want += [name, pins[p.record_ref][name]]
        assert inside == want
        assert len(pins[p.record_ref]["PUK1"]) == 8


def test_a_run_is_repeatable_byte_for_byte(
    bureau_of: Callable[[Template], Bureau], debit_template: Template, tmp_path: Path
) -> None:
    cfg = LettershopConfig.model_validate({"test_letters": {"count": 2}})
    outputs = []
    for n in (1, 2):
        r = run(bureau_of(debit_template), tmp_path / f"out{n}", config=cfg)
        outputs.append({p.relative_to(r.folder): p.read_bytes() for p in r.folder.rglob("*.*")})
    assert len(outputs[0]) == 36 + 1 + 1 + 4 and outputs[0] == outputs[1]
