"""The cheap per-call paths: SM channels with kept ciphers, the direct audit line writer,
the class-based audited call scope. Each must be indistinguishable from what it replaced:
the same wire bytes, the same audit lines, the same records and errors.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardperso import securemsg
from cardperso.apdu import CommandAPDU, parse_command
from cardperso.crypto.ciphers import CipherError
from cardperso.errors import CardpersoError, HsmError
from cardperso.hsm import KeyAlgorithm, KeyUsage, PermissionDeniedError, Role, verify_chain
from cardperso.hsm.audit import GENESIS, AuditLog, _line, _record_line
from cardperso.hsm.roles import Operation

from .support import Harness

# --- secure messaging ------------------------------------------------------------------

# SHA-256 of sm_transcript() as the code wrote it before the channels kept their
# ciphers (ciphers rebuilt on every call, CMAC block by block).
SM_TRANSCRIPT_SHA256 = "463b79b385b73ac48793ea5a2ce174bb686782b8673e6da732d432da901ba32d"
CHANNEL_KEYS = (
    ("AES", bytes(range(16)), bytes(range(16, 32))),
    ("AES", bytes(range(32)), bytes(range(32, 64))),
    ("TDES", bytes(range(40, 56)), bytes(range(56, 72))),
)


def sm_transcript() -> bytes:
    """Cryptograms, protected commands and responses of three sessions, both ends."""
    out = []
    for family, k_enc, k_mac in CHANNEL_KEYS:
        host = securemsg.SmChannel(family, k_enc, k_mac)
        card = securemsg.SmChannel(family, k_enc, k_mac)
        out.append(securemsg.card_cryptogram(family, k_mac, b"\x11" * 8, b"\x22" * 8))
        out.append(securemsg.host_cryptogram(family, k_mac, b"\x11" * 8, b"\x22" * 8))
        for n in (0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 100, 255):
            for le in (0, 1, 256, 300):
                data = bytes((i * 7 + n) & 0xFF for i in range(n))
                cmd = CommandAPDU(0x00, 0xDA, n & 0xFF, le & 0xFF, data, le)
                wrapped = host.wrap_command(cmd)
                out.append(wrapped)
                assert card.unwrap_command(parse_command(wrapped)) == (data, le)
                sw = 0x9000 if n % 2 else 0x6A82
                resp = card.wrap_response(data[::-1], sw)
                out.append(resp)
                assert host.unwrap_response(resp, 0x9000) == (data[::-1], sw)
    return b"".join(out)


def test_sm_wire_bytes_are_unchanged() -> None:
    assert hashlib.sha256(sm_transcript()).hexdigest() == SM_TRANSCRIPT_SHA256


@pytest.mark.parametrize(
    ("family", "k_enc", "k_mac"), CHANNEL_KEYS, ids=["aes128", "aes256", "tdes"]
)
def test_channel_mac_equals_session_mac(family: str, k_enc: bytes, k_mac: bytes) -> None:
    ch = securemsg.SmChannel(family, k_enc, k_mac)
    for n in range(0, 40, 3):
        data = bytes(range(n))
        assert ch._session_mac(data) == securemsg.session_mac(family, k_mac, data)


def test_replaced_keys_are_used_not_the_kept_ciphers() -> None:
    fam, e1, m1 = CHANNEL_KEYS[0]
    e2, m2 = bytes(16), bytes(16)
    cmd = CommandAPDU(0x00, 0xDA, 1, 2, b"data", 0)
    ch = securemsg.SmChannel(fam, e1, m1)
    ch.wrap_command(cmd)
    ch.k_enc, ch.k_mac = e2, m2
    fresh = securemsg.SmChannel(fam, e2, m2, ssc=ch.ssc)
    assert ch.wrap_command(cmd) == fresh.wrap_command(cmd)


def test_kept_ciphers_change_neither_equality_nor_repr() -> None:
    family, k_enc, k_mac = CHANNEL_KEYS[0]
    used = securemsg.SmChannel(family, k_enc, k_mac)
    used.wrap_command(CommandAPDU(0x00, 0xB0, 0, 0, b"", 8))
    fresh = securemsg.SmChannel(family, k_enc, k_mac, ssc=1)
    assert used == fresh
    assert repr(used) == repr(fresh) == "SmChannel(AES, key_ref=0, ssc=1)"
    assert k_enc.hex() not in repr(used) and k_mac.hex() not in repr(used)


# --- the audit line --------------------------------------------------------------------

# any code point, lone surrogates included (json escapes those too)
_TEXT = st.text(st.characters(exclude_categories=()), max_size=12) | st.text(max_size=12)


def _record(
    seq: int,
    time: str,
    op: str,
    role: str,
    operator: str,
    keys: list[tuple[str, str]],
    result: str,
    prev: str,
    detail: dict[str, str] | None,
) -> dict[str, Any]:
    """The record dict exactly as AuditLog built it before the direct writer."""
    record: dict[str, Any] = {
        "seq": seq,
        "time": time,
        "operation": op,
        "role": role,
        "operator": operator,
        "keys": [{"label": label, "kcv": kcv} for label, kcv in keys],
        "result": result,
        "prev": prev,
    }
    if detail:
        record["detail"] = dict(detail)
    return record


@settings(max_examples=300)
@given(
    st.integers(0, 2**40),
    _TEXT,
    _TEXT,
    _TEXT,
    _TEXT,
    st.lists(st.tuples(_TEXT, _TEXT), max_size=3),
    _TEXT,
    st.sampled_from([GENESIS, "ab" * 32]),
    st.none() | st.dictionaries(_TEXT, _TEXT, max_size=4),
)
def test_direct_line_equals_canonical_json(
    seq: int,
    time: str,
    op: str,
    role: str,
    operator: str,
    keys: list[tuple[str, str]],
    result: str,
    prev: str,
    detail: dict[str, str] | None,
) -> None:
    args = (seq, time, op, role, operator, keys, result, prev, detail)
    assert _record_line(*args) == _line(_record(*args))


def test_odd_values_take_the_json_path() -> None:
    from enum import StrEnum

    class Op(StrEnum):
        X = "x\u00e9"

    base = [1, "t", "op", "role", "who", [("k", "K")], "ok", GENESIS, {"a": "b"}]
    for i, odd in ((2, Op.X), (8, {"n": 3}), (8, {"a": None}), (5, [("k", 7)]), (0, True)):
        args: list[Any] = list(base)
        args[i] = odd
        assert _record_line(*args) == _line(_record(*args))


def test_append_writes_canonical_lines_and_takes_any_key_iterable(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl", clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    keys = iter([("k1", "AAAAAA"), ("k2", "BBBBBB")])  # not a Sequence: iterated once
    log.append("op", "qc", "who", keys, "ok", {"z": "1"})  # type: ignore[arg-type]
    log.append("op", "qc", "who \u2603\n", (), "ValueError", {})
    log.close()
    raw = (tmp_path / "a.jsonl").read_bytes().splitlines()
    records = [json.loads(x) for x in raw]
    assert [_line(r) for r in records] == raw
    assert records[0]["keys"] == [
        {"label": "k1", "kcv": "AAAAAA"},
        {"label": "k2", "kcv": "BBBBBB"},
    ]
    assert "detail" not in records[1] and records[1]["operator"] == "who \u2603\n"
    assert records[1]["prev"] == hashlib.sha256(raw[0]).hexdigest()
    assert verify_chain(tmp_path / "a.jsonl").count == 2


def test_a_closed_log_refuses_appends(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    log.close()
    with pytest.raises(HsmError, match="closed"):
        log.append("op", "qc", "who", [], "ok")


_WORKER = textwrap.dedent(
    """
    import sys
    from cardperso.hsm.audit import AuditLog
    log = AuditLog(sys.argv[1])
    for i in range(int(sys.argv[2])):
        log.append("op", "qc", "process " + sys.argv[3], [("k", "ABCDEF")], "ok", {"i": str(i)})
    log.close()
    """
)


def test_appends_from_processes_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    mine = AuditLog(path)
    mine.append("op", "qc", "parent", [], "ok")
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(path), "300", str(n)])
        for n in range(3)
    ]
    ours = 1
    while any(p.poll() is None for p in procs):  # interleaved: an append may resync first
        mine.append("op", "qc", "parent", [], "ok", {"i": str(ours)})
        ours += 1
    assert all(p.wait(timeout=60) == 0 for p in procs)
    mine.append("op", "qc", "parent", [], "ok")
    total = ours + 1 + 900
    assert verify_chain(path, expected_head=mine.head, expected_count=total).count == total
    assert mine.count == total
    mine.close()
    operators = [json.loads(x)["operator"] for x in path.read_bytes().splitlines()]
    assert operators[0] == operators[-1] == "parent"
    assert set(operators) == {"parent", "process 0", "process 1", "process 2"}


# --- the audited call scope ------------------------------------------------------------


def _records(h: Harness) -> list[dict[str, Any]]:
    assert h.audit is not None
    return [json.loads(x) for x in h.audit.read_text().splitlines()]


@pytest.fixture
def pers(hsm: Harness) -> Iterator[Any]:
    yield hsm.session(Role.PERSONALIZATION)


@pytest.mark.parametrize(
    ("raised", "result", "message"),
    [
        (CipherError("field x: bad length"), "CipherError", "field x: bad length"),
        (CardpersoError("rule y broken"), "CardpersoError", "rule y broken"),
        (ValueError("secret 1234 in here"), "ValueError", "invalid argument"),
        (TypeError("secret 1234 in here"), "TypeError", "invalid argument"),
    ],
)
def test_recipe_errors_become_hsm_errors_after_one_record(
    hsm: Harness, pers: Any, raised: Exception, result: str, message: str
) -> None:
    before = len(_records(hsm))
    with pytest.raises(HsmError) as info, pers._call(Operation.CARD_SM_WRAP, detail={"a": "b"}):
        raise raised
    e = info.value
    assert type(e) is HsmError and message in str(e) and "1234" not in str(e)
    assert e.__cause__ is None and e.__suppress_context__
    new = _records(hsm)[before:]
    assert [(r["operation"], r["result"], r["detail"]) for r in new] == [
        ("card_sm_wrap", result, {"a": "b"})
    ]


def test_hsm_errors_pass_through_and_others_are_not_caught(hsm: Harness, pers: Any) -> None:
    before = len(_records(hsm))
    err = HsmError("card_sm_wrap", "as raised")
    with pytest.raises(HsmError) as info, pers._call(Operation.CARD_SM_WRAP):
        raise err
    assert info.value is err
    with pytest.raises(KeyError), pers._call(Operation.CARD_SM_WRAP):
        raise KeyError("unmapped")  # as before: not a recipe error, not recorded
    with pers._call(Operation.CARD_SM_WRAP) as c:
        c.detail["sw"] = "9000"
    assert [(r["result"], r.get("detail")) for r in _records(hsm)[before:]] == [
        ("HsmError", None),
        ("ok", {"sw": "9000"}),
    ]


def test_entry_checks_are_recorded_and_a_closed_session_is_not(hsm: Harness) -> None:
    mac = hsm.new("m", KeyAlgorithm.AES_128, KeyUsage.MAC)
    dp = hsm.session(Role.DATAPREP)
    before = len(_records(hsm))
    with pytest.raises(PermissionDeniedError):
        dp.kd_for_initialization(mac, b"serial")
    with pytest.raises(HsmError, match="usage"):
        dp.encrypt_data(mac, b"x", bytes(16))
    new = _records(hsm)[before:]
    assert [(r["operation"], r["result"], r["keys"]) for r in new] == [
        ("kd_for_initialization", "PermissionDeniedError", [{"label": "m", "kcv": mac.kcv}]),
        ("encrypt_data", "KeyUsageError", [{"label": "m", "kcv": mac.kcv}]),
    ]
    dp.close()
    with pytest.raises(HsmError, match="closed"):
        dp.generate_mac(mac, b"x")
    assert len(_records(hsm)) == before + 2
