"""Whole batches: accepted whole or refused whole, nothing left behind, both cores.

A refused batch - a bad record, a record the HSM refuses, a wrong record count, a
missing key - leaves the output folder exactly as it was (no batch folder, no
hidden partial folder). With ``set_aside`` the good records are prepared and the
bad ones listed. The workers share one audit chain.
"""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import pytest
from prep_kit import Keystore, lab_profile, make_keystore
from test_prepare_e2e import lab_record

from cardperso.dataprep.batch import prepare_file
from cardperso.dataprep.generator import write_issuer_file
from cardperso.dataprep.issuer_file import BatchHeader, BatchRefused, Policy
from cardperso.dataprep.secrets import PrepKeys
from cardperso.errors import ConfigError, InputError
from cardperso.hsm import verify_chain
from cardperso.profiles.loader import load_builtin
from cardperso.profiles.schema import Profile

TODAY = date(2026, 3, 15)


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    return make_keystore(tmp_path_factory.mktemp("keys"))


def lab_resolver(name: str, version: int) -> Profile:
    if name == "lab":
        return lab_profile()
    from cardperso.dataprep.issuer_file import builtin_resolver

    return builtin_resolver(name, version)


def lab_file(path: Path, records: list[dict[str, str]], count: int | None = None) -> Path:
    header = BatchHeader("LAB-BANK", "LAB-7", "lab", 1, len(records) if count is None else count)
    lines = [header.jsonl_line()] + [json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def debit_file(path: Path, count: int, seed: int = 3) -> Path:
    write_issuer_file(load_builtin("debit"), path, count, seed, TODAY, batch_id="DEBIT-B1")
    return path


def test_a_batch_folder_with_cards_init_script_and_manifest(
    keystore: Keystore, tmp_path: Path
) -> None:
    src = debit_file(tmp_path / "debit.csv", 450)
    out = tmp_path / "out"
    r = prepare_file(src, out, hsm=keystore.open, today=TODAY, chunk_size=64)
    assert (r.records, r.prepared, r.set_aside) == (450, 450, 0)
    assert everything(out) == [
        "DEBIT-B1",
        "DEBIT-B1/cards.jsonl",
        "DEBIT-B1/init.json",
        "DEBIT-B1/manifest.json",
    ]
    lines = (r.folder / "cards.jsonl").read_bytes().splitlines()
    assert [json.loads(x)["record"]["seq"] for x in lines] == list(range(1, 451))
    manifest = json.loads((r.folder / "manifest.json").read_text())
    assert manifest["prepared"] == 450 and manifest["cards"]["sha256"] == r.cards_sha256
    assert {k["label"] for k in manifest["hsm_keys"]} >= {"CARD.SECRET", "ZPK.PRINT", "PDK.DEBIT"}
    init = json.loads((r.folder / "init.json").read_text())
    assert [s["note"] for s in init["keys"]] == [
        "PUT KEY KD_PERSO (KD from KM.DEBIT.PERSO and the chip serial, ref 1)",
        "PUT KEY KD_ADMIN (KD from KM.DEBIT.ADMIN and the chip serial, ref 2)",
    ]
    # Both workers and this process wrote into one audit chain, which verifies.
    audit = keystore.path.with_name(keystore.path.name + ".audit.jsonl")
    records = [json.loads(x) for x in audit.read_text().splitlines()]
    assert verify_chain(audit).count == len(records)
    batches = [x for x in records if x["operation"] == "card_secrets"]
    assert sum(int(x["detail"]["requests"]) for x in batches[-8:]) == 450 * 4
    with pytest.raises(ConfigError, match="prepared already"):
        prepare_file(src, out, hsm=keystore.open, today=TODAY)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bad_record_refuses_the_batch_and_leaves_nothing(
    keystore: Keystore, tmp_path: Path, workers: int
) -> None:
    src = debit_file(tmp_path / "debit.csv", 300)
    text = src.read_text().splitlines()
    cells = text[250].split(",")
    cells[0] = cells[0][:-1] + str((int(cells[0][-1]) + 1) % 10)  # break the Luhn digit
    text[250] = ",".join(cells)
    src.write_text("\n".join(text) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BatchRefused) as info:
        prepare_file(src, out, hsm=keystore.open, today=TODAY, workers=workers, chunk_size=50)
    assert (info.value.line, info.value.field) == (251, "pan")
    assert everything(out) == []


def test_a_record_the_hsm_refuses(keystore: Keystore, tmp_path: Path) -> None:
    good = [lab_record("1357", bytes(range(16)), n) for n in range(1, 6)]
    bad = dict(good[2], pin_block="00" * 8)  # not a PIN block under ZPK.LAB
    records = [*good[:2], bad, *good[3:]]
    src = lab_file(tmp_path / "lab.jsonl", records)
    out = tmp_path / "out"
    with pytest.raises(BatchRefused) as info:
        prepare_file(src, out, hsm=keystore.open, today=TODAY, resolver=lab_resolver)
    e = info.value
    assert (e.file, e.line, e.field) == ("lab.jsonl", 4, "pin_block")
    assert "the security module refused it" in str(e)
    assert not out.exists() or everything(out) == []
    # Set aside instead: the other four are prepared, the bad one is reported.
    r = prepare_file(
        src, out, hsm=keystore.open, today=TODAY, resolver=lab_resolver, policy=Policy.SET_ASIDE
    )
    assert (r.prepared, r.set_aside) == (4, 1)
    seqs = [
        json.loads(x)["record"]["seq"] for x in (r.folder / "cards.jsonl").read_text().splitlines()
    ]
    assert seqs == [1, 2, 4, 5]
    report = (r.folder / "exceptions.txt").read_text()
    assert "lab.jsonl:4, field 'pin_block': the security module refused it" in report


def test_a_wrong_record_count_leaves_nothing(keystore: Keystore, tmp_path: Path) -> None:
    records = [lab_record("2468", bytes(range(16)), n) for n in range(1, 4)]
    src = lab_file(tmp_path / "lab.jsonl", records, count=4)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BatchRefused, match="header says 4 records, the file has 3"):
        prepare_file(src, out, hsm=keystore.open, today=TODAY, resolver=lab_resolver)
    assert everything(out) == []


