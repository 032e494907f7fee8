"""Depersonalization: a test card personalized and depersonalized ten times, each
cycle verified; refused for a product that does not allow it and without the admin key."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cardperso.crypto.rand import SeededRandom
from cardperso.dataprep.generator import generate_records
from cardperso.dataprep.prepare import CardPreparer
from cardperso.dataprep.prepared import PreparedCard
from cardperso.hsm import Role, SoftHsm
from cardperso.line.chip import KeyCache, StepRunner, read_serial
from cardperso.line.deperso import DepersoError, depersonalize, depersonalize_card
from cardperso.line.stations import chip_check_steps
from cardperso.production.db import Database
from cardperso.production.models import AuditLog
from cardperso.production.operators import PermissionDenied
from cardperso.profiles.loader import _builtin_dir, parse_profile
from cardperso.profiles.schema import Profile
from cardperso.readers import Reader, cos, exchange
from cardperso.readers.virtual import virtual_reader
from production.support import Staff

SERIAL = bytes.fromhex("7E57CA4D00000001")


def debit_test_card(allow: bool = True) -> Profile:
    """The debit product as a test card that may be depersonalized (its admin key)."""
    text = (_builtin_dir() / "debit.yaml").read_text(encoding="utf-8")
    if allow:
        text += "\ndepersonalization:\n  key: KD_ADMIN\n"
    return parse_profile(text, "debit-test.yaml")


def prepared(hsm: SoftHsm, profile: Profile) -> tuple[CardPreparer, PreparedCard]:
    (record,) = generate_records(profile, 1, 11, date(2026, 3, 2))
    preparer = CardPreparer(profile, hsm.session(Role.DATAPREP, "dp"), batch_id="T", file="t.csv")
    cards, problems = preparer.prepare([(1, 2, record)])
    assert not problems
    return preparer, PreparedCard.from_line(cards[0].to_line())


def life_cycle(reader: Reader) -> int:
    return exchange(reader, cos.get_data(0xDF02)).data[-1]


def personalize_and_check(hsm: SoftHsm, reader: Reader, card: PreparedCard, n: int) -> None:
    rng = SeededRandom(f"cycle {n}")
    reader.reset()
    serial = read_serial(reader)
    pers = KeyCache(hsm.session(Role.PERSONALIZATION, "perso"))
    StepRunner("perso", reader, pers, serial, rng).run(card.script)
    qc = KeyCache(hsm.session(Role.QC, "qc"))
    StepRunner("chip_check", reader, qc, serial, rng).resume(chip_check_steps(card.script), 0)
    assert life_cycle(reader) == cos.PERSONALIZED


def initialized_card(hsm: SoftHsm, preparer: CardPreparer, card: PreparedCard) -> Reader:
    reader = virtual_reader("deperso", serial=SERIAL)
    reader.reset()
    init = KeyCache(hsm.session(Role.INITIALIZATION, "init"))
    StepRunner("init", reader, init, SERIAL, SeededRandom(0)).run(
        preparer.init_script.steps(card.init_steps)
    )
    return reader


def test_depersonalize_and_repersonalize_one_test_card_ten_times(hsm: SoftHsm) -> None:
    profile = debit_test_card()
    preparer, card = prepared(hsm, profile)
    reader = initialized_card(hsm, preparer, card)
    keys = KeyCache(hsm.session(Role.PERSONALIZATION, "deperso"))
    personalize_and_check(hsm, reader, card, 0)
    for cycle in range(1, 11):
        result = depersonalize(reader, keys, profile, SeededRandom(cycle))
        assert (result.serial, result.before) == (SERIAL.hex().upper(), "personalized")
        assert life_cycle(reader) == cos.INITIALIZED
        # what personalization wrote is gone: the chip check no longer passes
        with pytest.raises(Exception, match="chip_check"):
            StepRunner(
                "chip_check", reader, KeyCache(hsm.session(Role.QC, "qc")), SERIAL, SeededRandom(1)
            ).resume(chip_check_steps(card.script), 0)
        personalize_and_check(hsm, reader, card, cycle)


def test_refused_for_a_product_without_it_and_without_the_admin_key(hsm: SoftHsm) -> None:
    allowed = debit_test_card()
    preparer, card = prepared(hsm, allowed)
    reader = initialized_card(hsm, preparer, card)
    personalize_and_check(hsm, reader, card, 0)
    keys = KeyCache(hsm.session(Role.PERSONALIZATION, "deperso"))
    with pytest.raises(DepersoError, match="does not allow depersonalization"):
        depersonalize(reader, keys, debit_test_card(allow=False))
    # the right product but the wrong master key: EXTERNAL AUTHENTICATE fails
    wrong = parse_profile(
        (_builtin_dir() / "debit.yaml")
        .read_text(encoding="utf-8")
        .replace("master_key: KM.DEBIT.ADMIN", "master_key: KM.DEBIT.PERSO", 1)
        + "\ndepersonalization:\n  key: KD_ADMIN\n",
        "debit-wrong.yaml",
    )
    with pytest.raises(DepersoError, match="EXTERNAL AUTHENTICATE"):
        depersonalize(reader, keys, wrong)
    reader.reset()
    assert life_cycle(reader) == cos.PERSONALIZED


def test_only_a_supervisor_depersonalizes_and_it_is_audited(
    sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    staff = Staff(sqlite_db)
    profile = debit_test_card()
    preparer, card = prepared(hsm, profile)
    reader = initialized_card(hsm, preparer, card)
    personalize_and_check(hsm, reader, card, 0)
    with pytest.raises(PermissionDenied, match="may not depersonalize card"):
        depersonalize_card(sqlite_db, hsm, profile, reader, by=staff.operator)
    assert life_cycle(reader) == cos.PERSONALIZED
    result = depersonalize_card(sqlite_db, hsm, profile, reader, by=staff.supervisor)
    assert result.before == "personalized"
    with sqlite_db.reader() as s:
        rows = [(r.action, r.object, r.result) for r in s.query(AuditLog).order_by(AuditLog.seq)]
    assert ("depersonalize_card", f"chip:{SERIAL.hex().upper()}", "ok") in rows
    assert ("depersonalize_card", "product:debit", "denied") in rows


def test_the_card_depersonalize_command_on_a_vault_card(tmp_path: Path, keystore: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from cardperso.line.cli_commands import card_app
    from cardperso.line.vault import CardVault
    from cardperso.production.db import upgrade
    from cardperso.readers.virtual import VirtualReader
    from production.support import PASSWORD

    from .kit import PASSPHRASE, open_hsm

    url = f"sqlite:///{tmp_path / 'bureau.sqlite3'}"
    upgrade(url)
    db = Database.open(url)
    Staff(db)
    db.dispose()
    hsm = open_hsm(keystore)
    profile = debit_test_card()
    preparer, card = prepared(hsm, profile)
    reader = initialized_card(hsm, preparer, card)
    personalize_and_check(hsm, reader, card, 0)
    hsm.close()
    assert isinstance(reader, VirtualReader)
    vault = CardVault(tmp_path / "vault")
    vault.store(SERIAL.hex().upper(), reader.memory())
    product = tmp_path / "debit-test.yaml"
    product.write_text(
        (_builtin_dir() / "debit.yaml").read_text(encoding="utf-8")
        + "\ndepersonalization:\n  key: KD_ADMIN\n",
        encoding="utf-8",
    )
    app = typer.Typer()
    app.add_typer(card_app, name="card")
    env = {"CARDPERSO_OPERATOR_PASSWORD": PASSWORD, "CARDPERSO_HSM_PASSPHRASE": PASSPHRASE.reveal()}
    args = ["card", "depersonalize", SERIAL.hex(), "--product", str(product), "--db", url]
    args += ["--keystore", str(keystore), "--vault", str(tmp_path / "vault")]
    r = CliRunner().invoke(app, [*args, "--operator", "olga"], env=env)
    assert r.exit_code == 7 and "may not depersonalize card" in r.output
    r = CliRunner().invoke(app, [*args, "--operator", "sam"], env=env)
    assert r.exit_code == 0, r.output
    assert "personalized -> initialized" in r.output
    r = CliRunner().invoke(app, [*args, "--operator", "sam"], env=env)
    assert r.exit_code != 0 and "is initialized" in r.output
