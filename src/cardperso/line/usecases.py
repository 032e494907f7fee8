"""Use cases of the batch line that the CLI and the service call (DESIGN.md §3).

* :func:`import_batch` - validate an issuer file, prepare every record (HSM, dataprep
  role) and create the batch, in one whole-or-nothing transaction: a bad record
  refuses the file and leaves nothing behind;
* :func:`receive_stock` - book blank cards into the feeder stock;
* :func:`initialize_stock` - the initialization room (:mod:`.initroom`): blank
  stock initialized (logically or by memory image) and booked as pre-initialized
  stock of one product, by an init operator with an initialization-role HSM
  session only;
* :func:`run_batch` - start (or, after a crash or a pause, resume) the batch as an
  authenticated operator and run the line until no job is pending;
* :func:`cancel_batch`, :func:`batch_status`, :func:`batch_report`;
* :func:`run_demo` - generate -> import -> run -> report for synthetic debit cards
  on SQLite, the soft HSM and simulated cards.

Starting, resuming and cancelling need an authenticated operator with the right
role (:mod:`cardperso.production.operators`); refusals and every action are in the
audit log. Nothing here prints: progress goes to a callback, results are returned.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from cardperso.crypto.rand import RandomSource
from cardperso.crypto.secret import SecretStr
from cardperso.dataprep.batch import open_issuer_file
from cardperso.dataprep.fields import presort_key
from cardperso.dataprep.issuer_file import (
    IssuerRecord,
    ProfileResolver,
    builtin_resolver,
)
from cardperso.dataprep.prepare import CardPreparer
from cardperso.dataprep.secrets import PrepKeys
from cardperso.errors import InputError
from cardperso.hsm import Hsm, HsmSession, RequestSeededRandom, Role, SoftHsm
from cardperso.line.bureau import CARD_SECRET, PRINT_KEY, provision_demo_keys
from cardperso.line.feeder import Feeder, SimulatedFeeder, stock_serials
from cardperso.line.initroom import InitRoomConfig, InitRoomResult, initialize_stock
from cardperso.line.orchestrator import Line, LineConfig, LineProgress, RunResult
from cardperso.line.reports import (
    BatchSummary,
    batch_summary,
    write_chip_report,
    write_response_data,
)
from cardperso.production import operators, repo
from cardperso.production.db import Database
from cardperso.production.fieldkeys import field_cipher
from cardperso.production.models import Batch, BatchState, StockKind
from cardperso.production.models import Role as OpRole
from cardperso.production.operators import Action, Principal, authorize
from cardperso.profiles.loader import dump_profile
from cardperso.profiles.schema import FieldRule, Meaning, Profile

__all__ = [
    "DemoResult",
    "ImportResult",
    "InitRoomConfig",
    "InitRoomResult",
    "ReportFiles",
    "batch_report",
    "batch_status",
    "cancel_batch",
    "import_batch",
    "initialize_stock",
    "receive_stock",
    "record_identity",
    "run_batch",
    "run_demo",
]

PREP_CHUNK = 256


@dataclass(frozen=True)
class ImportResult:
    batch_id: int
    reference: str
    profile: str
    records: int
    input_sha256: str


def record_identity(profile: Profile, values: Mapping[str, str]) -> str:
    """The digits the database keeps masked and as a keyed digest for a record.

    The PAN for a payment product; otherwise the profile's first unique field,
    left-padded with zeros to 12 digits or cut to its last 19 (an ICCID's leading
    ``8`` is the same on every SIM), so duplicates are still found.
    """
    for f in profile.input.fields:
        if f.rule == FieldRule.PAN and values.get(f.name):
            return values[f.name]
    for name in profile.input.unique:
        digits = "".join(ch for ch in values.get(name, "") if ch.isdigit())
        if digits:
            return digits[-19:].rjust(12, "0")
    raise InputError("the record has no PAN and no numeric unique field", field="pan")


def _chunks(records: Iterator[IssuerRecord], n: int) -> Iterator[list[IssuerRecord]]:
    chunk: list[IssuerRecord] = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _presort_ranks(
    path: Path, session: HsmSession, today: date, resolver: ProfileResolver, profile: Profile
) -> list[int]:
    """Production position (from 1) of each record (by file position): a first pass
    over the file reads only the presort fields (a few bytes per record)."""
    country, postal = (
        profile.letters.presort.country_field,
        profile.letters.presort.postal_code_field,
    )
    with open_issuer_file(path, session, today=today, resolver=resolver) as reader:
        keys = [presort_key(r.values.get(country, ""), r.values.get(postal, "")) for r in reader]
    order = sorted(range(len(keys)), key=lambda i: (keys[i], i))
    rank = [0] * len(keys)
    for position, i in enumerate(order, 1):
        rank[i] = position
    return rank


def import_batch(
    db: Database,
    hsm: Hsm,
    path: Path,
    *,
    by: Principal,
    today: date,
    issuer_name: str | None = None,
    max_attempts: int = repo.DEFAULT_MAX_ATTEMPTS,
    prep_keys: PrepKeys | None = None,
    nonces: RandomSource | None = None,
    resolver: ProfileResolver = builtin_resolver,
) -> ImportResult:
    """Validate, prepare and store an issuer file as one batch, whole or not at all.

    ``resolver`` finds the profile the file's header names (the built-in products
    by default; a bureau may resolve its own registered profiles)."""
    keys = prep_keys or PrepKeys(card_secret=CARD_SECRET, print_key=PRINT_KEY)
    with (
        hsm.session(Role.DATAPREP, by.name) as session,
        # plain, or inside the issuer's encrypted envelope (MAC checked first)
        open_issuer_file(path, session, today=today, resolver=resolver) as reader,
    ):
        header, profile = reader.header, reader.profile
        cipher = field_cipher(session, rng=nonces)
        preparer = CardPreparer(profile, session, keys, batch_id=header.batch_id, file=reader.name)

        bound_field = next(
            (f.name for f in profile.input.fields if f.meaning == Meaning.CHIP_SERIAL), None
        )

        # Production order is postal order (country, region, local code, then file
        # order), so cards - and their carriers - come off the line presorted.
        rank = _presort_ranks(path, session, today, resolver, profile)

        def job_records() -> Iterator[repo.JobRecord]:
            seq = 0
            for chunk in _chunks(iter(reader), PREP_CHUNK):
                numbered = [(seq + i + 1, r.line, r.values) for i, r in enumerate(chunk)]
                seq += len(chunk)
                cards, problems = preparer.prepare(numbered)
                if problems:
                    raise problems[0]
                for card, rec in zip(cards, chunk, strict=True):
                    ref = card.record_id if len(card.record_id) <= 64 else f"{card.seq:07d}"
                    yield repo.JobRecord(
                        ref,
                        record_identity(profile, rec.values),
                        card.to_line(),
                        rank[card.seq - 1],
                        chip_serial=rec.values.get(bound_field) if bound_field else None,
                    )

        with db.transaction() as s:
            when = db.now()
            issuer = repo.register_issuer(s, header.issuer, issuer_name or header.issuer, when=when)
            prow = repo.register_profile(
                s, profile.id, profile.version, dump_profile(profile), when=when
            )
            batch = repo.create_batch(
                s,
                issuer=issuer,
                profile=prow,
                reference=header.batch_id,
                records=job_records(),
                cipher=cipher,
                by=by,
                when=when,
                max_attempts=max_attempts,
            )
            batch.input_sha256 = reader.sha256
            return ImportResult(
                batch.id, batch.reference, profile.id, batch.record_count, reader.sha256
            )


def receive_stock(
    db: Database,
    serials: Sequence[str],
    *,
    by: Principal,
    lot: str,
    kind: StockKind = StockKind.BLANK,
    product: str | None = None,
) -> int:
    """Book a delivery of cards into the feeder stock (operator or supervisor)."""
    with db.transaction() as s:
        return repo.receive_stock(
            s, serials, kind=kind, by=by, when=db.now(), product=product, lot=lot
        )


def run_batch(
    db: Database,
    hsm: Hsm,
    batch_id: int,
    *,
    by: Principal,
    feeder: Feeder,
    config: LineConfig | None = None,
    progress: Callable[[LineProgress], None] | None = None,
    nonces: RandomSource | None = None,
) -> RunResult:
    """Start an imported batch, or resume a paused or crashed one, and run the line.

    Start and resume are authorized and audited (:mod:`cardperso.production.repo`);
    resume first rejects whatever a crash left in the modules, so those records are
    remade and none is made twice."""
    with db.transaction() as s:
        batch = s.get(Batch, batch_id)
        if batch is None:
            raise InputError(f"no batch {batch_id}", field="batch")
        if batch.state is BatchState.IMPORTED:
            repo.start_batch(s, batch_id, by=by, when=db.now())
        else:
            repo.resume_batch(s, batch_id, by=by, when=db.now())
    with hsm.session(Role.PERSONALIZATION, f"line/{by.name}") as session:
        cipher = field_cipher(session, rng=nonces)
    line = Line(db, hsm, cipher, feeder, config, actor=by.name)
    return line.run(batch_id, progress)


def cancel_batch(db: Database, batch_id: int, *, by: Principal, reason: str = "") -> None:
    """Cancel a batch (supervisor only; refused while cards are in modules)."""
    with db.transaction() as s:
        repo.cancel_batch(s, batch_id, by=by, when=db.now(), reason=reason)


def batch_status(db: Database, batch_id: int) -> repo.Progress:
    """Counts of jobs, attempts and chips (no cardholder data)."""
    with db.reader() as s:
        if s.get(Batch, batch_id) is None:
            raise InputError(f"no batch {batch_id}", field="batch")
        return repo.progress(s, batch_id)


@dataclass(frozen=True)
class ReportFiles:
    summary: BatchSummary
    summary_json: Path
    chip_report: Path
    response_data: Path | None


def batch_report(
    db: Database,
    hsm: Hsm,
    batch_id: int,
    out_dir: Path,
    *,
    by: Principal,
    modules: int | None = None,
) -> ReportFiles:
    """Write the batch summary, the chip usage report and the response data."""
    with db.transaction() as s:
        authorize(s, by, Action.VIEW_REPORTS, f"batch:{batch_id}", db.now())
    out_dir.mkdir(parents=True, exist_ok=True)
    with db.reader() as s:
        summary = batch_summary(s, batch_id, modules)
        chip_path = out_dir / f"batch-{batch_id}-chip-report.csv"
        write_chip_report(s, batch_id, chip_path)
        with hsm.session(Role.PERSONALIZATION, f"reports/{by.name}") as session:
            cipher = field_cipher(session)
        response = out_dir / f"batch-{batch_id}-response-data.jsonl"
        written = write_response_data(s, batch_id, cipher, response)
    summary_path = out_dir / f"batch-{batch_id}-summary.json"
    summary_path.write_text(json.dumps(summary.as_dict(), indent=2) + "\n", encoding="utf-8")
    return ReportFiles(summary, summary_path, chip_path, response if written else None)


# -- the demo ---------------------------------------------------------------------------

DEMO_PASSPHRASE = SecretStr("cardperso demo keystore, not secret")  # demo only
DEMO_PASSWORD = SecretStr("demo password, not secret")  # demo only
DEMO_SCRYPT = operators.ScryptParams(n=2**12, r=8, p=1)  # demo only: quick logins


@dataclass
class DemoResult:
    workdir: Path
    issuer_file: Path
    database: Path
    keystore: Path
    batch_id: int
    run: RunResult
    report: ReportFiles
    import_s: float
    faces: list[Path] = field(default_factory=list)


def _fresh(workdir: Path, names: Sequence[str]) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    for name in names:
        p = workdir / name
        if p.is_dir():
            shutil.rmtree(p)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def run_demo(
    workdir: Path,
    *,
    count: int = 10_000,
    modules: int = 8,
    seed: int = 2026,
    today: date | None = None,
    log: Callable[[str], None] = lambda _m: None,
    progress: Callable[[LineProgress], None] | None = None,
    keep_faces: int = 12,
) -> DemoResult:
    """generate -> import -> run -> report for ``count`` synthetic debit cards."""
    import time

    from cardperso.dataprep.usecases import generate_issuer_file
    from cardperso.production.db import upgrade

    names = [
        "demo.cpks",
        "demo.cpks.audit.jsonl",
        "demo.sqlite3",
        "demo.sqlite3-wal",
        "demo.sqlite3-shm",
        "issuer-debit.csv",
        "reports",
        "faces",
    ]
    _fresh(workdir, names)
    day = today or datetime.now(UTC).date()
    keystore = workdir / "demo.cpks"
    hsm = SoftHsm.create(keystore, DEMO_PASSPHRASE, rng=RequestSeededRandom(seed), scrypt_n=2**12)
    try:
        made = provision_demo_keys(hsm)
        log(f"keystore {keystore}: {len(made)} keys generated inside the soft HSM")
        db_path = workdir / "demo.sqlite3"
        url = f"sqlite:///{db_path}"
        upgrade(url)
        db = Database.open(url, synchronous="NORMAL")
        try:
            with db.transaction() as s:
                so = operators.create_operator(
                    s,
                    "officer",
                    DEMO_PASSWORD,
                    [OpRole.SECURITY_OFFICER],
                    by=None,
                    when=db.now(),
                    params=DEMO_SCRYPT,
                )
                officer = Principal(so.id, so.name, so.role_set)
            with db.transaction() as s:
                for name, role in (
                    ("supervisor", OpRole.SUPERVISOR),
                    ("operator", OpRole.OPERATOR),
                ):
                    operators.create_operator(
                        s,
                        name,
                        DEMO_PASSWORD,
                        [role],
                        by=officer,
                        when=db.now(),
                        params=DEMO_SCRYPT,
                    )
            supervisor = operators.login(db, "supervisor", DEMO_PASSWORD)
            operator = operators.login(db, "operator", DEMO_PASSWORD)
            issuer_file = workdir / "issuer-debit.csv"
            g = generate_issuer_file("debit", issuer_file, count, seed, today=day)
            log(f"issuer file {issuer_file}: {g.records} debit records")
            t0 = time.perf_counter()
            imported = import_batch(db, hsm, issuer_file, by=supervisor, today=day)
            import_s = time.perf_counter() - t0
            log(
                f"imported batch {imported.batch_id} ({imported.reference}): "
                f"{imported.records} records prepared and sealed in {import_s:.1f} s"
            )
            spare = max(count // 20, 20)
            stock_seed = f"demo-stock-{seed}"
            receive_stock(
                db, stock_serials(stock_seed, 0, count + spare), by=operator, lot=f"LOT-{seed}"
            )
            log(f"stock: {count + spare} blank cards booked")
            faces = workdir / "faces"
            config = LineConfig(
                modules=modules, seed=f"demo-{seed}", faces_dir=faces, keep_faces=keep_faces
            )
            run = run_batch(
                db,
                hsm,
                imported.batch_id,
                by=operator,
                feeder=SimulatedFeeder(stock_seed),
                config=config,
                progress=progress,
            )
            report = batch_report(db, hsm, imported.batch_id, workdir / "reports", by=supervisor)
            return DemoResult(
                workdir,
                issuer_file,
                db_path,
                keystore,
                imported.batch_id,
                run,
                report,
                import_s,
                run.faces,
            )
        finally:
            db.dispose()
    finally:
        hsm.close()
