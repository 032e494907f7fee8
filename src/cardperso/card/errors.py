"""Card-side exceptions. Handlers raise :class:`CardError`; the dispatcher turns it
into a status word. :class:`PowerLost` models the supply going away mid-command."""

from __future__ import annotations

__all__ = ["CardError", "PowerLost"]


class CardError(Exception):
    """Abort the current command with status word ``sw`` (never carries secrets)."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"SW {sw:04X}")
        self.sw = sw


class PowerLost(Exception):
    """The card lost power (fault injection): RAM is gone, EEPROM is as far as it got."""
