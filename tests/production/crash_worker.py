"""A production-line stand-in for the crash test: run as a separate process and killed.

    python crash_worker.py URL BATCH_ID MODULE SEED

Claims jobs and cards, records stations, sleeps a little inside each attempt (so a
kill usually lands with a card "in the module"), then marks the card good or rejects
it. Each step is its own transaction, as on a real line. Exits 0 when no job is left.
"""

from __future__ import annotations

import random
import sys
import time

from cardperso.production import repo
from cardperso.production.db import Database


def main(url: str, batch_id: int, module: str, seed: int) -> int:
    rng = random.Random(seed)
    db = Database.open(url)
    try:
        while True:
            with db.transaction() as s:
                att = repo.begin_attempt(s, batch_id, module, when=db.now())
                if att is None:
                    return 0
                att_id = att.id
            for station in ("init", "perso", "qc"):
                time.sleep(rng.uniform(0.001, 0.006))
                with db.transaction() as s:
                    repo.record_station(s, att_id, station, True, when=db.now())
            with db.transaction() as s:
                if rng.random() < 0.1:
                    repo.reject(s, att_id, station="qc", reason="vision", when=db.now())
                else:
                    repo.mark_good(s, att_id, when=db.now())
    finally:
        db.dispose()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
