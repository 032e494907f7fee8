"""Lettershop throughput: PIN mailers and card carriers per hour on this machine.

Prints one JSON object. Both document kinds are made the way a run makes them, on
every core (one worker process per core, forked, each with its own soft HSM on the
same keystore and audit chain, as data preparation does):

* ``pin_mailers_per_hour`` - :meth:`~cardperso.lettershop.mailer.MailerPrinter.print`
  of one mailer (an audited ``print_pin_mailer`` call of the lettershop role, the PIN
  block opened inside the HSM, the page drawn by the renderer with address, blind-print
  area and Code 128) and the document written to its own file;
* ``carriers_per_hour`` - :meth:`~cardperso.lettershop.carrier.CarrierPrinter.add` of
  one carrier page (address, card place and slots, text, Code 128) into the day's
  document, written to a file per 500 pages;

each against a floor measured in the same run with the same workers: bare reportlab
pages with the same number of text lines and nothing else - one file per page for the
mailers' floor (``floor_files_per_hour``), 500 pages a document for the carriers'
(``floor_pages_per_hour``). The ratios are ours over the floor (1.0: as fast as bare
reportlab). Targets (issue 8: ten times the chapter's machines): 340,000 PIN mailers
and 70,000 carriers an hour. Rounds alternate floor and ours; medians are reported.

    python bench/lettershop.py [--mailers N] [--carriers N] [--workers N]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretStr
from cardperso.hsm import KeyAlgorithm, KeyUsage, PinBlockFormat, Role, SoftHsm
from cardperso.lettershop.carrier import CarrierPrinter
from cardperso.lettershop.config import LettershopConfig
from cardperso.lettershop.layout import FontSet
from cardperso.lettershop.mailer import MailerPrinter
from cardperso.lettershop.pieces import Letter, MailerBlock, carrier_code

PASSPHRASE = SecretStr("lettershop bench, not secret")
TARGET_MAILERS = 340_000
TARGET_CARRIERS = 70_000
ROUNDS = 3
PAGES_PER_DOCUMENT = 500
DAY = date(2026, 3, 9)
FIRST = ("Greta", "Jürgen", "Théo", "Owen", "Mei", "Lucas", "Patricia", "Mathéo")
LAST = ("Yılmaz", "Weber", "D'Amico", "Wright", "Garcia", "de Vries", "Johnson", "Martin")
TEXT_LINES = 22
"""Text lines on a carrier or mailer page (heading, address, references, text)."""


@dataclass
class Shared:
    keystore: Path
    out: Path
    letters: list[Letter]


_SHARED: Shared | None = None
_STATE: dict[str, object] = {}


def _pan(i: int) -> str:
    body = f"476173{i:09d}"
    total = 0
    for k, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if k % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def make_letters(hsm: SoftHsm, n: int) -> list[Letter]:
    """``n`` synthetic cards with a PIN block under the print key (made by data prep)."""
    out = []
    with hsm.session(Role.DATAPREP, "bench dataprep") as prep:
        key = prep.get_key("ZPK.PRINT")
        for i in range(n):
            pan = _pan(i)
            name = f"{FIRST[i % 8]} {LAST[(i // 8) % 8]}"
            block = prep.generate_pin(key, pan, PinBlockFormat.ISO_0, length=4)
            address = (name, f"{i % 400 + 1} Goethestraße", f"{80000 + i % 9000} München", "DE")
            out.append(
                Letter(
                    batch_id=1,
                    seq=i + 1,
                    record_ref=f"BENCH/{i + 1:07d}",
                    pan_masked=f"{pan[:6]}******{pan[-4:]}",
                    chip_serial=f"823C5DA9{i:08X}",
                    presort=("DE", "80", f"{i % 900:03d}"),
                    card_offset_mm=85.0,
                    address=address,
                    greeting=f"Dear {name},",
                    carrier_template="carrier-debit",
                    mailer_address=address,
                    mailer_template="pin-mailer-standard",
                    mailer_delay_days=3,
                    pins=(MailerBlock("PIN", "ZPK.PRINT", 0, block),),
                    pan=pan,
                )
            )
    return out


def _init() -> None:
    assert _SHARED is not None
    hsm = SoftHsm.open(_SHARED.keystore, PASSPHRASE, operator=f"bench {os.getpid()}")
    cfg = LettershopConfig()
    session = hsm.session(Role.LETTERSHOP, "bench lettershop")
    _STATE.update(
        hsm=hsm,
        mailers=MailerPrinter(session, cfg.mailer, FontSet(), "ACME-ISSUER"),
        config=cfg,
        fonts=FontSet(),
    )


def _mailers(span: tuple[int, int]) -> int:
    assert _SHARED is not None
    printer = _STATE["mailers"]
    assert isinstance(printer, MailerPrinter)
    folder = _SHARED.out / f"m{os.getpid()}"
    folder.mkdir(exist_ok=True)
    for i in range(*span):
        envelope = f"M1-{i + 1:07d}"
        (folder / f"{envelope}.pdf").write_bytes(printer.print(_SHARED.letters[i], envelope, DAY))
    return span[1] - span[0]


def _carriers(span: tuple[int, int]) -> int:
    assert _SHARED is not None
    cfg = _STATE["config"]
    fonts = _STATE["fonts"]
    assert isinstance(cfg, LettershopConfig) and isinstance(fonts, FontSet)
    printer = CarrierPrinter(cfg.carrier, fonts, "ACME-ISSUER", DAY)
    for i in range(*span):
        x = _SHARED.letters[i]
        printer.add(x, carrier_code(1, x.seq, x.chip_serial))
    (_SHARED.out / f"c{os.getpid()}-{span[0]}.pdf").write_bytes(printer.finish())
    return span[1] - span[0]


def _bare_page(c: Canvas, i: int) -> None:
    c.setFont("Helvetica", 10)
    for k in range(TEXT_LINES):
        c.drawString(20 * mm, (280 - 8 * k) * mm, f"Line {k} of page {i}: Goethestraße 7")
    c.showPage()


def _floor_files(span: tuple[int, int]) -> int:
    assert _SHARED is not None
    folder = _SHARED.out / f"f{os.getpid()}"
    folder.mkdir(exist_ok=True)
    for i in range(*span):
        buf = io.BytesIO()
        c = Canvas(buf, pageCompression=0, invariant=1)
        _bare_page(c, i)
        c.save()
        (folder / f"{i}.pdf").write_bytes(buf.getvalue())
    return span[1] - span[0]


def _floor_pages(span: tuple[int, int]) -> int:
    assert _SHARED is not None
    buf = io.BytesIO()
    c = Canvas(buf, pageCompression=1, invariant=1)
    for i in range(*span):
        _bare_page(c, i)
    c.save()
    (_SHARED.out / f"p{os.getpid()}-{span[0]}.pdf").write_bytes(buf.getvalue())
    return span[1] - span[0]


def _spans(n: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _rate(pool: multiprocessing.pool.Pool, work: object, spans: list[tuple[int, int]]) -> float:
    t0 = time.perf_counter()
    done = sum(pool.map(work, spans, chunksize=1))  # type: ignore[arg-type]
    return done / (time.perf_counter() - t0) * 3600


def main() -> None:
    global _SHARED
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mailers", type=int, default=3000)
    ap.add_argument("--carriers", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    n = max(args.mailers, args.carriers)
    with tempfile.TemporaryDirectory(prefix="cardperso-lettershop-bench-") as tmp:
        root = Path(tmp)
        keystore = root / "bench.cpks"
        hsm = SoftHsm.create(keystore, PASSPHRASE, rng=SeededRandom("bench"), scrypt_n=2**10)
        with hsm.session(Role.SECURITY_OFFICER, "bench officer") as so:
            so.generate_key("ZPK.PRINT", KeyAlgorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
        letters = make_letters(hsm, n)
        hsm.close()
        _SHARED = Shared(keystore, root / "out", letters)
        _SHARED.out.mkdir()
        ctx = multiprocessing.get_context("fork")
        mailer_spans = _spans(args.mailers, 100)
        carrier_spans = _spans(args.carriers, PAGES_PER_DOCUMENT)
        rates: dict[str, list[float]] = {k: [] for k in ("m", "fm", "c", "fc")}
        with ctx.Pool(args.workers, initializer=_init) as pool:
            pool.map(_mailers, [(0, 2)] * args.workers)  # warm: fonts, keys, imports
            pool.map(_carriers, [(0, 2)] * args.workers)
            for _ in range(ROUNDS):
                rates["fm"].append(_rate(pool, _floor_files, mailer_spans))
                rates["m"].append(_rate(pool, _mailers, mailer_spans))
                rates["fc"].append(_rate(pool, _floor_pages, carrier_spans))
                rates["c"].append(_rate(pool, _carriers, carrier_spans))
        med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        json.dumps(
            {
                "pin_mailers_per_hour": round(med["m"]),
                "carriers_per_hour": round(med["c"]),
                "floor_files_per_hour": round(med["fm"]),
                "floor_pages_per_hour": round(med["fc"]),
                "pin_mailer_ratio_to_floor": round(med["m"] / med["fm"], 3),
                "carrier_ratio_to_floor": round(med["c"] / med["fc"], 3),
                "target_pin_mailers_per_hour": TARGET_MAILERS,
                "target_carriers_per_hour": TARGET_CARRIERS,
                "pin_mailers_x_target": round(med["m"] / TARGET_MAILERS, 2),
                "carriers_x_target": round(med["c"] / TARGET_CARRIERS, 2),
                "meets_targets": med["m"] >= TARGET_MAILERS and med["c"] >= TARGET_CARRIERS,
                "workers": args.workers,
                "mailers": args.mailers,
                "carriers": args.carriers,
                "rounds": ROUNDS,
            }
        )
    )


if __name__ == "__main__":
    main()
