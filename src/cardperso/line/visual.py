"""Visual personalization rendered to an image: embossing, laser engraving, the photo.

The rendered face stands for the physical result (and, for QC, for the camera's
picture of it). Geometry is the ID-1 card of ISO/IEC 7810, 85.60 x 53.98 mm,
drawn at ``px_per_mm`` pixels per millimetre, grey on a light card body.

Embossing areas (ISO/IEC 7811-1, positions measured from the card's left and
bottom edges; the standard's figures, rounded): the identification-number line
has its baseline 21.42 mm above the bottom edge and starts 10.18 mm from the left;
the name-and-address area holds up to four lines below it, the first baseline at
14.53 mm, 3.6 mm apart, starting 7.65 mm from the left. Embossed characters sit on
the standard's fixed pitch: 3.63 mm on the number line, 2.54 mm in the name area
(ISO/IEC 7811-1), and get a one-pixel shadow, as raised characters look under the
QC camera's side light.

Like the embosser's character wheel, each character is made once: a glyph is
rasterized the first time it is needed (per size) and stamped from then on, which
is what keeps the station's host cost per card small.
Laser-engraved text is drawn at its profile position (millimetres from the top-left
corner) at its height. The photo (1-bit rows, 1 = black) is scaled to its frame.

Text uses the font that ships with Pillow (``ImageFont.load_default``), so the same
Pillow version renders the same pixels on every machine.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from cardperso.dataprep.prepared import CardBodyData

__all__ = [
    "BODY",
    "CARD_MM",
    "FaceRender",
    "TextLine",
    "cells",
    "draw_line",
    "photo_box",
    "photo_image",
    "render_face",
    "text_lines",
]

CARD_MM = (85.60, 53.98)
NUMBER_BASELINE_MM, NUMBER_LEFT_MM, NUMBER_HEIGHT_MM = 21.42, 10.18, 4.3
NAME_BASELINE_MM, NAME_LEFT_MM, NAME_PITCH_MM, NAME_HEIGHT_MM = 14.53, 7.65, 3.6, 2.9
NUMBER_CHAR_MM, NAME_CHAR_MM = 3.63, 2.54
BODY, INK, SHADOW = 232, 40, 150


@lru_cache(maxsize=64)
def _font(size_px: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=max(size_px, 6))
    if not isinstance(font, ImageFont.FreeTypeFont):  # pragma: no cover - Pillow without FreeType
        raise RuntimeError("Pillow was built without FreeType; card faces need it")
    return font


@lru_cache(maxsize=64)
def _baseline(size_px: int) -> int:
    """Distance from the top of a line of text to its baseline (the font's ascent)."""
    ascent, _ = _font(size_px).getmetrics()
    return int(ascent)


@lru_cache(maxsize=4096)
def _glyph(ch: str, size_px: int) -> tuple[Image.Image | None, int, int, float]:
    """(mask, left, top, advance) of one character, relative to its baseline origin."""
    font = _font(size_px)
    advance = float(font.getlength(ch))
    left, top, right, bottom = (int(v) for v in font.getbbox(ch, anchor="ls"))
    if right <= left or bottom <= top:
        return None, 0, 0, advance
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), ch, font=font, fill=255, anchor="ls")
    return mask, left, top, advance


def _stamp(
    img: Image.Image, x: float, base: float, text: str, size_px: int, fill: int, pitch: float | None
) -> None:
    """Put ``text`` on ``img`` from (x, baseline): at a fixed pitch, or proportionally."""
    for ch in text:
        mask, left, top, advance = _glyph(ch, size_px)
        if mask is not None:
            centre = (pitch - advance) / 2 if pitch is not None else 0.0  # in its cell
            x0, y0 = round(x + centre) + left, round(base) + top
            # the imaging core's paste: Image.paste's checks cost ~6x the stamp itself
            img.im.paste(fill, (x0, y0, x0 + mask.width, y0 + mask.height), mask.im)
        x += pitch if pitch is not None else advance


@dataclass(frozen=True, slots=True)
class TextLine:
    """Where one line of text sits on the face, in pixels: what QC's camera crops.

    ``x`` is the left edge of the first character cell, ``baseline`` the baseline's
    row, ``size`` the font size; ``pitch`` the fixed character pitch of embossing
    (ISO/IEC 7811-1), None for proportional laser text."""

    kind: str
    """``emboss`` or ``laser``."""
    text: str
    x: int
    baseline: int
    size: int
    pitch: float | None

    @property
    def ascent(self) -> int:
        return _baseline(self.size)

    @property
    def descent(self) -> int:
        return int(_font(self.size).getmetrics()[1])

    def advance(self, text: str | None = None) -> float:
        """Width in pixels of ``text`` (default: the line's own) set on this line."""
        t = self.text if text is None else text
        return (
            len(t) * self.pitch if self.pitch is not None else float(_font(self.size).getlength(t))
        )


