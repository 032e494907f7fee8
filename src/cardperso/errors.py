"""The host-side error hierarchy (DESIGN.md §6): one base, typed subclasses.

Messages never contain PINs, keys or cardholder data; they name *where* a problem
is (file, line, field, operation, key label, status word), never the secret value.
"""

from __future__ import annotations

__all__ = [
    "CardStatusError",
    "CardpersoError",
    "ConfigError",
    "HsmError",
    "InputError",
    "KeyUsageError",
    "ReaderError",
]


class CardpersoError(Exception):
    """Base of every error cardperso raises on purpose."""

    exit_code = 1


class ConfigError(CardpersoError):
    """A setting, profile or environment problem."""

    exit_code = 2


class InputError(CardpersoError):
    """Bad input data, located by file, line and field."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file, self.line, self.field, self.reason = file, line, field, message
        where = ":".join(str(p) for p in (file, line) if p is not None)
        parts = [p for p in (where, f"field {field!r}" if field else "") if p]
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)


class ReaderError(CardpersoError):
    """The reader or the link to the card failed (no card, card pulled, timeout)."""

    exit_code = 4


class CardStatusError(CardpersoError):
    """The card answered with an unexpected status word."""

    exit_code = 4

    def __init__(self, sw: int, command: str = "") -> None:
        self.sw = sw
        self.command = command
        super().__init__(f"card returned SW {sw:04X}" + (f" to {command}" if command else ""))


class HsmError(CardpersoError):
    """A security-module operation failed; carries the operation name."""

    exit_code = 5

    def __init__(self, operation: str, message: str) -> None:
        self.operation = operation
        super().__init__(f"HSM {operation}: {message}")


class KeyUsageError(HsmError):
    """A key was used for something its usage does not allow."""
