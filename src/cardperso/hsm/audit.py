"""The HSM audit log: append-only JSON lines, hash-chained so edits show.

One record per HSM call (DESIGN.md §4): time (from an injected clock), operation,
caller role and operator, the keys by label and KCV, the result (``ok`` or the
error class name) and a few non-secret details (a scheme, a format, a chip
serial, a custodian's name). Never key bytes, PINs, PANs or data.

Each line is the canonical JSON of one record (sorted keys, no spaces), and each
record carries ``seq`` (0, 1, 2, ...) and ``prev``, the SHA-256 of the previous
line's bytes (64 zeros for the first). :func:`verify_chain` recomputes the chain,
so an edited, deleted, inserted or reordered record breaks it at that point.
Removing or editing the *last* records leaves a shorter, self-consistent chain:
only an anchor kept elsewhere catches that, so :func:`verify_chain` takes the
expected head (the hash of the last line, :attr:`AuditLog.head`) and record count.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii as _json_str
from pathlib import Path
from typing import Any

from cardperso.errors import HsmError

__all__ = ["GENESIS", "AuditChainError", "AuditLog", "ChainReport", "Clock", "verify_chain"]

GENESIS = "0" * 64
"""The ``prev`` of the first record."""

Clock = Callable[[], datetime]
"""Injected wall clock (DESIGN.md §5)."""


class AuditChainError(HsmError):
    """The audit log cannot be read or its chain is broken; names the record number."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _line(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _plain(keys: Sequence[tuple[str, str]], detail: Mapping[str, str] | None) -> bool:
    """True if every key label, KCV and detail name and value is exactly a ``str``."""
    for label, kcv in keys:
        if type(label) is not str or type(kcv) is not str:
            return False
    if detail:
        for name, value in detail.items():
            if type(name) is not str or type(value) is not str:
                return False
    return True


def _record_line(
    seq: int,
    time: str,
    operation: str,
    role: str,
    operator: str,
    keys: Sequence[tuple[str, str]],
    result: str,
    prev: str,
    detail: Mapping[str, str] | None,
) -> bytes:
    """The canonical line of one record: byte-for-byte ``_line`` of its dict.

    Written out directly when every field is a plain ``str`` (``seq`` an ``int``),
    the hot path of every HSM call; anything else goes through ``json.dumps``. The
    members appear in sorted key order - detail (only if non-empty), keys,
    operation, operator, prev, result, role, seq, time - and strings are escaped
    by ``json``'s own ASCII string encoder, as ``json.dumps`` does.
    """
    if (
        type(seq) is int
        and type(time) is str
        and type(operation) is str
        and type(role) is str
        and type(operator) is str
        and type(result) is str
        and type(prev) is str
        and _plain(keys, detail)
    ):
        head = ""
        if detail:
            items = [f"{_json_str(k)}:{_json_str(v)}" for k, v in sorted(detail.items())]
            head = f'"detail":{{{",".join(items)}}},'
        listed = [f'{{"kcv":{_json_str(kcv)},"label":{_json_str(label)}}}' for label, kcv in keys]
        return (
            f'{{{head}"keys":[{",".join(listed)}],"operation":{_json_str(operation)},'
            f'"operator":{_json_str(operator)},"prev":{_json_str(prev)},'
            f'"result":{_json_str(result)},"role":{_json_str(role)},"seq":{seq},'
            f'"time":{_json_str(time)}}}'
        ).encode("ascii")
    record: dict[str, Any] = {
        "seq": seq,
        "time": time,
        "operation": operation,
        "role": role,
        "operator": operator,
        "keys": [{"label": label, "kcv": kcv} for label, kcv in keys],
        "result": result,
        "prev": prev,
    }
    if detail:
        record["detail"] = dict(detail)
    return _line(record)


def _last_line(path: Path) -> bytes | None:
    """The last non-empty line of ``path`` without reading the whole file."""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        chunk = b""
        pos = end
        while pos > 0:
            step = min(4096, pos)
            pos -= step
            fh.seek(pos)
            chunk = fh.read(step) + chunk
            stripped = chunk.rstrip(b"\n")
            cut = stripped.rfind(b"\n")
            if cut >= 0:
                return stripped[cut + 1 :]
        stripped = chunk.rstrip(b"\n")
        return stripped or None


