"""Use cases of data preparation that the CLI and the service call (DESIGN.md §3).

``generate_issuer_file`` writes a synthetic issuer file for a profile;
``generate_issuer_envelope`` writes one inside an encrypted envelope
(:mod:`.envelope`), playing the issuer with keys in the HSM; ``check_profile``
loads a profile and summarizes what it describes. They raise cardperso errors
(``ConfigError`` for a bad profile or bad arguments, ``HsmError`` for a key the
HSM does not hold or may not use) and print nothing.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from cardperso.dataprep.envelope import EnvelopeHeader, write_envelope
from cardperso.dataprep.generator import GeneratedFile, write_issuer_file
from cardperso.errors import ConfigError
from cardperso.hsm import Hsm, Role
from cardperso.profiles.loader import resolve_profile
from cardperso.profiles.schema import Profile

__all__ = [
    "GeneratedEnvelope",
    "ProfileSummary",
    "check_profile",
    "generate_issuer_envelope",
    "generate_issuer_file",
    "summarize_profile",
]


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """A loaded profile and a few lines describing it."""

    profile: Profile
    lines: tuple[str, ...]


def summarize_profile(p: Profile) -> tuple[str, ...]:
    """Human-readable lines: what the product carries and how each secret is made."""
    lines = [f"profile {p.id} v{p.version}: {p.title}"]
    lines.append(
        f"  input: {len(p.input.fields)} fields"
        + (f", unique: {', '.join(p.input.unique)}" if p.input.unique else "")
    )
    dfs = sum(1 for f in p.files if f.is_df)
    efs = len(p.files) - dfs
    lines.append(f"  files: {len(p.files)} ({dfs} DFs, {efs} EFs), {len(p.data)} data mappings")
    for x in p.pins:
        kind = "PUK" if x.is_puk else "PIN"
        extra = ", mailed" if x.mailer else ""
        extra += ", returned to issuer" if x.return_to_issuer else ""
        lines.append(
            f"  {kind} {x.name} (ref {x.ref}): {x.method.value}, {x.length} digits, "
            f"{x.try_limit} tries{extra}"
        )
    for k in p.keys:
        lines.append(
            f"  key {k.name} (ref {k.ref}): {k.route.value}, {k.algorithm.value} v{k.version}"
        )
    if p.magstripe is not None:
        tracks = " and ".join(str(t) for t in p.magstripe.tracks)
        lines.append(f"  magnetic stripe: track {tracks}, service code {p.magstripe.service_code}")
    body = p.card_body
    lines.append(
        f"  card body: {len(body.emboss)} embossed, {len(body.laser)} engraved lines"
        + (", photo" if body.photo else "")
    )
    ld = p.loading
    lines.append(f"  loading: {ld.method.value}, protected by {ld.protection.value} ({ld.key})")
    mailer = p.letters.pin_mailer
    lines.append(
        "  letters: card carrier"
        + (
            f", PIN mailer ({', '.join(mailer.pins)}) {mailer.delay_days} days later"
            if mailer
            else ""
        )
    )
    return tuple(lines)


def check_profile(path_or_name: str | Path) -> ProfileSummary:
    """Load and check a profile file or built-in name; raises ProfileError if it is bad."""
    profile = resolve_profile(path_or_name)
    return ProfileSummary(profile, summarize_profile(profile))


def generate_issuer_file(
    profile: str | Path,
    out: str | Path,
    count: int,
    seed: int,
    *,
    today: date,
    fmt: str | None = None,
    issuer: str = "ACME-ISSUER",
    batch_id: str | None = None,
) -> GeneratedFile:
    """Write ``count`` synthetic records for ``profile`` to ``out`` (csv or jsonl by suffix)."""
    p = resolve_profile(profile)
    chosen = _format(out, fmt, count)
    try:
        return write_issuer_file(
            p, out, count, seed, today, fmt=chosen, issuer=issuer, batch_id=batch_id
        )
    except ValueError as e:  # e.g. more records than the profile's number space
        raise ConfigError(str(e)) from None


def _format(out: str | Path, fmt: str | None, count: int) -> str:
    """The issuer file's format (``fmt``, else by the suffix of ``out``), checked."""
    chosen = fmt or ("jsonl" if str(out).lower().endswith((".jsonl", ".ndjson")) else "csv")
    if chosen not in ("csv", "jsonl"):
        raise ConfigError(f"format must be csv or jsonl, not {chosen!r}")
    if count < 0:
        raise ConfigError("count must be 0 or more")
    return chosen


@dataclass(frozen=True, slots=True)
class GeneratedEnvelope:
    """What :func:`generate_issuer_envelope` wrote: the issuer file inside, the envelope."""

    inner: GeneratedFile
    header: EnvelopeHeader
    bytes_written: int


def generate_issuer_envelope(
    profile: str | Path,
    out: str | Path,
    count: int,
    seed: int,
    *,
    today: date,
    hsm: Hsm,
    transport_key: str,
    mac_key: str,
    fmt: str | None = None,
    issuer: str = "ACME-ISSUER",
    batch_id: str | None = None,
    operator: str = "issuer",
) -> GeneratedEnvelope:
    """Write ``count`` synthetic records for ``profile`` inside an encrypted envelope.

    The issuer file (csv, or jsonl by ``fmt`` or the suffix of ``out``) is written to
    an anonymous temporary file beside ``out`` (never a named clear file), then
    encrypted under the TRANSPORT key ``transport_key`` and MACed under ``mac_key`` in
    a dataprep session of ``hsm`` (:func:`~.envelope.write_envelope`), with a fresh
    random IV: the file inside is the same for the same seed, the envelope is not.
    ``out`` appears only once it is complete.
    """
    p = resolve_profile(profile)
    chosen = _format(out, fmt, count)
    target = Path(out)
    folder = target.parent
    with tempfile.TemporaryFile(dir=folder) as plain:
        try:
            inner = write_issuer_file(
                p, plain, count, seed, today, fmt=chosen, issuer=issuer, batch_id=batch_id
            )
        except ValueError as e:  # e.g. more records than the profile's number space
            raise ConfigError(str(e)) from None
        plain.seek(0)
        h = inner.header
        header = EnvelopeHeader(
            h.issuer,
            h.batch_id,
            h.profile,
            h.profile_version,
            h.record_count,
            transport_key,
            mac_key,
            os.urandom(16),
        )
        partial = folder / f".{target.name}.partial-{os.getpid()}"
        try:
            with hsm.session(Role.DATAPREP, operator) as session:
                write_envelope(plain, partial, session, header)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return GeneratedEnvelope(inner, header, target.stat().st_size)
