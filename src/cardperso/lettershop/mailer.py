"""PIN mailers: the PIN printed blind, inside the HSM boundary, and nowhere else.

The lettershop never holds a PIN. For each mailer it calls the HSM's
:meth:`~cardperso.hsm.HsmSession.print_pin_mailer` (role ``lettershop``) with the PIN
block under the print key and a *renderer*; the HSM opens the block and hands the
clear PIN to the renderer inside its boundary, and what comes back is the printed
document (a one-page PDF, one file per mailer - one sealed envelope on the PIN
printer). A mailer with several PINs (a SIM's PIN1, PUK1, PIN2, PUK2) nests the
calls: each renderer asks the HSM for the next PIN, and the innermost one, holding
all of them, draws the page; every call is audited by the HSM.

The page (A4, letter-folded for a DL security envelope):

* outside: the issuer, the address field behind the window, the reference, the
  card's last four digits, the posting date, the instructions and the envelope's
  tracking code (the envelope id only, never card data);
* inside: the **blind-print area** (:attr:`~cardperso.lettershop.config.MailerLayout.blind`),
  where each PIN is printed beside its name - the only place a PIN appears.

Care taken so the PIN leaves no trace elsewhere: nothing here logs, keeps or quotes
it; a renderer failure is reported by the HSM without its message; the document is
written uncompressed with each PIN padded to a fixed width, so the document's length
(which the HSM audit records) says nothing about the PIN's digits; and the caller
never stores a digest of a mailer (a 4-digit PIN is found from its document's hash
in 10,000 tries).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas

from cardperso.crypto.secret import SecretStr
from cardperso.errors import InputError
from cardperso.hsm import HsmSession, KeyHandle, PinBlockFormat
from cardperso.lettershop.config import PAGE_WIDTH_MM, MailerLayout
from cardperso.lettershop.layout import FONT, FONT_BOLD, FontSet, draw_address, draw_code, y_pt
from cardperso.lettershop.pieces import Letter, MailerBlock

__all__ = ["INSTRUCTIONS", "PIN_FIELD", "MailerOutside", "MailerPrinter", "render_mailer"]

PIN_FIELD = 12
"""Width every PIN is padded to on the page (ISO 9564-1: at most 12 digits)."""
ROW_MM = 9.0
_PAN_BOUND = frozenset({PinBlockFormat.ISO_0, PinBlockFormat.ISO_3, PinBlockFormat.ISO_4})
INSTRUCTIONS = (
    "This letter holds your personal identification number (PIN), printed on the",
    "inner sheet. Check that the envelope was sealed and undamaged when it reached",
    "you; if it was not, do not use the card and call us. Learn the PIN, then destroy",
    "this letter. Nobody from the bank will ever ask you for it.",
)


@dataclass(frozen=True, slots=True)
class MailerOutside:
    """Everything on the mailer but the PINs."""

    issuer: str
    record_ref: str
    last4: str
    day: date
    envelope: str
    address: tuple[str, ...]
    names: tuple[str, ...]


def render_mailer(
    layout: MailerLayout, fonts: FontSet, outside: MailerOutside, pins: Sequence[SecretStr]
) -> bytes:
    """The mailer's page (runs inside the HSM boundary: ``pins`` are clear)."""
    buf = io.BytesIO()
    c = Canvas(buf, pageCompression=0, invariant=1)
    c.setPageSize((PAGE_WIDTH_MM * mm, y_pt(0)))
    c.setTitle("PIN mailer")
    c.setAuthor("cardperso lettershop")
    c.setFont(FONT_BOLD, 12)
    c.drawString(20 * mm, y_pt(14), outside.issuer)
    c.setFont(FONT_BOLD, 9)
    c.drawRightString(190 * mm, y_pt(14), "PERSONAL AND CONFIDENTIAL")
    area = layout.address
    c.setFont(FONT, 8)
    c.drawString(125 * mm, y_pt(area.y_mm + 4), f"Reference {outside.record_ref}")
    if outside.last4:
        c.drawString(125 * mm, y_pt(area.y_mm + 8), f"Card ending {outside.last4}")
    c.drawString(125 * mm, y_pt(area.y_mm + 12), f"Date {outside.day.isoformat()}")
    draw_address(c, fonts, area, f"{outside.issuer} - PIN service", outside.address)
    c.setFont(FONT, 9)
    y = area.bottom_mm + 8
    for line in INSTRUCTIONS:
        c.drawString(20 * mm, y_pt(y), line)
        y += 4.5
    blind = layout.blind
    c.saveState()
    c.setLineWidth(0.3)
    c.setDash(1, 2)
    c.rect(blind.x_mm * mm, y_pt(blind.bottom_mm), blind.w_mm * mm, blind.h_mm * mm)
    c.restoreState()
    c.setFont(FONT, 7)
    c.drawString((blind.x_mm + 3) * mm, y_pt(blind.y_mm + 5), "Inner sheet")
    row = blind.y_mm + 14
    for name, pin in zip(outside.names, pins, strict=True):
        c.setFont(FONT_BOLD, 11)
        c.drawString((blind.x_mm + 10) * mm, y_pt(row), name)
        c.setFont("Courier-Bold", 16)
        c.drawString((blind.x_mm + 60) * mm, y_pt(row), pin.reveal().ljust(PIN_FIELD))
        row += ROW_MM
    draw_code(c, layout.code, outside.envelope)
    c.showPage()
    c.save()
    return buf.getvalue()


