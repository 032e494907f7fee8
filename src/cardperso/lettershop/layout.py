"""What carriers and PIN mailers share on the page: fonts, the address field, the code.

Text is set in Helvetica (a PDF standard font: nothing embedded, Windows-1252, which
covers Western European names) unless a line holds a character outside it; such a
line is set in the first TrueType font that has all its characters (``font_file``,
reportlab's own Vera Sans, DejaVu Sans where the machine has it), embedded as a
subset. A name no font can show is refused before anything is printed
(:meth:`FontSet.check`): a wrong name on a carrier is worse than none.

Coordinates in the settings are millimetres from the top-left corner; reportlab
draws from the bottom-left, so :func:`y_pt` turns one into the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from reportlab.graphics.barcode.code128 import Code128
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from cardperso.errors import ConfigError
from cardperso.lettershop.config import PAGE_HEIGHT_MM, Rect

__all__ = [
    "FONT",
    "FONT_BOLD",
    "FontSet",
    "draw_address",
    "draw_code",
    "y_pt",
]

FONT = "Helvetica"
FONT_BOLD = "Helvetica-Bold"
_SYSTEM_FONTS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
    Path("/usr/local/share/fonts/DejaVuSans.ttf"),
)


def _bundled_font() -> Path:
    """Bitstream Vera Sans, shipped with reportlab (Latin-1 and most of Latin Extended-A)."""
    import reportlab

    return Path(reportlab.__file__).parent / "fonts" / "Vera.ttf"


def y_pt(top_mm: float) -> float:
    """A distance from the top of the page (mm) as reportlab's y (points from the bottom)."""
    return float((PAGE_HEIGHT_MM - top_mm) * mm)


def _latin(text: str) -> bool:
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


class FontSet:
    """Helvetica, then TrueType fonts (registered only when a line needs one), in order:
    the settings' ``font_file``, reportlab's bundled Vera Sans, DejaVu Sans where the
    machine has it. A line takes the first font that has all its characters."""

    def __init__(self, font_file: Path | None = None) -> None:
        self._files = [p for p in (font_file, _bundled_font(), *_SYSTEM_FONTS) if p is not None]
        if font_file is not None and not font_file.is_file():
            raise ConfigError(f"font {font_file}: no such file")
        self._fonts: list[tuple[str, frozenset[int]]] | None = None

    def _ttfs(self) -> list[tuple[str, frozenset[int]]]:
        if self._fonts is None:
            self._fonts = []
            for path in self._files:
                if not path.is_file():
                    continue
                tag = hashlib.sha256(str(path).encode()).hexdigest()[:8]
                name = f"Cardperso-{path.stem}-{tag}"
                try:
                    font = TTFont(name, str(path))
                except Exception as e:  # a broken font file: say which
                    raise ConfigError(f"font {path}: cannot be used ({e})") from None
                pdfmetrics.registerFont(font)
                widths = getattr(font.face, "charWidths", {})
                self._fonts.append((name, frozenset(int(c) for c in widths)))
        return self._fonts

    def font_for(self, text: str) -> str:
        """The font that shows every character of ``text`` (Helvetica when it can)."""
        if text.isascii() or _latin(text):
            return FONT
        needed = {ord(ch) for ch in text if not ch.isspace()}
        for name, chars in self._ttfs():
            if needed <= chars:
                return name
        raise ConfigError("a line holds characters no font has: set font_file in the settings")

    def check(self, lines: Sequence[str]) -> str | None:
        """Why these lines cannot be printed (None: they can)."""
        try:
            for line in lines:
                self.font_for(line)
        except ConfigError as e:
            return str(e)
        return None


def draw_address(
    c: Canvas, fonts: FontSet, area: Rect, sender: str, lines: Sequence[str], size: float = 10
) -> None:
    """The sender's line (small) and the recipient's lines in the address field, a line
    too long for the field set smaller (down to 6 points) rather than cut."""
    x, width = area.x_mm * mm, area.w_mm * mm
    c.setFont(FONT, 6.5)
    c.drawString(x, y_pt(area.y_mm + 4), sender)
    leading = size * 1.25
    y = y_pt(area.y_mm + 10)
    for line in lines:
        if not line:
            continue
        font = fonts.font_for(line)
        wide = pdfmetrics.stringWidth(line, font, size)
        c.setFont(font, max(6.0, size * width / wide) if wide > width else size)
        c.drawString(x, y, line)
        y -= leading


def draw_code(c: Canvas, area: Rect, value: str, bar_mm: float = 0.25) -> None:
    """A Code 128 symbol of ``value`` in ``area``, with its text line beneath."""
    bar_h = max(area.h_mm - 5, 5)
    symbol = Code128(value, barHeight=bar_h * mm, barWidth=bar_mm * mm, quiet=0)
    if symbol.width > area.w_mm * mm:
        raise ConfigError(f"code area of {area.w_mm:g} mm is too narrow for the code")
    symbol.drawOn(c, area.x_mm * mm, y_pt(area.y_mm + bar_h))
    c.setFont("Courier", 7)
    c.drawString(area.x_mm * mm, y_pt(area.bottom_mm - 1), value)
