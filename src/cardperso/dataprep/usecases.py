"""Use cases of data preparation that the CLI and the service call (DESIGN.md §3).

``generate_issuer_file`` writes a synthetic issuer file for a profile;
``check_profile`` loads a profile and summarizes what it describes. Both raise
cardperso errors (``ConfigError`` for a bad profile or bad arguments) and print
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from cardperso.dataprep.generator import GeneratedFile, write_issuer_file
from cardperso.errors import ConfigError
from cardperso.profiles.loader import resolve_profile
from cardperso.profiles.schema import Profile

__all__ = ["ProfileSummary", "check_profile", "generate_issuer_file", "summarize_profile"]


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
    chosen = fmt or ("jsonl" if str(out).lower().endswith((".jsonl", ".ndjson")) else "csv")
    if chosen not in ("csv", "jsonl"):
        raise ConfigError(f"format must be csv or jsonl, not {chosen!r}")
    if count < 0:
        raise ConfigError("count must be 0 or more")
    try:
        return write_issuer_file(
            p, out, count, seed, today, fmt=chosen, issuer=issuer, batch_id=batch_id
        )
    except ValueError as e:  # e.g. more records than the profile's number space
        raise ConfigError(str(e)) from None
