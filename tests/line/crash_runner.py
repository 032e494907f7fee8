"""The real line as a separate process, for the crash test: it is killed with SIGKILL.

    python crash_runner.py DB_URL KEYSTORE BATCH_ID STOCK_SEED OPERATOR MODULES

Logs the operator in, opens the soft HSM, resumes the batch (recovering what the
last kill left) and runs the line. Prints ``started`` once the line is about to
run and ``card <n>`` as each card leaves the line, flushing each line, so the test
can kill it at a point of its choosing. Exits 0 when no job is left.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cardperso.line.feeder import SimulatedFeeder
from cardperso.line.orchestrator import LineConfig, LineProgress
from cardperso.line.usecases import run_batch
from cardperso.production import operators
from cardperso.production.db import Database
from line.kit import open_hsm
from production.support import PASSWORD


def main(url: str, keystore: str, batch_id: int, seed: str, operator: str, modules: int) -> int:
    db = Database.open(url, synchronous="NORMAL")
    hsm = open_hsm(Path(keystore))
    try:
        who = operators.login(db, operator, PASSWORD)

        def progress(p: LineProgress) -> None:
            print(f"card {p.cards}", flush=True)

        print("started", flush=True)
        config = LineConfig(modules=modules, buffer=2, progress_every_s=0.0)
        result = run_batch(
            db,
            hsm,
            batch_id,
            by=who,
            feeder=SimulatedFeeder(seed),
            config=config,
            progress=progress,
        )
        print(f"done {result.batch_done}", flush=True)
        return 0
    finally:
        hsm.close()
        db.dispose()


if __name__ == "__main__":
    a = sys.argv
    sys.exit(main(a[1], a[2], int(a[3]), a[4], a[5], int(a[6])))
