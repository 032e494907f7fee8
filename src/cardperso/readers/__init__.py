"""Host side of the card interface: the Reader protocol and its implementations."""

from cardperso.readers.base import Reader, exchange
from cardperso.readers.virtual import VirtualReader

__all__ = ["Reader", "VirtualReader", "exchange"]
