"""The batch line on a 10,000-card debit batch: wall time, host CPU, modeled throughput.

Prints one JSON object:

* ``wall_s`` - the line's run (import and reports excluded; ``import_s`` apart);
* ``host_cpu_ms_per_card`` - process CPU of the run per card, less the CPU spent
  inside the simulated cards (a real card computes on its own chip) and inside the
  other simulated machines (``simulated_ms_per_card``: the stripe encoder's heads,
  the embosser/laser/printer's raster, the QC camera's image analysis - each runs
  on its own controller on a real line); ``process_cpu_ms_per_card`` is all of it;
* ``floor`` - measured in the same run (DESIGN.md §7): ``card_session_ms_per_card``
  is the bare chip session of the same prepared cards (initialization,
  personalization and chip check through the HSM, no database, no other station)
  with the card simulation included; ``card_simulation_ms_per_card`` the card
  simulation alone; ``ratio_host_to_session_host`` = the line's host CPU per card /
  the bare session's host share (session less card simulation);
  ``ratio_line_to_session`` = process CPU per card / the bare session's;
* ``modeled_cards_per_hour`` - the pipeline model (:mod:`cardperso.line.timing`)
  over every card of the run, for 1, 4, 8 and 16 chip-encoding modules, each with
  its limiting station; ``modeled_at_9600_bps`` the same from a sample of cards
  run without PPS (9,600 bit/s), where the chip takes longer.

The run uses as many chip-module threads as the machine has cores (MODULES to
change it): a simulated card answers at once, so module threads never wait as real
ones do (~1 s per card on the chip), and more busy threads than cores would add the
interpreter lock's hand-overs to the host's cost. ``host_cpu_ms_per_card_8_module_threads``
gives that cost on a 2,000-card sample run with 8 module threads.

    python bench/line.py [COUNT] [MODULES]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from sqlalchemy import select

from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretStr
from cardperso.dataprep.init_script import build_init_script
from cardperso.dataprep.prepared import PreparedCard
from cardperso.dataprep.usecases import generate_issuer_file
from cardperso.hsm import RequestSeededRandom, Role, SoftHsm
from cardperso.line.bureau import provision_demo_keys
from cardperso.line.chip import KeyCache, StepRunner
from cardperso.line.feeder import CpuMeter, MeteredReader, SimulatedFeeder, stock_serials
from cardperso.line.orchestrator import LineConfig
from cardperso.line.stations import chip_check_steps
from cardperso.line.timing import pipeline
from cardperso.line.usecases import import_batch, receive_stock, run_batch
from cardperso.production import operators, repo
from cardperso.production.db import Database, upgrade
from cardperso.production.fieldkeys import field_cipher
from cardperso.production.models import CardJob
from cardperso.production.models import Role as OpRole
from cardperso.production.operators import Principal
from cardperso.profiles.loader import load_builtin

TODAY = date(2026, 3, 2)
PASS = SecretStr("bench only, not secret")
FAST = operators.ScryptParams(n=2**10, r=8, p=1)


def _staff(db: Database) -> tuple[Principal, Principal]:
    with db.transaction() as s:
        so = operators.create_operator(
            s, "officer", PASS, [OpRole.SECURITY_OFFICER], by=None, when=db.now(), params=FAST
        )
        officer = Principal(so.id, so.name, so.role_set)
    with db.transaction() as s:
        for name, role in (("sup", OpRole.SUPERVISOR), ("op", OpRole.OPERATOR)):
            operators.create_operator(s, name, PASS, [role], by=officer, when=db.now(), params=FAST)
    return operators.login(db, "sup", PASS), operators.login(db, "op", PASS)


def _bare_sessions(hsm: SoftHsm, cards: list[PreparedCard], seed: str) -> tuple[float, float]:
    """CPU per card of the chip session alone (and of its card simulation), in ms."""
    script = build_init_script(load_builtin("debit"))
    feeder = SimulatedFeeder(seed)
    meter = CpuMeter()
    rng = SeededRandom("bench floor")
    init = KeyCache(hsm.session(Role.INITIALIZATION, "floor"))
    pers = KeyCache(hsm.session(Role.PERSONALIZATION, "floor"))
    qc = KeyCache(hsm.session(Role.QC, "floor"))
    serials = stock_serials(seed, 10_000_000, len(cards))
    t0 = time.process_time()
    for card, serial in zip(cards, serials, strict=True):
        reader = MeteredReader(feeder.insert(serial, "floor"), meter)
        reader.reset()
        raw = bytes.fromhex(serial)
        StepRunner("init", reader, init, raw, rng).run(script.steps(card.init_steps))
        StepRunner("perso", reader, pers, raw, rng).run(card.script)
        StepRunner("chip_check", reader, qc, raw, rng).resume(chip_check_steps(card.script), 0)
        reader.close()
    total = (time.process_time() - t0) * 1000 / len(cards)
    return total, meter.seconds * 1000 / len(cards)


CROWD = 2_000
"""Cards of the sample run with 8 module threads."""


def main(count: int = 10_000, modules: int = os.cpu_count() or 2) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="cardperso-bench-line-"))
    hsm = SoftHsm.create(
        work / "k.cpks", PASS, rng=RequestSeededRandom("bench line"), scrypt_n=2**10
    )
    provision_demo_keys(hsm)
    url = f"sqlite:///{work / 'line.sqlite3'}"
    upgrade(url)
    db = Database.open(url, synchronous="NORMAL")
    sup, op = _staff(db)
    issuer = work / "issuer.csv"
    generate_issuer_file("debit", issuer, count, 2026, today=TODAY)
    t0 = time.perf_counter()
    imported = import_batch(db, hsm, issuer, by=sup, today=TODAY)
    import_s = time.perf_counter() - t0
    seed = "bench-stock"
    receive_stock(db, stock_serials(seed, 0, count + count // 10 + 20), by=op, lot="BENCH")
    run = run_batch(
        db,
        hsm,
        imported.batch_id,
        by=op,
        feeder=SimulatedFeeder(seed),
        config=LineConfig(modules=modules, seed="bench"),
    )
    # the floor: bare chip sessions of the same prepared cards, in the same process
    with db.reader() as s, hsm.session(Role.PERSONALIZATION, "bench") as session:
        cipher = field_cipher(session)
        jobs = s.scalars(
            select(CardJob).where(CardJob.batch_id == imported.batch_id).limit(300)
        ).all()
        sample = [PreparedCard.from_line(repo.open_record(j, cipher)) for j in jobs]
    session_ms, card_ms = _bare_sessions(hsm, sample, "bench-floor")
    # the same line at 9,600 bit/s (no PPS), on a sample, for the chip's share
    slow_batch = work / "slow.csv"
    generate_issuer_file("debit", slow_batch, 300, 99, today=TODAY, batch_id="SLOW-99")
    slow = import_batch(db, hsm, slow_batch, by=sup, today=TODAY)
    receive_stock(db, stock_serials("slow-stock", 0, 400), by=op, lot="SLOW")
    slow_run = run_batch(
        db,
        hsm,
        slow.batch_id,
        by=op,
        feeder=SimulatedFeeder("slow-stock", ta1=None),
        config=LineConfig(modules=modules, seed="bench"),
    )
    # the same line with 8 module threads, on a sample: simulated cards never wait, so
    # 8 threads on this machine's cores also measure the interpreter's lock changing
    # hands between busy threads (a real module waits ~1 s per card on its chip)
    crowd_file = work / "crowd.csv"
    generate_issuer_file("debit", crowd_file, CROWD, 77, today=TODAY, batch_id="CROWD-77")
    crowd = import_batch(db, hsm, crowd_file, by=sup, today=TODAY)
    receive_stock(db, stock_serials("crowd-stock", 0, CROWD + 100), by=op, lot="CROWD")
    crowd_run = run_batch(
        db,
        hsm,
        crowd.batch_id,
        by=op,
        feeder=SimulatedFeeder("crowd-stock"),
        config=LineConfig(modules=8, seed="bench"),
    )
    db.dispose()
    hsm.close()
    line_total_ms = run.cpu_s * 1000 / max(run.cards, 1)
    return {
        "bench": "line",
        "records": count,
        "cards": run.cards,
        "good": run.good,
        "rejected": sum(run.rejected.values()),
        "modules_run": modules,
        "batch_done": run.batch_done,
        "import_s": round(import_s, 2),
        "wall_s": round(run.wall_s, 2),
        "host_cpu_ms_per_card": round(run.host_cpu_ms_per_card(), 3),
        "simulated_ms_per_card": {
            "cards": round(run.card_cpu_ms_per_card(), 3),
            **{k: round(v, 3) for k, v in run.equipment_cpu_ms_per_card().items()},
        },
        "process_cpu_ms_per_card": round(line_total_ms, 3),
        "host_cpu_ms_per_card_8_module_threads": {
            "cards": crowd_run.cards,
            "good": crowd_run.good,
            "host_cpu_ms_per_card": round(crowd_run.host_cpu_ms_per_card(), 3),
        },
        "target_host_cpu_ms_per_card": 5.0,
        "floor": {
            "card_session_ms_per_card": round(session_ms, 3),
            "card_simulation_ms_per_card": round(card_ms, 3),
            "ratio_host_to_session_host": round(
                run.host_cpu_ms_per_card() / max(session_ms - card_ms, 1e-9), 2
            ),
            "ratio_line_to_session": round(line_total_ms / session_ms, 2),
        },
        "modeled_cards_per_hour": {
            str(n): {
                "cards_per_hour": round(r.cards_per_hour),
                "limiting_station": r.limiting_station,
            }
            for n in (1, 4, 8, 16)
            for r in [pipeline(run.stages, n)]
        },
        "modeled_station_load_s": run.modeled(1).station_load_s,
        "modeled_at_9600_bps": {
            str(n): {
                "cards_per_hour": round(r.cards_per_hour),
                "limiting_station": r.limiting_station,
            }
            for n in (1, 4, 8, 16)
            for r in [pipeline(slow_run.stages, n)]
        },
    }


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(main(*args), indent=1))
