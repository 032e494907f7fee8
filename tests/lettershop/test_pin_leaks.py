"""After a batch went through the line and the lettershop, no clear PIN is anywhere but
on its PIN mailer.

The batch is of the debit product with 12-digit PINs (:func:`.support.long_pin_profile`):
a 4-digit PIN turns up by chance in any hash or timestamp, a 12-digit one does not,
so the scan can demand zero hits. The PINs are learnt through the HSM (a lettershop
session whose renderer returns the PIN) after the run, and kept in memory only.

Scanned: the bytes of every file the bureau has - the production database (and its
WAL), the keystore and its audit log, the issuer file, every output of the run - the
text poppler extracts from every PDF, every value of every database table, the log
records and what the run printed. A PIN may appear only in its own mailer, where it
must (so the scan is shown to see a PIN where there is one).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from cardperso.lettershop import LettershopConfig, run_lettershop
from line.kit import TODAY

from .support import Bureau, Template, clear_pins, open_bureau, pdftotext

pytestmark = pytest.mark.realcomponent


def test_no_clear_pin_outside_its_pin_mailer(
    poppler: str,
    long_pin_template: Template,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    b: Bureau = open_bureau(long_pin_template, tmp_path / "bureau")
    try:
        cfg = LettershopConfig.model_validate({"test_letters": {"count": 3}})
        r = run_lettershop(
            b.db,
            b.hsm,
            b.batch_id,
            b.root / "out",
            by=b.staff.operator,
            cipher=b.cipher,
            config=cfg,
            today=TODAY,
            log=print,
        )
        pins = {ref: p["PIN"] for ref, p in clear_pins(b.hsm, b.letters()).items()}
        with b.db.reader() as s:
            meta = MetaData()
            meta.reflect(s.connection())
            db_text = "\n".join(
                repr(tuple(row)) for t in meta.sorted_tables for row in s.execute(select(t))
            )
    finally:
        b.close()
    assert len(pins) == 16 and all(len(p) == 12 and p.isdigit() for p in pins.values())
    mailer_of = {p.record_ref: (r.folder / p.document).resolve() for p in r.mailers}

    files = [p for p in b.root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite3" for p in files) and any(
        p.name.endswith(".audit.jsonl") for p in files
    )
    hits: dict[str, set[Path]] = {ref: set() for ref in pins}
    for path in files:
        data = path.read_bytes()
        text = pdftotext(path) if path.suffix == ".pdf" else ""
        for ref, pin in pins.items():
            if pin.encode() in data or pin in text:
                hits[ref].add(path.resolve())
    for ref, found in hits.items():
        assert found == {mailer_of[ref]}, ref  # on its mailer, and nowhere else

    told = db_text + caplog.text + "".join(capsys.readouterr())
    assert told and not [ref for ref, pin in pins.items() if pin in told]