class AuditLog:
    """Appends hash-chained records to a JSON-lines file; safe under threads and processes.

    Opening an existing log continues its chain from the last line. Each append
    is written and flushed to the operating system before the call returns;
    ``sync=True`` also fsyncs every record (slower; for logs that must survive a
    power cut). Several processes may hold the same log open (the worker
    processes of a batch, each with its own soft HSM on one keystore): every append
    takes an exclusive ``flock`` on the file and, if another process appended since,
    first continues the chain from the file's last line, so the chain stays one.
    """

    def __init__(self, path: Path | str, *, clock: Clock | None = None, sync: bool = False) -> None:
        self.path = Path(path)
        self._clock = clock or _utc_now
        self._sync = sync
        self._lock = threading.Lock()
        self._seq = 0
        self._head = GENESIS
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        # Unbuffered: each record is one write(2) on an O_APPEND descriptor.
        self._fh = os.fdopen(fd, "ab", buffering=0)
        self._fd = fd
        # Read the chain's end under the file lock: another process may be appending.
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            last = _last_line(self.path)
            if last is not None:
                try:
                    record = json.loads(last)
                    self._seq = int(record["seq"]) + 1
                except (ValueError, KeyError, TypeError):
                    self._fh.close()
                    raise AuditChainError(
                        "audit", "the audit log's last record is damaged"
                    ) from None
                self._head = _digest(last)
            self._known_size = os.lseek(fd, 0, os.SEEK_END)
        finally:
            if not self._fh.closed:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _resync(self) -> None:
        """Continue the chain from the file's last line (another process wrote it)."""
        last = _last_line(self.path)
        if last is None:  # pragma: no cover - the file only grows
            self._seq, self._head = 0, GENESIS
            return
        try:
            self._seq = int(json.loads(last)["seq"]) + 1
        except (ValueError, KeyError, TypeError):
            raise AuditChainError("audit", "the audit log's last record is damaged") from None
        self._head = _digest(last)

    @property
    def head(self) -> str:
        """SHA-256 of the last record written (the anchor for :func:`verify_chain`)."""
        with self._lock:
            return self._head

    @property
    def count(self) -> int:
        """Number of records in the log."""
        with self._lock:
            return self._seq

    def append(
        self,
        operation: str,
        role: str,
        operator: str,
        keys: Sequence[tuple[str, str]],
        result: str,
        detail: Mapping[str, str] | None = None,
    ) -> None:
        """Write one record. ``keys`` are (label, KCV) pairs; ``detail`` must hold no secret."""
        if not isinstance(keys, list | tuple):
            keys = list(keys)
        with self._lock:
            if self._fh.closed:
                raise AuditChainError(operation, "the audit log is closed")
            fd = self._fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                # The file's size (lseek is cheaper than fstat); a change since our
                # last record means another process appended.
                size = os.lseek(fd, 0, os.SEEK_END)
                if size != self._known_size:
                    self._resync()
                self._known_size = size + self._write(
                    operation, role, operator, keys, result, detail
                )
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _write(
        self,
        operation: str,
        role: str,
        operator: str,
        keys: Sequence[tuple[str, str]],
        result: str,
        detail: Mapping[str, str] | None,
    ) -> int:
        """Write the next record (the caller holds both locks); return its byte count."""
        line = _record_line(
            self._seq,
            self._clock().isoformat(),
            operation,
            role,
            operator,
            keys,
            result,
            self._head,
            detail,
        )
        data = line + b"\n"
        done = os.write(self._fd, data)
        while done < len(data):  # a regular file takes it all at once; continue a short write
            done += os.write(self._fd, data[done:])
        if self._sync:
            os.fsync(self._fd)
        self._head = _digest(line)
        self._seq += 1
        return len(data)

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.close()


@dataclass(frozen=True, slots=True)
class ChainReport:
    """A verified chain: how many records and the hash of the last one."""

    count: int
    head: str


def verify_chain(
    path: Path | str, *, expected_head: str | None = None, expected_count: int | None = None
) -> ChainReport:
    """Check every record's ``seq`` and ``prev``; raise :class:`AuditChainError` at the first fault.

    With ``expected_head`` / ``expected_count`` (an anchor kept outside the log)
    a truncated or edited tail is caught too.
    """
    prev = GENESIS
    count = 0
    with Path(path).open("rb") as fh:
        for number, raw in enumerate(fh):
            line = raw.rstrip(b"\n")
            try:
                record = json.loads(line)
                seq, link = record["seq"], record["prev"]
            except (ValueError, KeyError, TypeError):
                raise AuditChainError("verify_audit", f"record {number} is not valid") from None
            if line != _line(record):
                raise AuditChainError("verify_audit", f"record {number} is not in canonical form")
            if seq != number:
                raise AuditChainError("verify_audit", f"record {number} carries number {seq}")
            if link != prev:
                where = f"record {number - 1}" if number else "the start of the chain"
                raise AuditChainError("verify_audit", f"record {number} does not follow {where}")
            prev = _digest(line)
            count += 1
    if expected_count is not None and count != expected_count:
        raise AuditChainError(
            "verify_audit", f"the log holds {count} records, {expected_count} expected"
        )
    if expected_head is not None and prev != expected_head:
        raise AuditChainError("verify_audit", "the last record is not the expected one")
    return ChainReport(count, prev)
