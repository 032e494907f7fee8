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
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from cardperso.dataprep.prepared import CardBodyData

__all__ = ["CARD_MM", "FaceRender", "render_face"]

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
            img.paste(fill, (x0, y0, x0 + mask.width, y0 + mask.height), mask)
        x += pitch if pitch is not None else advance


@dataclass(frozen=True, slots=True)
class FaceRender:
    """A rendered card face and the texts put on it (what the machine was told to do)."""

    image: Image.Image
    texts: tuple[str, ...]

    def png(self) -> bytes:
        out = io.BytesIO()
        self.image.save(out, "PNG", compress_level=6)
        return out.getvalue()


def _photo(body: CardBodyData) -> Image.Image | None:
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

    def y_from_bottom(mm: float) -> int:
        return round(height - mm * px_per_mm)

    for area, row, text in body.emboss:
        if area == "number":
            size = round(NUMBER_HEIGHT_MM * px_per_mm)
            x = round(NUMBER_LEFT_MM * px_per_mm)
            base = y_from_bottom(NUMBER_BASELINE_MM)
            pitch = NUMBER_CHAR_MM * px_per_mm
        else:
            size = round(NAME_HEIGHT_MM * px_per_mm)
            x = round(NAME_LEFT_MM * px_per_mm)
            base = y_from_bottom(NAME_BASELINE_MM - (row - 1) * NAME_PITCH_MM)
            pitch = NAME_CHAR_MM * px_per_mm
        _stamp(img, x + 1, base + 1, text, size, SHADOW, pitch)
        _stamp(img, x, base, text, size, INK, pitch)
        texts.append(text)
    for side, x_mm, y_mm, h_mm, text in body.laser:
        if side != "front":
            continue
        size = round(h_mm * px_per_mm * 1.3)
        _stamp(
            img,
            round(x_mm * px_per_mm),
            round(y_mm * px_per_mm) + _baseline(size),  # y_mm is the line's top
            text,
            size,
            INK,
            None,
        )
        texts.append(text)
    photo = _photo(body)
    if photo is not None and body.photo is not None:
        ph = body.photo
        box = (round(float(ph["width_mm"]) * px_per_mm), round(float(ph["height_mm"]) * px_per_mm))
        scaled = photo.convert("L").resize(box, Image.Resampling.NEAREST)
        img.paste(
            scaled, (round(float(ph["x_mm"]) * px_per_mm), round(float(ph["y_mm"]) * px_per_mm))
        )
    return FaceRender(img, tuple(texts))
