"""Card carriers: the personalized letter each card is attached to, as PDF pages.

One A4 page per card, in the day's postal order, in one PDF per posting day (what
goes to the carrier printer as one job). A page holds

* the issuer's heading and the sender line over the address field (the envelope
  window), the cardholder's name and address beneath - from the production database
  (the prepared card's carrier data), never read off a card;
* the card's place: an ID-1 outline with the two corner slots that hold the card, at
  the configured position (the profile's ``card_offset_mm`` unless the settings move
  it; never across a fold line, :mod:`.config`) and the card's last four digits;
* the greeting and a short text, below the card when there is room, else above it;
* the machine-readable code (Code 128, :func:`~cardperso.lettershop.pieces.carrier_code`:
  batch, record and chip serial, never the PAN) the inserter reads to match the sheet
  with the card it attaches, with its text line beneath.

Test letters (:mod:`.usecases`) are printed the same way with a TEST LETTER banner,
so the test run exercises the very layout the mailing will use.
"""

from __future__ import annotations

import io
from datetime import date

from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from cardperso.errors import ConfigError
from cardperso.lettershop.config import PAGE_WIDTH_MM, CarrierLayout, Rect
from cardperso.lettershop.layout import FONT, FONT_BOLD, FontSet, draw_address, draw_code, y_pt
from cardperso.lettershop.pieces import Letter

__all__ = ["BODY", "CarrierPrinter"]

BODY = (
    "Your new card is attached below. Please sign the signature strip on its back",
    "as soon as you receive it.",
    "Your PIN follows in a separate letter a few days after this one. We will never",
    "ask you for your PIN by phone or e-mail.",
)
_LEADING_MM = 5.0
_SLOT_MM = 9.0


class CarrierPrinter:
    """One posting day's carriers, page by page, into one PDF document."""

    def __init__(
        self,
        layout: CarrierLayout,
        fonts: FontSet,
        issuer: str,
        day: date,
        *,
        test: bool = False,
    ) -> None:
        self.layout, self.fonts, self.issuer, self.day, self.test = (
            layout,
            fonts,
            issuer,
            day,
            test,
        )
        self._buf = io.BytesIO()
        self._c = Canvas(self._buf, pageCompression=1, invariant=1)
        self._c.setPageSize((PAGE_WIDTH_MM * mm, y_pt(0)))
        self._c.setTitle("Card carriers" if not test else "Test letters")
        self._c.setAuthor("cardperso lettershop")
        self.pages = 0

    def check(self, letter: Letter) -> str | None:
        """Why this letter cannot be printed (None: it can)."""
        problem = self.layout.check_card(letter.card_offset_mm)
        if problem:
            return problem
        card = self.layout.card_rect(letter.card_offset_mm)
        if self._text_top(card, self._lines(letter.greeting)) is None:
            return "no room on the carrier for its text beside the card"
        return self.fonts.check([*letter.address, letter.greeting or ""])

    def add(self, letter: Letter, code: str) -> int:
        """Print one carrier; its page number (from 1)."""
        c, lay = self._c, self.layout
        card = lay.card_rect(letter.card_offset_mm)
        if self.test:
            c.setFont(FONT_BOLD, 16)
            c.drawRightString(190 * mm, y_pt(14), "TEST LETTER")
        c.setFont(FONT_BOLD, 12)
        c.drawString(20 * mm, y_pt(14), self.issuer)
        c.setFont(FONT, 8)
        c.drawString(125 * mm, y_pt(lay.address.y_mm + 4), f"Reference {letter.record_ref}")
        c.drawString(125 * mm, y_pt(lay.address.y_mm + 8), f"Date {self.day.isoformat()}")
        draw_address(c, self.fonts, lay.address, f"{self.issuer} - card services", letter.address)
        self._card(card, letter)
        self._text(card, letter.greeting)
        draw_code(c, lay.code, code, lay.code_bar_mm)
        c.setFont(FONT, 6)
        c.drawRightString(190 * mm, y_pt(lay.code.bottom_mm - 1), letter.carrier_template)
        c.showPage()
        self.pages += 1
        return self.pages

    def _card(self, card: Rect, letter: Letter) -> None:
        c = self._c
        x, y = card.x_mm * mm, y_pt(card.bottom_mm)
        w, h = card.w_mm * mm, card.h_mm * mm
        c.saveState()
        c.setDash(3, 2)
        c.setLineWidth(0.4)
        c.roundRect(x, y, w, h, 3.18 * mm)
        c.setDash()
        c.setLineWidth(1.2)
        s = _SLOT_MM * mm
        # the two corner slots that hold the card (top left, bottom right)
        c.line(x - 1 * mm, y + h - s, x + s, y + h + 1 * mm)
        c.line(x + w - s, y - 1 * mm, x + w + 1 * mm, y + s)
        c.restoreState()
        if letter.last4:
            c.setFont(FONT, 8)
            c.drawString(x, y + h + 2 * mm, f"Your card ending {letter.last4}")

    @staticmethod
    def _lines(greeting: str | None) -> list[str]:
        return ([greeting, ""] if greeting else []) + list(BODY)

    def _text_top(self, card: Rect, lines: list[str]) -> float | None:
        """Where the text starts: below the card if there is room, else above it."""
        need = len(lines) * _LEADING_MM
        below = card.bottom_mm + 10
        above = card.y_mm - 8 - need
        if below + need <= self.layout.code.y_mm - 4:
            return below
        if above >= self.layout.address.bottom_mm + 4:
            return above
        return None

    def _text(self, card: Rect, greeting: str | None) -> None:
        lines = self._lines(greeting)
        top = self._text_top(card, lines)
        if top is None:
            raise ConfigError("no room on the carrier for its text beside the card")
        c = self._c
        y = top
        for line in lines:
            if line:
                c.setFont(self.fonts.font_for(line), 10)
                c.drawString(20 * mm, y_pt(y), line)
            y += _LEADING_MM

    def finish(self) -> bytes:
        """The PDF document of every page added."""
        self._c.save()
        return self._buf.getvalue()
