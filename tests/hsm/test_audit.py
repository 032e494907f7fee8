"""The audit log: one record per call, hash-chained; edits, deletions and reorders show."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cardperso.hsm import (
    AuditChainError,
    KeyAlgorithm,
    KeyUsage,
    PermissionDeniedError,
    Role,
    SoftHsm,
    verify_chain,
)
from cardperso.hsm.audit import GENESIS, AuditLog

from .conftest import PASSPHRASE
from .support import Harness, TickClock


def fill(path: Path, n: int = 6) -> AuditLog:
    log = AuditLog(path, clock=TickClock())
    for i in range(n):
        log.append("generate_mac", "dataprep", "station 1", [(f"k{i}", "ABCDEF")], "ok")
    return log


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_a_fresh_chain_verifies(tmp_path: Path) -> None:
    log = fill(tmp_path / "a.jsonl")
    report = verify_chain(log.path, expected_head=log.head, expected_count=log.count)
    assert report.count == 6 and report.head == log.head
    first = json.loads(lines(log.path)[0])
    assert first["prev"] == GENESIS and first["seq"] == 0
    assert first["time"] == "2026-03-01T09:00:01+00:00"
    assert set(first) == {"seq", "time", "operation", "role", "operator", "keys", "result", "prev"}


def test_an_edited_record_is_detected(tmp_path: Path) -> None:
    log = fill(tmp_path / "a.jsonl")
    text = lines(log.path)
    text[2] = text[2].replace('"result":"ok"', '"result":"KeyUsageError"')
    log.path.write_text("".join(text))
    with pytest.raises(AuditChainError, match="record 3 does not follow record 2"):
        verify_chain(log.path)


def test_an_edit_in_canonical_json_with_a_new_hash_is_still_detected(tmp_path: Path) -> None:
    log = fill(tmp_path / "a.jsonl")
    text = lines(log.path)
    record = json.loads(text[1])
    record["operator"] = "someone else"
    text[1] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    log.path.write_text("".join(text))
    with pytest.raises(AuditChainError, match="record 2"):
        verify_chain(log.path)


def test_a_deleted_record_is_detected(tmp_path: Path) -> None:
    log = fill(tmp_path / "a.jsonl")
    text = lines(log.path)
    del text[3]
    log.path.write_text("".join(text))
    with pytest.raises(AuditChainError, match="record 3 carries number 4"):
        verify_chain(log.path)


def test_reordered_records_are_detected(tmp_path: Path) -> None:
    log = fill(tmp_path / "a.jsonl")
    text = lines(log.path)
    text[1], text[2] = text[2], text[1]
    log.path.write_text("".join(text))
    with pytest.raises(AuditChainError, match="record 1"):
        verify_chain(log.path)


def test_a_cut_tail_needs_the_anchor(tmp_path: Path) -> None:
    log = fill(tmp_path / "a.jsonl")
    head, count = log.head, log.count
    log.close()
    log.path.write_text("".join(lines(log.path)[:-2]))
    assert verify_chain(log.path).count == 4  # consistent by itself...
    with pytest.raises(AuditChainError, match="4 records, 6 expected"):
        verify_chain(log.path, expected_count=count)
    with pytest.raises(AuditChainError, match="last record"):
        verify_chain(log.path, expected_head=head)


def test_garbage_is_reported_by_record_number(tmp_path: Path) -> None:
    log = fill(tmp_path / "a.jsonl", 2)
    with log.path.open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(AuditChainError, match="record 2 is not valid"):
        verify_chain(log.path)
    log.path.write_text(lines(log.path)[0].replace(":", ": ", 1) + "".join(lines(log.path)[1:2]))
    with pytest.raises(AuditChainError, match="canonical"):
        verify_chain(log.path)


def test_reopening_continues_the_chain(tmp_path: Path) -> None:
    log = fill(tmp_path / "a.jsonl", 3)
    log.close()
    again = fill(tmp_path / "a.jsonl", 2)
    assert again.count == 5
    assert verify_chain(again.path, expected_head=again.head).count == 5


def test_appends_from_threads_keep_one_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "t.jsonl", clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def worker(n: int) -> None:
        for i in range(200):
            log.append("op", "qc", f"thread {n}", [], "ok", {"i": str(i)})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verify_chain(log.path, expected_head=log.head, expected_count=1600).count == 1600


def test_every_hsm_call_leaves_one_record(hsm: Harness) -> None:
    assert hsm.audit is not None
    before = len(lines(hsm.audit))
    mac = hsm.new("m", KeyAlgorithm.AES_128, KeyUsage.MAC)
    dp = hsm.session(Role.DATAPREP)
    dp.generate_mac(mac, b"x")
    with pytest.raises(PermissionDeniedError):
        dp.kd_for_initialization(mac, b"serial")
    records = [json.loads(x) for x in lines(hsm.audit)[before:]]
    assert [(r["operation"], r["role"], r["result"]) for r in records] == [
        ("generate_key", "security_officer", "ok"),
        ("generate_mac", "dataprep", "ok"),
        ("kd_for_initialization", "dataprep", "PermissionDeniedError"),
    ]
    assert records[1]["keys"] == [{"label": "m", "kcv": mac.kcv}]
    assert records[1]["operator"] == "test-dataprep"


def test_soft_hsm_verifies_its_own_log_and_refuses_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "k.cpks"
    with SoftHsm.create(path, PASSPHRASE, scrypt_n=2**10) as hsm:
        hsm.session(Role.SECURITY_OFFICER, "o").list_keys()
        assert hsm.verify_audit().count == 2
    with SoftHsm.open(path, PASSPHRASE) as hsm:
        assert hsm.verify_audit().count == 3
    SoftHsm.default_audit_path(path).unlink()
    with pytest.raises(AuditChainError, match="missing"):
        SoftHsm.open(path, PASSPHRASE)
