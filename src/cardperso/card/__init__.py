"""The simulated smart-card OS: the card side of the chip interface.

Host code never imports this package except through ``readers.virtual`` (and the
vendor tools' entry points below): it talks to a card with APDUs only.
"""

from cardperso.card.dump import dump_routine
from cardperso.card.factory import CardStock, new_card
from cardperso.card.os import CardMute, CardOS
from cardperso.card.timing import TimingParams

__all__ = ["CardMute", "CardOS", "CardStock", "TimingParams", "dump_routine", "new_card"]
