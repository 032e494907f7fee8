"""The dispatch manifest, and the rule that a card and its PIN never travel together.

:func:`check_separation` runs before anything is written: for every record, its PIN
mailer is in another envelope than its card, is posted on a later day, and passed
its own scale (so it holds no card); a mailer whose card was diverted is held, never
posted. A violation raises :class:`SeparationError` and the run leaves nothing
behind.

:func:`write_manifest` writes, for the post and the bureau's dispatch desk:

* ``dispatch-manifest.json`` - the batch, the run, totals, one entry per posting day,
  kind and postal region (pieces, trays, bundles, weight, postage by class), every
  tray with its bundles, the test letters apart, the diverted and held pieces;
* ``dispatch-manifest.csv`` - the per day and region rows;
* ``pieces.csv`` - every envelope: kind, day, region, tray, bundle, weights, status;
* ``test-letters.csv`` - the test letters' envelopes, kept apart from the mailing.

Manifests name records by reference, chip serial and the card's last four digits;
no name, no address, no PAN, no PIN - and no digest of a PIN mailer (a document
hash would give a 4-digit PIN away in 10,000 tries).
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardperso.errors import CardpersoError
from cardperso.lettershop.pieces import Piece, PieceKind, PieceStatus

__all__ = [
    "MANIFEST_FORMAT",
    "PIECE_COLUMNS",
    "ManifestFiles",
    "SeparationError",
    "check_separation",
    "region_rows",
    "tray_rows",
    "write_manifest",
]

MANIFEST_FORMAT = "cardperso-dispatch/1"
PIECE_COLUMNS = (
    "envelope",
    "kind",
    "day",
    "record_ref",
    "seq",
    "country",
    "region",
    "local",
    "tray",
    "bundle",
    "position",
    "chip_serial",
    "pan_last4",
    "document",
    "page",
    "expected_g",
    "weight_g",
    "postage_class",
    "price",
    "status",
    "reason",
    "card_envelope",
)
REGION_COLUMNS = (
    "day",
    "kind",
    "country",
    "region",
    "pieces",
    "trays",
    "bundles",
    "weight_g",
    "price",
    "diverted",
    "held",
)
"""The per day and region CSV's columns, then one ``postage_<class>`` count per class."""


class SeparationError(CardpersoError):
    """A card and its PIN mailer would share an envelope or a posting day."""

    exit_code = 6


def check_separation(cards: Sequence[Piece], mailers: Sequence[Piece]) -> int:
    """Refuse any card and PIN mailer of one record that would travel together; the
    number of pairs checked."""
    by_ref = {p.record_ref: p for p in cards}
    envelopes = {p.envelope for p in cards}
    pairs = 0
    for m in mailers:
        card = by_ref.get(m.record_ref)
        if card is None:
            raise SeparationError(f"PIN mailer {m.envelope} has no card in this run")
        if m.envelope in envelopes:
            raise SeparationError(f"PIN mailer {m.envelope} shares an envelope with a card")
        if m.card_envelope and m.card_envelope != card.envelope:
            raise SeparationError(f"PIN mailer {m.envelope} names the wrong card envelope")
        if m.status is PieceStatus.DISPATCHED:
            if card.status is not PieceStatus.DISPATCHED:
                raise SeparationError(
                    f"PIN mailer {m.envelope} would be posted while its card is not"
                )
            if m.day <= card.day:
                raise SeparationError(
                    f"PIN mailer {m.envelope} would be posted on {m.day.isoformat()}, "
                    f"not after its card ({card.day.isoformat()})"
                )
        pairs += 1
    return pairs


def _bundles(pieces: Iterable[Piece]) -> int:
    return len({(p.tray, p.bundle) for p in pieces if p.tray})


def region_rows(pieces: Iterable[Piece]) -> list[dict[str, Any]]:
    """One row per posting day, kind and postal region, in day and postal order."""
    groups: dict[tuple[str, str, str, str], list[Piece]] = defaultdict(list)
    for p in pieces:
        groups[(p.day.isoformat(), p.kind.value, p.country, p.region)].append(p)
    rows: list[dict[str, Any]] = []
    for (day, kind, country, region), group in sorted(groups.items()):
        sent = [p for p in group if p.status is PieceStatus.DISPATCHED]
        classes = Counter(p.postage_class for p in sent)
        rows.append(
            {
                "day": day,
                "kind": kind,
                "country": country,
                "region": region,
                "pieces": len(sent),
                "trays": len({p.tray for p in sent}),
                "bundles": _bundles(sent),
                "weight_g": round(sum(p.weight_g for p in sent), 1),
                "postage": dict(sorted(classes.items())),
                "price": sum(p.price for p in sent),
                "diverted": sum(p.status is PieceStatus.DIVERTED for p in group),
                "held": sum(p.status is PieceStatus.HELD for p in group),
            }
        )
    return rows


