"""Helpers for the lettershop tests: finished batches from the real line, poppler, PINs.

A *template* is a folder holding a SQLite production database with one batch that went
through the whole line (import, run: every card good) and the bureau keystore with its
audit log; tests work on a private copy (:func:`open_bureau`), so many tests share one
line run and each may put the batch through the lettershop once.

The clear PINs are learnt only through the HSM, the way the issue allows: a lettershop
session prints each mailer PIN block with a renderer that returns the PIN itself
(:func:`clear_pins`); tests keep them in memory to look for them.
"""

from __future__ import annotations

import csv
import importlib.resources
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cardperso.dataprep.usecases import generate_issuer_file
from cardperso.hsm import PinBlockFormat, Role, SoftHsm
from cardperso.lettershop.config import Rect
from cardperso.lettershop.pieces import Letter
from cardperso.lettershop.source import read_letters
from cardperso.line.feeder import SimulatedFeeder, stock_serials
from cardperso.line.orchestrator import LineConfig
from cardperso.line.usecases import import_batch, receive_stock, run_batch
from cardperso.production.crypto_fields import FieldCipher
from cardperso.production.db import Database, upgrade
from cardperso.production.fieldkeys import field_cipher
from cardperso.profiles.loader import parse_profile
from cardperso.profiles.schema import Profile
from line.kit import TODAY, make_keystore, open_hsm
from production.support import Staff, TickClock

PDFTOTEXT = "/usr/bin/pdftotext"
PT_PER_MM = 72 / 25.4


@dataclass(frozen=True)
class Template:
    root: Path
    product: str
    batch_id: int
    staff: Staff
    issuer_file: Path


@dataclass
class Bureau:
    root: Path
    db: Database
    hsm: SoftHsm
    staff: Staff
    batch_id: int
    keystore: Path
    issuer_file: Path
    cipher: FieldCipher

    def close(self) -> None:
        self.hsm.close()
        self.db.dispose()

    def letters(self) -> list[Letter]:
        with self.db.reader() as s:
            return read_letters(s, self.batch_id, self.cipher)


def long_pin_profile() -> Profile:
    """The built-in debit product with 12-digit PINs: a clear PIN then cannot turn up
    by chance in a hex string, a timestamp or a weight, so a scan may demand zero hits."""
    text = (importlib.resources.files("cardperso.profiles") / "builtin" / "debit.yaml").read_text(
        encoding="utf-8"
    )
    longer = text.replace(
        "    length: 4\n    min_length: 4\n    max_length: 12\n",
        "    length: 12\n    min_length: 4\n    max_length: 12\n",
    )
    assert longer != text
    return parse_profile(longer, "debit-12-digit-pins")


def build_template(
    root: Path, product: str, count: int, *, profile: Profile | None = None, seed: int = 7
) -> Template:
    """A finished batch of ``count`` cards of ``product`` (every card good)."""
    root.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{root / 'bureau.sqlite3'}"
    upgrade(url)
    db = Database.open(url, clock=TickClock(), synchronous="NORMAL")
    keystore = make_keystore(root)
    hsm = open_hsm(keystore)
    try:
        staff = Staff(db)
        path = root / f"issuer-{product}.csv"
        generate_issuer_file(
            product, path, count, seed, today=TODAY, batch_id=f"{product.upper()}-{seed}"
        )
        resolver = None if profile is None else (lambda _name, _version: profile)
        kw = {} if resolver is None else {"resolver": resolver}
        imported = import_batch(db, hsm, path, by=staff.supervisor, today=TODAY, **kw)
        stock = f"lettershop-{product}"
        receive_stock(db, stock_serials(stock, 0, count + 10), by=staff.operator, lot="LOT-L")
        run = run_batch(
            db,
            hsm,
            imported.batch_id,
            by=staff.operator,
            feeder=SimulatedFeeder(stock),
            config=LineConfig(modules=2),
        )
        assert run.batch_done and run.good == count
    finally:
        hsm.close()
        db.dispose()
    return Template(root, product, imported.batch_id, staff, path)


