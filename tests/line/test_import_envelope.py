"""``batch import`` of an issuer file that arrives inside the encrypted envelope: the
MAC is checked in the HSM before anything is decrypted, and a tampered envelope
leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from cardperso.dataprep.usecases import generate_issuer_envelope
from cardperso.errors import InputError
from cardperso.hsm import KeyAlgorithm, KeyUsage, Role, SoftHsm
from cardperso.line.usecases import import_batch
from cardperso.production.db import Database
from cardperso.production.models import Batch, CardJob
from production.support import Staff

from .kit import TODAY


def _issuer_keys(hsm: SoftHsm) -> None:
    with hsm.session(Role.SECURITY_OFFICER, "officer") as so:
        so.generate_key("TRANSPORT.ACME", KeyAlgorithm.AES_128, KeyUsage.TRANSPORT)
        so.generate_key("MAC.ACME", KeyAlgorithm.AES_128, KeyUsage.MAC)


def test_an_enveloped_file_imports_and_a_tampered_one_is_refused(
    sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    staff = Staff(sqlite_db)
    _issuer_keys(hsm)
    env = tmp_path / "debit.env"
    generate_issuer_envelope(
        "debit",
        env,
        20,
        5,
        today=TODAY,
        hsm=hsm,
        transport_key="TRANSPORT.ACME",
        mac_key="MAC.ACME",
        batch_id="ENV-1",
    )
    assert b"4761" not in env.read_bytes()  # no PAN in clear in the envelope
    result = import_batch(sqlite_db, hsm, env, by=staff.supervisor, today=TODAY)
    assert result.records == 20 and result.reference == "ENV-1"

    bad = tmp_path / "debit-bad.env"
    generate_issuer_envelope(
        "debit",
        bad,
        5,
        6,
        today=TODAY,
        hsm=hsm,
        transport_key="TRANSPORT.ACME",
        mac_key="MAC.ACME",
        batch_id="ENV-2",
    )
    raw = bytearray(bad.read_bytes())
    raw[-40] ^= 0x01
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="bad MAC"):
        import_batch(sqlite_db, hsm, bad, by=staff.supervisor, today=TODAY)
    with sqlite_db.reader() as s:
        assert [b.reference for b in s.scalars(select(Batch))] == ["ENV-1"]
        assert len(s.scalars(select(CardJob)).all()) == 20