def test_a_missing_key_is_a_config_error_before_any_work(
    keystore: Keystore, tmp_path: Path
) -> None:
    src = debit_file(tmp_path / "debit.csv", 10)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConfigError, match=r"print_key: no HSM key labelled 'ZPK\.NOWHERE'"):
        prepare_file(
            src, out, hsm=keystore.open, today=TODAY, keys=PrepKeys(print_key="ZPK.NOWHERE")
        )
    with pytest.raises(ConfigError, match="usage PIN_ENCRYPTION, CARD_SECRET needed"):
        prepare_file(
            src, out, hsm=keystore.open, today=TODAY, keys=PrepKeys(card_secret="ZPK.PRINT")
        )
    assert everything(out) == []


def test_a_stream_source(keystore: Keystore, tmp_path: Path) -> None:
    buf = io.BytesIO()
    write_issuer_file(load_builtin("employee"), buf, 5, 1, TODAY, batch_id="EMP/2026/1")
    buf.seek(0)
    r = prepare_file(buf, tmp_path, hsm=keystore.open, today=TODAY, name="emp.csv", workers=1)
    assert r.folder.name == "EMP_2026_1" and r.prepared == 5


def test_bad_input_names_file_line_and_field(keystore: Keystore, tmp_path: Path) -> None:
    records = [lab_record("2468", bytes(range(16)), n) for n in range(1, 3)]
    records[1]["card_key"] = "00" * 40  # neither a 16/24/32-byte cryptogram nor a TR-31 block
    src = lab_file(tmp_path / "lab.jsonl", records)
    with pytest.raises(InputError) as info:
        prepare_file(src, tmp_path / "o", hsm=keystore.open, today=TODAY, resolver=lab_resolver)
    assert (info.value.line, info.value.field) == (3, "card_key")
