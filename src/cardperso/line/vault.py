"""The simulated card vault: initialized cards kept between runs.

On a real floor, cards initialized in the initialization room go onto a shelf in
the secure store, as pre-initialized stock, and come back weeks later to a
personalization line's feeder. The simulation has no physical card to keep, so the
vault keeps what stands for one: the chip's whole EEPROM, one file per chip serial.
:class:`~cardperso.line.feeder.SimulatedFeeder` puts the stored card into the
slot when the vault holds its serial, and a blank card of that serial otherwise.

**The files hold secrets, as the cards do.** An initialized card's EEPROM carries
its KD (and any transport PIN) in the clear; so does a real initialized card's, and
the bureau protects that stock as it protects the cards themselves. The vault's
files are therefore written owner-only (mode ``0600``, folder ``0700``), atomically
(a temporary file renamed into place), and belong in the run's work folder, never
in a shared place; deleting the folder destroys the "cards". Nothing else in
cardperso writes key bytes outside the HSM: this is the simulated card, not host
data, and no log, database row or report ever quotes a file's contents.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

__all__ = ["CardVault"]

_SERIAL = re.compile(r"^[0-9A-F]{2,40}$")
SUFFIX = ".eeprom"


class CardVault:
    """Stored cards by chip serial (upper-case hex) in one folder."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def _path(self, serial: str) -> Path:
        text = serial.strip().upper()
        if not _SERIAL.match(text):
            raise ValueError("a chip serial is upper-case hex")
        return self.folder / f"{text}{SUFFIX}"

    def holds(self, serial: str) -> bool:
        return self._path(serial).is_file()

    def load(self, serial: str) -> bytes | None:
        """The stored card's memory, or None if the vault does not hold it."""
        try:
            return self._path(serial).read_bytes()
        except FileNotFoundError:
            return None

    def store(self, serial: str, memory: bytes) -> Path:
        """Keep a card (replacing an earlier copy of the same card); owner-only file."""
        path = self._path(serial)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(memory)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return path

    def remove(self, serial: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(serial).unlink()

    def serials(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in self.folder.glob(f"*{SUFFIX}"))

    def __repr__(self) -> str:
        return f"CardVault({str(self.folder)!r})"
