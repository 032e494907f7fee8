"""The test station of :mod:`perso_station`, personalizing with the line's StepRunner.

:class:`perso_station.Station` runs the chip script step by step itself; this one
hands personalization to :class:`cardperso.line.chip.StepRunner`, the code the line
runs, which knows every step kind - including ``open_ecdh``, the key agreement of
ECDH-protected loading (docs/card-os.md §8.3). Every APDU the runner sends and every
answer the card gives is appended to :attr:`Station.trace` by a tap on the reader.
"""

from __future__ import annotations

from perso_station import Station, StationError

from cardperso.crypto.rand import SeededRandom
from cardperso.dataprep.prepared import PreparedCard
from cardperso.line.chip import ChipFailure, KeyCache, StepRunner, read_serial
from cardperso.readers import Reader
from readers.tap import Tap


class LineStation(Station):
    """Initialization as :class:`Station`; personalization by the line's StepRunner."""

    def personalize(self, reader: Reader, card: PreparedCard) -> dict[str, bytes]:
        reader.reset()
        tap = Tap(reader, self.trace)
        runner = StepRunner(
            "perso",
            tap,
            KeyCache(self.pers),
            read_serial(tap),
            SeededRandom(f"line-station/{card.record_id}"),
            self.keys.card_secret,
        )
        try:
            runner.run(card.script)
        except ChipFailure as e:
            raise StationError(str(e)) from None
        collected: dict[str, bytes] = {}
        blocks: dict[str, list[tuple[int, bytes]]] = {}
        for name, value in runner.collected.items():
            head, _, index = name.rpartition("/")
            if name.startswith("pin_blocks:") and index.isdigit():
                blocks.setdefault(head, []).append((int(index), value))
            else:
                collected[name] = value
        for name, found in blocks.items():
            self.pin_blocks[name] = tuple(b for _, b in sorted(found))
        return collected
