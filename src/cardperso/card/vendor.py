"""The card vendor's tools, as host code may reach them: the one narrow entry point
into ``cardperso.card`` besides ``readers.virtual`` (DESIGN.md §3). Everything here
works offline on the vendor's own model of the OS; nothing talks to a card."""

from cardperso.card.dump import dump_routine
from cardperso.card.image import ImageError, MemoryImage, build_image
from cardperso.card.layout import OS_VERSION, Layout

__all__ = ["OS_VERSION", "ImageError", "Layout", "MemoryImage", "build_image", "dump_routine"]