def tray_rows(pieces: Iterable[Piece]) -> list[dict[str, Any]]:
    """Every tray: its day, kind, region, bundles and pieces (the labels on the trays)."""
    trays: dict[tuple[str, str, int], list[Piece]] = defaultdict(list)
    for p in pieces:
        if p.status is PieceStatus.DISPATCHED and p.tray:
            trays[(p.day.isoformat(), p.kind.value, p.tray)].append(p)
    out: list[dict[str, Any]] = []
    for (day, kind, tray), group in sorted(trays.items()):
        bundles = Counter(p.bundle for p in group)
        out.append(
            {
                "day": day,
                "kind": kind,
                "tray": tray,
                "country": group[0].country,
                "region": group[0].region,
                "pieces": len(group),
                "first_position": min(p.position for p in group),
                "last_position": max(p.position for p in group),
                "bundles": [{"bundle": b, "pieces": n} for b, n in sorted(bundles.items())],
            }
        )
    return out


def _totals(pieces: Sequence[Piece]) -> dict[str, Any]:
    sent = [p for p in pieces if p.status is PieceStatus.DISPATCHED]
    return {
        "pieces": len(pieces),
        "dispatched": len(sent),
        "diverted": sum(p.status is PieceStatus.DIVERTED for p in pieces),
        "held": sum(p.status is PieceStatus.HELD for p in pieces),
        "days": sorted({p.day.isoformat() for p in sent}),
        "weight_g": round(sum(p.weight_g for p in sent), 1),
        "price": sum(p.price for p in sent),
    }


@dataclass(frozen=True)
class ManifestFiles:
    json: Path
    csv: Path
    pieces: Path
    test_letters: Path | None


def _write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _flat(rows: Sequence[Mapping[str, Any]], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Region rows with one ``postage_<class>`` column per postage class."""
    return [{**row, **{f"postage_{c}": row["postage"].get(c, 0) for c in classes}} for row in rows]


def write_manifest(
    out: Path,
    head: Mapping[str, Any],
    carriers: Sequence[Piece],
    mailers: Sequence[Piece],
    tests: Sequence[Piece],
    test_target: Mapping[str, Any] | None,
    classes: Sequence[str] = (),
) -> ManifestFiles:
    """Write the manifest files into ``out`` (see the module notes)."""
    mailing = [*carriers, *mailers]
    regions = region_rows(mailing)
    doc: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        **head,
        "totals": {
            PieceKind.CARRIER.value: _totals(carriers),
            PieceKind.PIN_MAILER.value: _totals(mailers),
        },
        "by_day_and_region": regions,
        "trays": tray_rows(mailing),
        "diverted": [p.as_row() for p in mailing if p.status is PieceStatus.DIVERTED],
        "held": [p.as_row() for p in mailing if p.status is PieceStatus.HELD],
        "test_letters": None,
    }
    if tests:
        doc["test_letters"] = {
            **(test_target or {}),
            "totals": _totals(tests),
            "by_day_and_region": region_rows(tests),
            "trays": tray_rows(tests),
            "diverted": [p.as_row() for p in tests if p.status is PieceStatus.DIVERTED],
        }
    files = ManifestFiles(
        out / "dispatch-manifest.json",
        out / "dispatch-manifest.csv",
        out / "pieces.csv",
        out / "test-letters.csv" if tests else None,
    )
    files.json.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    names = list(classes) or sorted({c for r in regions for c in r["postage"]})
    _write_csv(
        files.csv, [*REGION_COLUMNS, *(f"postage_{c}" for c in names)], _flat(regions, names)
    )
    _write_csv(files.pieces, PIECE_COLUMNS, (p.as_row() for p in mailing))
    if files.test_letters is not None:
        _write_csv(files.test_letters, PIECE_COLUMNS, (p.as_row() for p in tests))
    return files
