"""After a line run the database and the response data hold no clear PAN: QC's chip
check reads the PAN back for its cross-check, and that answer must stay in the
verdict (the database keeps the PAN sealed, masked and as a digest only)."""

from __future__ import annotations

import csv
from pathlib import Path

from cardperso.hsm import Role, SoftHsm
from cardperso.line.feeder import SimulatedFeeder
from cardperso.line.orchestrator import LineConfig
from cardperso.line.reports import write_response_data
from cardperso.line.usecases import run_batch
from cardperso.production.db import Database
from cardperso.production.fieldkeys import field_cipher
from production.support import Staff

from .kit import import_product, stock_seed


def test_no_clear_pan_in_the_database_or_the_response_data(
    sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    count = 12
    staff = Staff(sqlite_db)
    batch_id = import_product(sqlite_db, hsm, staff, "debit", count, tmp_path)
    result = run_batch(
        sqlite_db,
        hsm,
        batch_id,
        by=staff.operator,
        feeder=SimulatedFeeder(stock_seed("debit")),
        config=LineConfig(modules=2, seed="pan"),
    )
    assert result.good == count
    with (tmp_path / "issuer-debit.csv").open(newline="") as fh:
        rows = [r for r in csv.reader(line for line in fh if not line.startswith("#"))]
    pans = [r[0] for r in rows[1:]]
    assert len(pans) == count and all(p.isdigit() for p in pans)
    response = tmp_path / "response.jsonl"
    with sqlite_db.reader() as s, hsm.session(Role.QC, "pan test") as session:
        write_response_data(s, batch_id, field_cipher(session), response)
    sqlite_db.dispose()  # the WAL folded into the file
    stored = b"".join(
        p.read_bytes()
        for p in tmp_path.iterdir()
        if p.name.startswith("line.sqlite3") or p == response
    )
    leaked = [p[:6] + "…" for p in pans if p.encode() in stored]
    assert leaked == []
