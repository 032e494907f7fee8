"""Chip-script steps for files: select, write in pieces, read back; and access conditions.

Shared by the initialization script (:mod:`.init_script`) and the personalization
script (:mod:`.prepare`). A write of :class:`~cardperso.dataprep.filedata.FileWrite`
becomes SELECT by path from the MF, then UPDATE BINARY in pieces of at most
:data:`CHUNK` bytes (so a piece still fits a short APDU once wrapped for secure
messaging), or APPEND / UPDATE RECORD; optionally READ BINARY / READ RECORD with
the written bytes as the expected answer (the chapter's command/response check).

:class:`AccessState` says whether a file's access condition is met at some point
of a script: while the card is MANUFACTURED none is enforced (docs/card-os.md
§6); afterwards a condition is met by the terms the script has satisfied so far
(secure messaging, keys authenticated, PINs verified).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from cardperso.dataprep.filedata import FileWrite
from cardperso.dataprep.prepared import Step, StepKind
from cardperso.profiles.schema import FileNode, FileType, condition_byte
from cardperso.readers import cos

__all__ = ["CHUNK", "AccessState", "file_steps", "select_apdu"]

CHUNK = 223
"""Largest piece of file data per command: 223 bytes pad to 224 and wrap to 238 bytes
of protected data field (DO 87 of 228, DO 8E of 10), within a short APDU."""


@dataclass
class AccessState:
    """What a card's security status will be at one point of a script."""

    open: bool = False
    """The card is MANUFACTURED: access conditions are not enforced."""
    sm: bool = False
    keys: set[int] = field(default_factory=set)
    pins: set[int] = field(default_factory=set)

    def allows(self, condition: str | None) -> bool:
        """True if ``condition`` (a profile condition; None = never) is met now."""
        if self.open:
            return True
        if condition is None:
            return False
        byte = condition_byte(condition)
        if byte == cos.ALWAYS:
            return True
        if byte == cos.NEVER:
            return False
        ref = byte & 0x0F
        terms = []
        if byte & cos.SM_SC:
            terms.append(self.sm)
        if byte & 0x20:
            terms.append(ref in self.keys)
        if byte & 0x10:
            terms.append(ref in self.pins)
        if not terms:
            return False
        return all(terms) if byte & 0x80 else any(terms)

    @staticmethod
    def key_named(condition: str | None) -> int | None:
        """The key reference a condition names, if any."""
        if condition is None:
            return None
        byte = condition_byte(condition)
        return byte & 0x0F if byte not in (cos.ALWAYS, cos.NEVER) and byte & 0x20 else None


def select_apdu(path: tuple[int, ...]) -> bytes:
    """SELECT by path from the MF (no answer data), or the MF itself."""
    return cos.select_path(*path[1:]) if len(path) > 1 else cos.select_mf()


def _apdu(note: str, apdu: bytes, sm: bool, expect: bytes | None = None) -> Step:
    return Step(StepKind.APDU, note, apdu=apdu, sm=sm, expect_data=expect)


@lru_cache(maxsize=512)
def _select(name: str, path: tuple[int, ...], sm: bool) -> Step:
    return _apdu(f"SELECT {name}", select_apdu(path), sm)


@lru_cache(maxsize=1024)
def _read_binary(name: str, offset: int, size: int) -> tuple[str, bytes]:
    """Note and command of a READ BINARY check (the same for every card)."""
    return (
        f"READ BINARY {name} ({size} bytes at {offset}, check)",
        cos.read_binary(offset, size),
    )


@lru_cache(maxsize=256)
def _update_binary_header(offset: int) -> bytes:
    return cos.update_binary(b"", offset)


def _update_binary(piece: bytes, offset: int) -> bytes:
    """``cos.update_binary(piece, offset)``: the cached header, Lc and the data (a piece
    is at most :data:`CHUNK` bytes: a short APDU)."""
    return _update_binary_header(offset) + bytes([len(piece)]) + piece


def file_steps(
    node: FileNode,
    write: FileWrite,
    *,
    sm: bool,
    read_back: bool,
    records_present: int = 0,
) -> tuple[list[Step], int]:
    """Steps that write ``write`` into ``node`` (and read it back); the new record count.

    A record beyond those present is appended (blank FF records first if needed:
    this card OS writes only records that exist, docs/card-os.md §2.3).
    """
    name = write.file
    steps = [_select(name, write.path, sm)]
    data = write.data
    if node.type == FileType.LINEAR_FIXED:
        number = write.record or 1
        blank = b"\xff" * node.capacity()
        while records_present < number - 1:
            records_present += 1
            steps.append(_apdu(f"APPEND RECORD {name} (blank)", cos.append_record(blank), sm))
        if number > records_present:
            records_present = number
            steps.append(_apdu(f"APPEND RECORD {name} #{number}", cos.append_record(data), sm))
        else:
            steps.append(
                _apdu(f"UPDATE RECORD {name} #{number}", cos.update_record(number, data), sm)
            )
        if read_back:
            steps.append(
                _apdu(
                    f"READ RECORD {name} #{number} (check)",
                    cos.read_record(number, le=len(data)),
                    sm,
                    data,
                )
            )
        return steps, records_present
    for start in range(0, len(data), CHUNK):
        piece = data[start : start + CHUNK]
        offset = write.offset + start
        steps.append(
            _apdu(
                f"UPDATE BINARY {name} ({len(piece)} bytes at {offset})",
                _update_binary(piece, offset),
                sm,
            )
        )
    if read_back:
        for start in range(0, len(data), CHUNK):
            piece = data[start : start + CHUNK]
            note, command = _read_binary(name, write.offset + start, len(piece))
            steps.append(_apdu(note, command, sm, piece))
    return steps, records_present