def cells(line: TextLine, extra: int = 1) -> list[tuple[int, int]]:
    """(left, right) pixel columns of each character cell of ``line``, and of ``extra``
    cells after its end: the pitch's cells for embossing, each character's advance
    for laser text (as :func:`draw_line` sets them)."""
    out: list[tuple[int, int]] = []
    x = float(line.x)
    step = line.pitch
    for ch in line.text:
        advance = step if step is not None else float(_font(line.size).getlength(ch))
        out.append((math.floor(x), math.ceil(x + advance)))
        x += advance
    extent = step if step is not None else float(line.size)
    for _ in range(extra):
        out.append((math.floor(x), math.ceil(x + extent)))
        x += extent
    return out


def draw_line(img: Image.Image, line: TextLine, dx: int = 0, dy: int = 0) -> None:
    """Put ``line`` on ``img`` as the embosser (with its shadow) or the laser leaves it,
    shifted by whole pixels (``dx``, ``dy``): the same pixels :func:`render_face` draws."""
    if line.kind == "emboss":
        _stamp(
            img, line.x + 1 + dx, line.baseline + 1 + dy, line.text, line.size, SHADOW, line.pitch
        )
    _stamp(img, line.x + dx, line.baseline + dy, line.text, line.size, INK, line.pitch)


def text_lines(body: CardBodyData, px_per_mm: float = 8.0) -> tuple[TextLine, ...]:
    """The front's text lines at ``px_per_mm``: embossed lines first, then laser text."""
    height = round(CARD_MM[1] * px_per_mm)
    out: list[TextLine] = []
    for area, row, text in body.emboss:
        if area == "number":
            size = round(NUMBER_HEIGHT_MM * px_per_mm)
            x = round(NUMBER_LEFT_MM * px_per_mm)
            base = round(height - NUMBER_BASELINE_MM * px_per_mm)
            pitch = NUMBER_CHAR_MM * px_per_mm
        else:
            size = round(NAME_HEIGHT_MM * px_per_mm)
            x = round(NAME_LEFT_MM * px_per_mm)
            base = round(height - (NAME_BASELINE_MM - (row - 1) * NAME_PITCH_MM) * px_per_mm)
            pitch = NAME_CHAR_MM * px_per_mm
        out.append(TextLine("emboss", text, x, base, size, pitch))
    for side, x_mm, y_mm, h_mm, text in body.laser:
        if side != "front":
            continue
        size = round(h_mm * px_per_mm * 1.3)
        # y_mm is the line's top
        base = round(y_mm * px_per_mm) + _baseline(size)
        out.append(TextLine("laser", text, round(x_mm * px_per_mm), base, size, None))
    return tuple(out)


def photo_box(body: CardBodyData, px_per_mm: float = 8.0) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the photo frame on the face, or None without a photo."""
    ph = body.photo
    if not ph:
        return None
    left, top = round(float(ph["x_mm"]) * px_per_mm), round(float(ph["y_mm"]) * px_per_mm)
    w = round(float(ph["width_mm"]) * px_per_mm)
    h = round(float(ph["height_mm"]) * px_per_mm)
    return left, top, left + w, top + h


@dataclass(frozen=True, slots=True)
class FaceRender:
    """A rendered card face and the texts put on it (what the machine was told to do).

    ``body`` and ``px_per_mm`` are the layout it was drawn from (where each text line
    and the photo frame are): the QC camera knows the layout, not the content."""

    image: Image.Image
    texts: tuple[str, ...]
    body: CardBodyData | None = None
    px_per_mm: float = 8.0

    def png(self) -> bytes:
        out = io.BytesIO()
        self.image.save(out, "PNG", compress_level=6)
        return out.getvalue()


def photo_image(body: CardBodyData) -> Image.Image | None:
    """The photo of ``body`` as a 1-bit image (its own pixels), or None."""
    ph = body.photo
    if not ph:
        return None
    w, h = int(ph["width_px"]), int(ph["height_px"])
    rows = bytes.fromhex(str(ph["rows"]))
    # Netpbm P4: 1 = black; Pillow's mode "1" raw decoder "1;I" reads exactly that.
    return Image.frombytes("1", (w, h), rows, "raw", "1;I")


def render_face(body: CardBodyData, px_per_mm: float = 8.0) -> FaceRender:
    """Draw the front of the card as the embosser and laser leave it."""
    width, height = (round(v * px_per_mm) for v in CARD_MM)
    img = Image.new("L", (width, height), BODY)
    texts: list[str] = []
    for line in text_lines(body, px_per_mm):
        draw_line(img, line)
        texts.append(line.text)
    photo = photo_image(body)
    box = photo_box(body, px_per_mm)
    if photo is not None and box is not None:
        left, top, right, bottom = box
        scaled = photo.convert("L").resize((right - left, bottom - top), Image.Resampling.NEAREST)
        img.paste(scaled, (left, top))
    return FaceRender(img, tuple(texts), body, px_per_mm)