def open_bureau(template: Template, target: Path) -> Bureau:
    """A private copy of a template, opened."""
    shutil.copytree(template.root, target)
    db = Database.open(
        f"sqlite:///{target / 'bureau.sqlite3'}", clock=TickClock(), synchronous="NORMAL"
    )
    keystore = target / "bureau.cpks"
    hsm = open_hsm(keystore)
    with hsm.session(Role.QC, "lettershop tests") as s:
        cipher = field_cipher(s)
    return Bureau(
        target,
        db,
        hsm,
        template.staff,
        template.batch_id,
        keystore,
        target / template.issuer_file.name,
        cipher,
    )


def issuer_records(path: Path) -> list[dict[str, str]]:
    """The issuer file's records, in file order (record n has record reference <batch>/n)."""
    with path.open(encoding="utf-8", newline="") as fh:
        lines = [line for line in fh if not line.startswith("#")]
    return list(csv.DictReader(lines))


def clear_pins(hsm: SoftHsm, letters: list[Letter]) -> dict[str, dict[str, str]]:
    """Every mailer PIN, by record reference and PIN name, learnt through the HSM."""
    out: dict[str, dict[str, str]] = {}
    with hsm.session(Role.LETTERSHOP, "test oracle") as s:
        keys = {}
        for letter in letters:
            for b in letter.pins:
                key = keys.get(b.key) or keys.setdefault(b.key, s.get_key(b.key))
                fmt = PinBlockFormat(b.format)
                pan = letter.pan if fmt != PinBlockFormat.ISO_1 else None
                doc = s.print_pin_mailer(key, b.block, pan, fmt, lambda p: p.reveal().encode())
                out.setdefault(letter.record_ref, {})[b.name] = doc.decode()
    return out


# -- poppler ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    """Points, from the top-left corner of the page."""

    def inside(self, r: Rect, slack_pt: float = 1.0) -> bool:
        return (
            self.x0 >= r.x_mm * PT_PER_MM - slack_pt
            and self.x1 <= r.right_mm * PT_PER_MM + slack_pt
            and self.y0 >= r.y_mm * PT_PER_MM - slack_pt
            and self.y1 <= r.bottom_mm * PT_PER_MM + slack_pt
        )


_WORD = re.compile(
    r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>'
)
_PAGE = re.compile(r"<page ")


def pdftotext(path: Path, *args: str) -> str:
    """``pdftotext ARGS PATH -`` (UTF-8)."""
    return subprocess.run(
        [PDFTOTEXT, "-enc", "UTF-8", *args, str(path), "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _unescape(text: str) -> str:
    return (
        text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", '"')
        .replace("&apos;", "'")
        .replace("&amp;", "&")
    )


def pages_words(path: Path) -> list[list[Word]]:
    """The words of every page with their boxes (``pdftotext -bbox``)."""
    xml = pdftotext(path, "-bbox")
    pages: list[list[Word]] = []
    for chunk in _PAGE.split(xml)[1:]:
        pages.append(
            [
                Word(_unescape(m.group(5)), *(float(m.group(i)) for i in range(1, 5)))
                for m in _WORD.finditer(chunk)
            ]
        )
    return pages


def page_text(path: Path, page: int) -> str:
    """The text of one page (from 1)."""
    return pdftotext(path, "-f", str(page), "-l", str(page))


def crop_text(path: Path, page: int, r: Rect, *extra: str) -> str:
    """The text inside a rectangle of one page (``-x -y -W -H`` at 72 dpi)."""
    return pdftotext(
        path,
        *extra,
        "-f",
        str(page),
        "-l",
        str(page),
        "-r",
        "72",
        "-x",
        str(int(r.x_mm * PT_PER_MM)),
        "-y",
        str(int(r.y_mm * PT_PER_MM)),
        "-W",
        str(int(r.w_mm * PT_PER_MM) + 1),
        "-H",
        str(int(r.h_mm * PT_PER_MM) + 1),
    )