class MailerPrinter:
    """Prints PIN mailers through one HSM session of the lettershop role."""

    def __init__(
        self, session: HsmSession, layout: MailerLayout, fonts: FontSet, issuer: str
    ) -> None:
        self.session, self.layout, self.fonts, self.issuer = session, layout, fonts, issuer
        self._keys: dict[str, KeyHandle] = {}
        self.printed = 0

    def _key(self, label: str) -> KeyHandle:
        key = self._keys.get(label)
        if key is None:
            key = self._keys[label] = self.session.get_key(label)
        return key

    def check(self, letter: Letter) -> str | None:
        """Why this letter's mailer cannot be printed (None: it can)."""
        if not letter.pins:
            return "the card has no PIN for a mailer"
        room = int((self.layout.blind.h_mm - 14) // ROW_MM) + 1
        if len(letter.pins) > room:
            return f"{len(letter.pins)} PINs do not fit the blind-print area ({room} rows)"
        for b in letter.pins:
            if PinBlockFormat(b.format) in _PAN_BOUND and not letter.pan:
                return f"PIN {b.name}: its block format needs the PAN, which the card lacks"
        return self.fonts.check(letter.mailer_address)

    def print(self, letter: Letter, envelope: str, day: date) -> bytes:
        """The mailer document of ``letter`` (the PINs opened only inside the HSM)."""
        problem = self.check(letter)
        if problem:
            raise InputError(f"record {letter.record_ref}: {problem}", field="pin_mailer")
        outside = MailerOutside(
            self.issuer,
            letter.record_ref,
            letter.last4,
            day,
            envelope,
            letter.mailer_address,
            tuple(b.name for b in letter.pins),
        )
        blocks = [(self._key(b.key), b) for b in letter.pins]
        doc = _nested(self.session, blocks, letter.pan, self.layout, self.fonts, outside)
        self.printed += 1
        return doc


def _nested(
    session: HsmSession,
    blocks: Sequence[tuple[KeyHandle, MailerBlock]],
    pan: str | None,
    layout: MailerLayout,
    fonts: FontSet,
    outside: MailerOutside,
) -> bytes:
    """One ``print_pin_mailer`` per PIN, each renderer calling the next; the innermost
    renders the page with every PIN."""
    opened: list[SecretStr] = []

    def call(i: int) -> bytes:
        key, b = blocks[i]
        fmt = PinBlockFormat(b.format)
        last = i == len(blocks) - 1

        def renderer(pin: SecretStr) -> bytes:
            opened.append(pin)
            return render_mailer(layout, fonts, outside, opened) if last else call(i + 1)

        bound = pan if fmt in _PAN_BOUND else None
        return session.print_pin_mailer(key, b.block, bound, fmt, renderer)

    try:
        return call(0)
    finally:
        opened.clear()
