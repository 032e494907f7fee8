"""The lettershop: the cards go out (DESIGN.md §2, the chapter's last processing step).

Each good card of a finished batch leaves on a personalized **card carrier** (PDF,
name and address from the production database, the card at a configurable place,
a Code 128 the inserter matches with the card), in **postal presort** order with
tray and bundle breaks; every envelope is **weighed** and a missing or doubled card
diverted; the PIN goes in a **PIN mailer** printed blind inside the HSM boundary,
posted separately and days later; **test letters** go to a region before the
mailing; a **dispatch manifest** (CSV and JSON) lists it all per region and day.

Modules: :mod:`.config` (settings), :mod:`.pieces` (letters and envelopes),
:mod:`.source` (the database side), :mod:`.presort`, :mod:`.layout` (what both
documents share), :mod:`.carrier`, :mod:`.mailer`, :mod:`.inserter`,
:mod:`.manifest`, :mod:`.usecases` (:func:`run_lettershop`), :mod:`.cli`.
See ``docs/lettershop.md``.
"""

from cardperso.lettershop.config import LettershopConfig, load_config
from cardperso.lettershop.inserter import Fault
from cardperso.lettershop.pieces import Letter, Piece, PieceKind, PieceStatus
from cardperso.lettershop.usecases import LettershopResult, run_lettershop

__all__ = [
    "Fault",
    "Letter",
    "LettershopConfig",
    "LettershopResult",
    "Piece",
    "PieceKind",
    "PieceStatus",
    "load_config",
    "run_lettershop",
]
