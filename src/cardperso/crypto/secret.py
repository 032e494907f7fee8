"""Redacting wrappers for the few clear secrets that exist above the card.

DESIGN.md §4: a clear PIN or key may never reach a log line, an exception message, a
report or a trace. Wrapping the value makes the safe thing the default: ``repr``,
``str`` and every f-string or ``format`` spec show only ``<redacted>`` and a length,
pickling and hashing are refused, and equality runs in constant time. The value
comes out only through an explicit, greppable :meth:`reveal`.
"""

from __future__ import annotations

import hmac
from typing import Any, ClassVar, NoReturn, Self

__all__ = ["SecretBytes", "SecretStr"]


class _Redacted:
    """Shared behaviour; subclasses hold the value in ``_value``."""

    __slots__ = ()
    _unit: ClassVar[str] = "items"

    def __len__(self) -> int:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>, {len(self)} {self._unit})"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        # Any spec (f"{s:x}", f"{s:>20}") still yields only the redacted form.
        return repr(self)

    # Mutable-style equality without a hash: a secret must not become a dict key or
    # set member, where its hash would be a stable fingerprint of the value.
    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} cannot be pickled (it would leak the value)")

    def __copy__(self) -> Self:
        return self  # immutable: a copy is the same secret

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self


class SecretBytes(_Redacted):
    """A clear key or PIN block as bytes, redacted everywhere except :meth:`reveal`."""

    __slots__ = ("_value",)
    _unit = "bytes"

    def __init__(self, value: bytes | bytearray | memoryview) -> None:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError("SecretBytes takes bytes")
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """The clear bytes; every call site is a place a secret leaves its wrapper."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SecretBytes):
            return hmac.compare_digest(self._value, other._value)
        if isinstance(other, bytes | bytearray | memoryview):
            return hmac.compare_digest(self._value, bytes(other))
        return NotImplemented


class SecretStr(_Redacted):
    """A clear PIN (or other secret digit string), redacted except :meth:`reveal`."""

    __slots__ = ("_value",)
    _unit = "chars"

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("SecretStr takes str")
        self._value = value

    def reveal(self) -> str:
        """The clear string; every call site is a place a secret leaves its wrapper."""
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        # compare_digest takes only ASCII str, so compare the UTF-8 encodings.
        if isinstance(other, SecretStr):
            return hmac.compare_digest(self._value.encode(), other._value.encode())
        if isinstance(other, str):
            return hmac.compare_digest(self._value.encode(), other.encode())
        return NotImplemented
