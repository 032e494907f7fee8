"""Quality control: what each check catches, what it wrongly rejects, what it costs.

Prints one JSON object:

* ``detection`` - for each injected fault kind (``tests/line/kit.py``), a line run of
  ``FAULTED`` cards that all carry the fault: ``detected_pct`` (cards rejected by
  the check meant for the fault), ``rejected_pct`` (by any check) and which check
  rejected how many;
* ``clean`` - a clean batch of ``CLEAN`` cards per product through the whole line with
  every QC check on every card (OCR included): ``false_reject_pct``;
* ``host_ms_per_card`` - host CPU of each check alone, per card checked (the card
  simulation's own CPU taken out), measured on personalized debit and employee cards
  in one thread; ``floor`` - measured in the same run (DESIGN.md §7): the chip
  session that personalizes the card (host CPU, card simulation excluded), and each
  check's cost as a ratio to it;
* ``ocr_engines`` - the same OCR strips read in process (``tesserocr``) and by one
  ``tesseract`` process per card (what ``pytesseract`` does), CPU per card;
* ``vision`` - the thresholds, the lowest score a clean card got and the highest a
  faulty one got.

    python bench/qc.py [FAULTED] [CLEAN]
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select

from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretStr
from cardperso.dataprep.init_script import build_init_script
from cardperso.dataprep.prepared import CardBodyData, PreparedCard
from cardperso.dataprep.usecases import generate_issuer_file
from cardperso.hsm import RequestSeededRandom, Role, SoftHsm
from cardperso.line.bureau import provision_demo_keys
from cardperso.line.chip import KeyCache, StepRunner
from cardperso.line.feeder import CpuMeter, MeteredReader, SimulatedFeeder, stock_serials
from cardperso.line.magstripe import SimulatedStripe, encode_and_verify
from cardperso.line.orchestrator import LineConfig
from cardperso.line.qc import ChipProof, QcConfig, VisionCheck, proof_plan
from cardperso.line.stations import CardInLine, QcStation, chip_check_steps
from cardperso.line.timing import LineTiming
from cardperso.line.usecases import import_batch, receive_stock, run_batch
from cardperso.line.visual import render_face, text_lines
from cardperso.production import operators, repo
from cardperso.production.db import Database, upgrade
from cardperso.production.fieldkeys import field_cipher
from cardperso.production.models import CardJob
from cardperso.production.models import Role as OpRole
from cardperso.production.operators import Principal
from cardperso.profiles.loader import load_builtin

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from line.kit import FaultPlan, hooks, misprinted

T = TypeVar("T")
TODAY = date(2026, 3, 2)
PASS = SecretStr("bench only, not secret")
FAST = operators.ScryptParams(n=2**10, r=8, p=1)

# fault kind -> (product, the check meant to catch it)
FAULTS = {
    "chip_data": ("debit", "command_response"),
    "wrong_key": ("debit", "hsm_check"),
    "blank_chip": ("debit", "command_response"),
    "misprint": ("debit", "vision"),
    "misprint_laser": ("employee", "vision"),
    "photo_swap": ("employee", "vision"),
    "wrong_track": ("debit", "magstripe"),
}
EVERY_CARD = QcConfig(ocr_every=1)


def _check_of(key: str) -> str:
    """The check a rejection came from, by its 'station: reason' key."""
    station, _, reason = key.partition(": ")
    if station in ("feeder", "init", "perso"):
        return station
    if station == "chip_check":
        return "command_response"
    if station == "magstripe":
        return "magstripe"
    return {"hsm check": "hsm_check", "vision": "vision", "crosscheck": "crosscheck"}.get(
        reason.split(":")[0], "qc"
    )


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.hsm = SoftHsm.create(
            work / "k.cpks", PASS, rng=RequestSeededRandom("bench qc"), scrypt_n=2**10
        )
        provision_demo_keys(self.hsm)
        url = f"sqlite:///{work / 'qc.sqlite3'}"
        upgrade(url)
        self.db = Database.open(url, synchronous="NORMAL")
        with self.db.transaction() as s:
            so = operators.create_operator(
                s,
                "officer",
                PASS,
                [OpRole.SECURITY_OFFICER],
                by=None,
                when=self.db.now(),
                params=FAST,
            )
            officer = Principal(so.id, so.name, so.role_set)
        with self.db.transaction() as s:
            for name, role in (("sup", OpRole.SUPERVISOR), ("op", OpRole.OPERATOR)):
                operators.create_operator(
                    s, name, PASS, [role], by=officer, when=self.db.now(), params=FAST
                )
        self.sup = operators.login(self.db, "sup", PASS)
        self.op = operators.login(self.db, "op", PASS)
        self.runs = 0

    def batch(self, product: str, count: int) -> tuple[int, str]:
        """Import ``count`` records and book stock; (batch id, stock seed)."""
        self.runs += 1
        path = self.work / f"{product}-{self.runs}.csv"
        generate_issuer_file(
            product, path, count, 100 + self.runs, today=TODAY, batch_id=f"QC-{self.runs}"
        )
        batch = import_batch(self.db, self.hsm, path, by=self.sup, today=TODAY).batch_id
        seed = f"qc-stock-{self.runs}"
        receive_stock(
            self.db, stock_serials(seed, 0, 2 * count + 20), by=self.op, lot=f"L{self.runs}"
        )
        return batch, seed

    def prepared(self, batch: int, limit: int) -> list[PreparedCard]:
        with self.db.reader() as s, self.hsm.session(Role.PERSONALIZATION, "bench") as session:
            cipher = field_cipher(session)
            jobs = s.scalars(select(CardJob).where(CardJob.batch_id == batch).limit(limit)).all()
            return [PreparedCard.from_line(repo.open_record(j, cipher)) for j in jobs]

    # -- detection ------------------------------------------------------------------------

    def detection(self, kind: str, count: int) -> dict[str, object]:
        product, meant = FAULTS[kind]
        batch, seed = self.batch(product, count)
        plan = FaultPlan(
            seed=7, rate=1.0, kinds=("misprint",) if kind.startswith("misp") else (kind,)
        )
        config = LineConfig(
            modules=2, seed="bench", qc=EVERY_CARD, max_cards=count, fail_limit=10**9, **hooks(plan)
        )  # type: ignore[arg-type]
        run = run_batch(
            self.db,
            self.hsm,
            batch,
            by=self.op,
            feeder=SimulatedFeeder(seed, fault=plan.reader),
            config=config,
        )
        by_check: Counter[str] = Counter()
        for key, n in run.rejected.items():
            by_check[_check_of(key)] += n
        return {
            "product": product,
            "meant_for": meant,
            "cards": run.cards,
            "detected_pct": round(100 * by_check[meant] / max(run.cards, 1), 2),
            "rejected_pct": round(100 * sum(by_check.values()) / max(run.cards, 1), 2),
            "rejected_by": dict(by_check),
        }

    def clean(self, product: str, count: int) -> dict[str, object]:
        batch, seed = self.batch(product, count)
        run = run_batch(
            self.db,
            self.hsm,
            batch,
            by=self.op,
            feeder=SimulatedFeeder(seed),
            config=LineConfig(modules=2, seed="bench", qc=EVERY_CARD),
        )
        rejected = sum(run.rejected.values())
        return {
            "cards": run.cards,
            "good": run.good,
            "false_reject_pct": round(100 * rejected / max(run.cards, 1), 3),
            "reasons": dict(run.rejected),
            "host_cpu_ms_per_card_line": round(run.host_cpu_ms_per_card(), 2),
        }

    # -- cost -----------------------------------------------------------------------------

    def costs(self, product: str, count: int) -> dict[str, object]:
        """Each check alone on ``count`` personalized cards: host CPU ms per card."""
        batch, _ = self.batch(product, count)
        cards = self.prepared(batch, count)
        profile = load_builtin(product)
        script = build_init_script(profile)
        feeder = SimulatedFeeder(f"cost-{product}")
        meter = CpuMeter()
        rng = SeededRandom("bench qc costs")
        init, perso, qc = (
            KeyCache(self.hsm.session(r, "bench"))
            for r in (Role.INITIALIZATION, Role.PERSONALIZATION, Role.QC)
        )
        proof = ChipProof(KeyCache(self.hsm.session(Role.QC, "bench qc")), rng)
        vision = VisionCheck(EVERY_CARD)
        station = QcStation(LineTiming(), EVERY_CARD)
        spent: Counter[str] = Counter()
        card_cpu: Counter[str] = Counter()

        def timed(name: str, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
            m0, c0 = meter.seconds, time.process_time()
            out = fn(*args, **kw)
            spent[name] += time.process_time() - c0
            card_cpu[name] += meter.seconds - m0
            return out

        def personalize(card: PreparedCard, reader: MeteredReader, raw: bytes) -> dict[str, bytes]:
            reader.reset()
            StepRunner("init", reader, init, raw, rng).run(script.steps(card.init_steps))
            runner = StepRunner("perso", reader, perso, raw, rng)
            runner.run(card.script)
            return runner.collected

        serials = stock_serials(f"cost-{product}", 0, len(cards))
        chars = 0
        for card, serial in zip(cards, serials, strict=True):
            raw = bytes.fromhex(serial)
            reader = MeteredReader(feeder.insert(serial, "bench"), meter)
            collected = timed("floor_chip_session", personalize, card, reader, raw)
            runner = StepRunner("chip_check", reader, qc, raw, rng)
            timed("command_response", runner.resume, chip_check_steps(card.script), 0)
            plan = proof_plan(profile, card)
            result = timed("hsm_check", proof.run, reader, serial, plan, collected)
            assert result.ok, result.reason
            line = CardInLine(0, 0, 1, "", serial, "bench", card)
            if card.tracks:
                check = timed("magstripe", encode_and_verify, SimulatedStripe(), card.tracks)
                line.stripe_pan = check.pan
            face = timed("floor_render_face", render_face, card.card_body)
            line.face = face
            seen = timed("vision_ocv_photo", vision.check, face, card.card_body, ocr=False)
            timed("vision_with_ocr", vision.check, face, card.card_body, ocr=True)
            timed("crosscheck", station._crosscheck, line, result, seen)
            chars += sum(len(t.text) for t in text_lines(card.card_body))
        n = len(cards)
        host = {k: (spent[k] - card_cpu[k]) * 1000 / n for k in spent}
        host["ocr_only"] = host["vision_with_ocr"] - host["vision_ocv_photo"]
        floor = host["floor_chip_session"]
        vision.close()
        return {
            "cards": n,
            "host_ms_per_card": {k: round(v, 3) for k, v in sorted(host.items())},
            "ratio_to_chip_session": {
                k: round(v / floor, 3) for k, v in sorted(host.items()) if not k.startswith("floor")
            },
            "characters_per_card": round(chars / n, 1),
        }

    def ocr_engines(self, cards: list[PreparedCard]) -> dict[str, object]:
        vision = VisionCheck(EVERY_CARD)
        strips = []
        for card in cards:
            face = render_face(card.card_body)
            lines = text_lines(card.card_body)
            boxes = [vision._box(line, face.image.size) for line in lines]
            strips.append(
                vision._strip(
                    [
                        vision._ocr_crop(face.image, ln, b)
                        for ln, b in zip(lines, boxes, strict=True)
                    ]
                )
            )
        reader = vision.reader
        c0 = time.process_time()
        for s in strips:
            reader.read_block(s, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ -'./&,")
        out: dict[str, object] = {
            "tesserocr_in_process_ms_per_card": round(
                (time.process_time() - c0) * 1000 / len(strips), 2
            ),
            "tesseract_version": reader.version,
        }
        vision.close()
        exe = shutil.which("tesseract")
        if exe is None:
            out["tesseract_process_per_card_ms"] = "no tesseract program"
            return out
        paths = []
        for i, strip in enumerate(strips):
            paths.append(self.work / f"strip-{i}.png")
            strip.save(paths[-1])
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c0 = time.process_time()
        for path in paths:  # what pytesseract does: one tesseract process per image
            subprocess.run(
                [exe, str(path), "stdout", "--psm", "6"],
                check=True,
                capture_output=True,
                env={**os.environ, "OMP_THREAD_LIMIT": "1"},
            )
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        child = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        out["tesseract_process_per_card_ms"] = round(
            (child + time.process_time() - c0) * 1000 / len(paths), 2
        )
        return out

    def vision_scores(self, product: str, count: int) -> dict[str, object]:
        """Lowest score of a clean card and highest of a faulty one (a misprint; another
        cardholder's photo), per vision score."""
        batch, _ = self.batch(product, count)
        cards = self.prepared(batch, count)
        vision = VisionCheck(EVERY_CARD)
        clean_min: dict[str, float | None] = {"ocr": 1.0, "ocv": 1.0, "photo": None}
        fault_max: dict[str, float | None] = {"ocr": 0.0, "ocv": 0.0, "photo": None}
        for i, card in enumerate(cards):
            body = card.card_body
            r = vision.check(render_face(body), body, ocr=True)
            clean_min["ocr"] = min(clean_min["ocr"] or 1.0, 1.0 if r.ocr is None else r.ocr)
            clean_min["ocv"] = min(clean_min["ocv"] or 1.0, r.ocv)
            m = vision.check(render_face(misprinted(body, random.Random(i))), body, ocr=True)
            fault_max["ocr"] = max(fault_max["ocr"] or 0.0, 0.0 if m.ocr is None else m.ocr)
            fault_max["ocv"] = max(fault_max["ocv"] or 0.0, m.ocv)
            other = cards[(i + 1) % len(cards)].card_body.photo
            if r.photo is not None and other is not None and other != body.photo:
                clean_min["photo"] = min(clean_min["photo"] or 1.0, r.photo)
                swapped = render_face(CardBodyData(body.emboss, body.laser, other))
                p = vision.check(swapped, body, ocr=False).photo
                fault_max["photo"] = max(fault_max["photo"] or 0.0, 0.0 if p is None else p)
        vision.close()
        return {
            "product": product,
            "cards": len(cards),
            "clean_min": {k: None if v is None else round(v, 5) for k, v in clean_min.items()},
            "faulty_max": {k: None if v is None else round(v, 5) for k, v in fault_max.items()},
        }


def main(faulted: int = 200, clean: int = 1000) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="cardperso-bench-qc-"))
    b = Bench(work)
    t0 = time.perf_counter()
    detection = {kind: b.detection(kind, faulted) for kind in FAULTS}
    clean_runs = {p: b.clean(p, clean) for p in ("debit", "employee", "sim")}
    costs = {p: b.costs(p, 200) for p in ("debit", "employee")}
    engines = b.ocr_engines(b.prepared(b.batch("debit", 40)[0], 40))
    scores = {p: b.vision_scores(p, 300) for p in ("debit", "employee", "sim")}
    cfg = QcConfig()
    b.db.dispose()
    b.hsm.close()
    return {
        "bench": "qc",
        "faulted_cards_per_kind": faulted,
        "detection": detection,
        "clean": clean_runs,
        "false_reject_pct": max(float(str(r["false_reject_pct"])) for r in clean_runs.values()),
        "host_ms_per_card": costs,
        "ocr_engines": engines,
        "vision": {
            "thresholds": {
                "ocr": cfg.ocr_threshold,
                "ocv": cfg.ocv_threshold,
                "photo": cfg.photo_threshold,
            },
            "default_cadence": {"vision_every": cfg.vision_every, "ocr_every": cfg.ocr_every},
            "scores": scores,
        },
        "wall_s": round(time.perf_counter() - t0, 1),
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(main(*args), indent=1))
