"""A reader wrapper that records every command and answer it carries (trace tests:
what crossed the card interface, and whether anything secret did so in clear)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cardperso.readers import Reader


@dataclass
class Tap:
    """A reader that records every command and every answer it carries."""

    inner: Reader
    trace: list[bytes] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    def reset(self) -> bytes:
        return self.inner.reset()

    def transmit(self, apdu: bytes) -> bytes:
        resp = self.inner.transmit(apdu)
        self.trace += [bytes(apdu), resp]
        return resp

    @property
    def elapsed(self) -> float:
        return self.inner.elapsed

    def close(self) -> None:
        self.inner.close()
