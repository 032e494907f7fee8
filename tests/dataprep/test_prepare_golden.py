"""Golden batches: a seeded 100-record batch of each built-in product prepares to the same
bytes on every run, in one process or on two.

The issuer file comes from the seeded generator, the keystore holds known keys
(``prep_kit``) and the soft HSM draws each request's randomness from the seed and
the request (:class:`~cardperso.hsm.RequestSeededRandom`), so ``cards.jsonl`` is a
pure function of the inputs. ``GOLDEN`` holds its SHA-256 per product;
``golden/prepared_<product>.json`` holds the first card, pretty-printed, so a
change can be reviewed.

After a deliberate change: ``CARDPERSO_UPDATE_GOLDEN=1 pytest
tests/dataprep/test_prepare_golden.py`` rewrites the first-card files and fails
with the new SHA-256 values to paste into ``GOLDEN``; review the diff of the
first-card files before committing.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import date
from pathlib import Path

import pytest
from prep_kit import Keystore, make_keystore

from cardperso.dataprep.batch import prepare_file
from cardperso.dataprep.generator import write_issuer_file
from cardperso.profiles.loader import load_builtin

TODAY = date(2026, 3, 15)
SEED = 20260315
COUNT = 100
GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("CARDPERSO_UPDATE_GOLDEN") == "1"

GOLDEN = {
    "debit": "43ca96be8cd30ca7076a2c04c3c4ebd24b65f8590c7abde300f8f5ed40e1b3b9",
    "sim": "a509c655cf6006cbe0113c27fad4d3ccde4cd820a447d99f797219bc63cbb14f",
    "employee": "b1410bd0871cd000678121b46146676e4dd9ff5bb587e75386d16e67bb1befd6",
}


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    return make_keystore(tmp_path_factory.mktemp("keys"))


def _prepare(keystore: Keystore, product: str, out: Path, workers: int) -> bytes:
    out.mkdir(parents=True, exist_ok=True)
    src = out / f"{product}.csv"
    if not src.exists():
        write_issuer_file(
            load_builtin(product), src, COUNT, SEED, TODAY, batch_id=f"GOLD-{product}"
        )
    result = prepare_file(src, out / f"w{workers}", hsm=keystore.open, today=TODAY, workers=workers)
    assert result.prepared == COUNT and result.set_aside == 0
    return (result.folder / "cards.jsonl").read_bytes()


@pytest.mark.parametrize("product", sorted(GOLDEN))
def test_golden_batch(keystore: Keystore, product: str, tmp_path: Path) -> None:
    two = _prepare(keystore, product, tmp_path, workers=2)
    one = _prepare(keystore, product, tmp_path, workers=0)
    assert one == two, "the output depends on the number of workers"
    digest = hashlib.sha256(two).hexdigest()
    first = json.loads(two.splitlines()[0])
    path = GOLDEN_DIR / f"prepared_{product}.json"
    text = json.dumps(first, indent=1) + "\n"
    if UPDATE:
        path.write_text(text, encoding="ascii")
        if digest != GOLDEN[product]:
            pytest.fail(f'new golden value: "{product}": "{digest}",')
    assert path.read_text(encoding="ascii") == text
    assert digest == GOLDEN[product]


def test_a_second_run_is_byte_identical(keystore: Keystore, tmp_path: Path) -> None:
    a = _prepare(keystore, "sim", tmp_path / "a", workers=2)
    b = _prepare(keystore, "sim", tmp_path / "b", workers=2)
    assert a == b
