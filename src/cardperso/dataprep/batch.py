"""Prepare a whole issuer file: streaming, on every core, accepted whole or refused whole.

:func:`prepare_file` reads the issuer file (plain, or an encrypted envelope,
:mod:`.envelope`) with the streaming :class:`~cardperso.dataprep.issuer_file.IssuerFileReader`
in this process, cuts the validated records into chunks and hands the chunks to
worker processes (``fork``); each worker opens its own HSM through ``hsm`` (for the
soft HSM: its own copy of the same keystore, all writing one audit chain) and a
dataprep session, and returns the chunk's prepared cards as JSON Lines. Results
are written in record order, so the output does not depend on which worker did
what; with a seeded soft HSM (:class:`~cardperso.hsm.RequestSeededRandom`) it is
the same bytes on every run. At most ``2 * workers + 1`` chunks are in flight,
so memory stays bounded whatever the file size (the reader's duplicate set is the
only state that grows: 30 to 60 bytes per record).

Output: one folder per batch, ``<out>/<batch id>/`` (a ``/`` in the batch id
becomes ``_``), holding

* ``cards.jsonl`` - one :class:`~cardperso.dataprep.prepared.PreparedCard` per line;
* ``init.json`` - the profile's initialization script (:mod:`.init_script`);
* ``exceptions.txt`` - the exception report, when records were set aside;
* ``manifest.json`` - batch header, counts, SHA-256 of the files, the HSM keys used.

Everything is written into a hidden ``.<batch>.partial-<pid>`` folder that is
renamed to its final name only when the whole batch succeeded; a refused batch,
an HSM failure or an interruption removes it, so nothing is left behind.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from multiprocessing import get_context
from pathlib import Path
from typing import IO, Any

from cardperso.dataprep.envelope import ENVELOPE_MAGIC, open_envelope
from cardperso.dataprep.issuer_file import (
    BatchHeader,
    BatchRefused,
    ExceptionReport,
    IssuerFileReader,
    Policy,
    ProfileResolver,
    builtin_resolver,
)
from cardperso.dataprep.prepare import CardPreparer, Record
from cardperso.dataprep.secrets import PrepKeys
from cardperso.errors import CardpersoError, ConfigError, HsmError, InputError
from cardperso.hsm import Hsm, HsmSession, Role
from cardperso.profiles.schema import Profile

__all__ = ["HsmOpener", "PrepareResult", "open_issuer_file", "prepare_file"]

HsmOpener = Callable[[], Hsm]
"""Opens the security module; called once in this process and once in each worker."""

MANIFEST_FORMAT = "cardperso-batch/1"


@dataclass(frozen=True, slots=True)
class PrepareResult:
    """What :func:`prepare_file` produced."""

    folder: Path
    header: BatchHeader
    profile: Profile
    records: int
    prepared: int
    set_aside: int
    report: ExceptionReport
    cards_sha256: str


# -- worker side ----------------------------------------------------------------------

_Problem = tuple[int, str, str | None]  # line, reason, field
_worker: tuple[Hsm, HsmSession, CardPreparer] | None = None


@dataclass(frozen=True, slots=True)
class _Failure:
    """An error raised in a worker, carried back as plain data (cardperso errors do not
    survive pickling with their fields)."""

    kind: str
    operation: str
    message: str

    def raise_it(self) -> None:
        if self.kind == "hsm":
            raise HsmError(self.operation, self.message)
        raise ConfigError(self.message)


def _failure(e: CardpersoError) -> _Failure:
    if isinstance(e, HsmError):
        prefix = f"HSM {e.operation}: "
        text = str(e)
        return _Failure("hsm", e.operation, text.removeprefix(prefix))
    return _Failure("config", "", str(e))


def _init_worker(
    opener: HsmOpener,
    profile: Profile,
    keys: PrepKeys,
    batch_id: str,
    file: str,
    operator: str,
) -> None:
    global _worker
    hsm = opener()
    session = hsm.session(Role.DATAPREP, operator)
    _worker = (hsm, session, CardPreparer(profile, session, keys, batch_id=batch_id, file=file))
    # What exists now (modules, the profile, the plan) lives as long as the worker: keep
    # it out of the collector's full passes, which otherwise walk it chunk after chunk.
    gc.freeze()


def _run(preparer: CardPreparer, chunk: list[Record]) -> tuple[bytes, list[_Problem]] | _Failure:
    try:
        cards, problems = preparer.prepare(chunk)
    except CardpersoError as e:
        return _failure(e)
    lines = b"".join(c.to_line() for c in cards)
    return lines, [(p.line or 0, p.reason, p.field) for p in problems]


def _work(chunk: list[Record]) -> tuple[bytes, list[_Problem]] | _Failure:
    assert _worker is not None, "worker not initialized"
    return _run(_worker[2], chunk)


# -- main side ------------------------------------------------------------------------


def _chunks(reader: IssuerFileReader, size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for seq, rec in enumerate(reader, start=1):
        chunk.append((seq, rec.line, rec.values))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _folder_name(batch_id: str) -> str:
    return batch_id.replace("/", "_")


def _open_source(
    source: str | Path | IO[bytes], name: str | None, session: HsmSession
) -> tuple[IO[bytes] | str | Path, str, dict[str, Any] | None]:
    """The issuer file to read (decrypting an envelope), its name, the envelope header."""
    display = name or (Path(source).name if isinstance(source, str | Path) else "<stream>")
    if not isinstance(source, str | Path):
        return source, display, None
    with open(source, "rb") as fh:
        magic = fh.read(len(ENVELOPE_MAGIC))
    if magic != ENVELOPE_MAGIC:
        return source, display, None
    envelope = open_envelope(source, session, name=display)
    return envelope.stream, display, envelope.header.as_dict()


def open_issuer_file(
    source: str | Path | IO[bytes],
    session: HsmSession,
    *,
    today: date,
    name: str | None = None,
    resolver: ProfileResolver = builtin_resolver,
    policy: Policy = Policy.REFUSE,
) -> IssuerFileReader:
    """A reader of an issuer file, plain or inside an encrypted envelope (:mod:`.envelope`).

    A path whose first bytes are :data:`~.envelope.ENVELOPE_MAGIC` is an envelope: its
    MAC is checked in ``session`` (a dataprep session) before anything is decrypted,
    the body is decrypted inside the HSM as it is read, and the envelope's header must
    agree with the issuer file's own (issuer, batch id, profile, version, record count).
    Raises ``InputError`` naming the file for anything wrong; close the reader (it is a
    context manager) when done.
    """
    stream, display, envelope = _open_source(source, name, session)
    reader = IssuerFileReader(
        stream,
        today=today,
        name=display,
        resolver=resolver,
        policy=policy,
        close_stream=envelope is not None,
    )
    if envelope is not None:
        try:
            _match_envelope(envelope, reader.header, display)
        except BaseException:
            reader.close()
            raise
    return reader


def prepare_file(
    source: str | Path | IO[bytes],
    out_dir: str | Path,
    *,
    hsm: HsmOpener,
    today: date,
    keys: PrepKeys | None = None,
    policy: Policy = Policy.REFUSE,
    resolver: ProfileResolver = builtin_resolver,
    workers: int = 2,
    chunk_size: int = 500,
    name: str | None = None,
    operator: str = "dataprep",
) -> PrepareResult:
    """Prepare every record of an issuer file into ``out_dir/<batch id>/`` (see the notes).

    ``source`` is plain or an envelope (:func:`open_issuer_file`). ``workers=0``
    prepares in this process. Raises ``InputError`` / ``BatchRefused``
    for bad input (under :attr:`Policy.REFUSE` any bad record refuses the batch),
    ``ConfigError`` for a profile or key set-up the HSM cannot serve, ``HsmError``
    when the HSM fails; in every such case ``out_dir`` is left as it was.
    """
    keys = keys or PrepKeys()
    out = Path(out_dir)
    main_hsm = hsm()
    try:
        session = main_hsm.session(Role.DATAPREP, operator)
        with open_issuer_file(
            source, session, today=today, name=name, resolver=resolver, policy=policy
        ) as reader:
            return _prepare(
                reader, out, hsm, session, keys, workers, chunk_size, reader.name, operator
            )
    finally:
        main_hsm.close()


def _match_envelope(envelope: dict[str, Any], header: BatchHeader, name: str) -> None:
    inner = header.as_dict()
    for key in ("issuer", "batch_id", "profile", "profile_version", "record_count"):
        if envelope[key] != inner[key]:
            raise InputError(
                "the envelope header and the issuer file inside it disagree",
                file=name,
                line=1,
                field=key,
            )


def _prepare(
    reader: IssuerFileReader,
    out: Path,
    opener: HsmOpener,
    session: HsmSession,
    keys: PrepKeys,
    workers: int,
    chunk_size: int,
    name: str,
    operator: str,
) -> PrepareResult:
    header, profile = reader.header, reader.profile
    batch_id = header.batch_id
    # Built here first: a profile or key set-up the HSM cannot serve fails before any work.
    preparer = CardPreparer(profile, session, keys, batch_id=batch_id, file=name)
    final = out / _folder_name(batch_id)
    if final.exists():
        raise ConfigError(f"{final}: this batch has been prepared already")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{_folder_name(batch_id)}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    problems: list[_Problem] = []
    sha = hashlib.sha256()
    prepared = 0
    try:
        with open(tmp / "cards.jsonl", "wb") as fh:

            def take(result: tuple[bytes, list[_Problem]] | _Failure) -> None:
                nonlocal prepared
                if isinstance(result, _Failure):
                    result.raise_it()
                    return
                lines, bad = result
                fh.write(lines)
                sha.update(lines)
                prepared += lines.count(b"\n")
                problems.extend(bad)

            if workers <= 0:
                for chunk in _chunks(reader, chunk_size):
                    take(_run(preparer, chunk))
            else:
                _fan_out(reader, opener, profile, keys, batch_id, name, operator, workers,
                         chunk_size, take)  # fmt: skip
        report = reader.report
        for line, reason, field in problems:
            report.add(InputError(reason, file=name, line=line, field=field))
            report.records_set_aside += reader.policy == Policy.SET_ASIDE
        if problems and reader.policy == Policy.REFUSE:
            raise BatchRefused(report)
        set_aside = report.records_set_aside
        if report.total_problems:
            (tmp / "exceptions.txt").write_text(report.to_text(), encoding="utf-8")
        init = preparer.init_script.to_bytes()
        (tmp / "init.json").write_bytes(init)
        manifest = {
            "format": MANIFEST_FORMAT,
            "batch": header.as_dict(),
            "source": {"name": name, "sha256": reader.sha256},
            "records": reader.records,
            "prepared": prepared,
            "set_aside": set_aside,
            "cards": {"file": "cards.jsonl", "sha256": sha.hexdigest()},
            "init": {"file": "init.json", "sha256": hashlib.sha256(init).hexdigest()},
            "hsm_keys": [{"label": h.label, "kcv": h.kcv} for h in preparer.secrets.ring.handles()],
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", "utf-8")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PrepareResult(
        final, header, profile, reader.records, prepared, set_aside, reader.report, sha.hexdigest()
    )


def _fan_out(
    reader: IssuerFileReader,
    opener: HsmOpener,
    profile: Profile,
    keys: PrepKeys,
    batch_id: str,
    name: str,
    operator: str,
    workers: int,
    chunk_size: int,
    take: Callable[[tuple[bytes, list[_Problem]] | _Failure], None],
) -> None:
    """Chunks to ``workers`` processes, results taken in order, a bounded number in flight."""
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("fork"),
        initializer=_init_worker,
        initargs=(opener, profile, keys, batch_id, name, operator),
    )
    pending: deque[Future[tuple[bytes, list[_Problem]] | _Failure]] = deque()
    try:
        for chunk in _chunks(reader, chunk_size):
            pending.append(pool.submit(_work, chunk))
            while len(pending) > 2 * workers:
                take(pending.popleft().result())
        while pending:
            take(pending.popleft().result())
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
