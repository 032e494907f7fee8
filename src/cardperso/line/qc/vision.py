"""The QC camera: the card face read back and compared with the production database.

The rendered face (:mod:`cardperso.line.visual`) stands for the camera's picture.
QC knows the card's *layout* from the database (where each text line and the photo
frame are, :func:`~cardperso.line.visual.text_lines`), never takes the content
from the picture's maker, and checks three things:

**OCR** (optical character recognition, Tesseract, :mod:`.ocr`): each text line
is cropped at its known position - from its first character cell to one cell (or
one em, for proportional laser text) past where the database text ends, so a
character too many is in view - and levelled so the ink is black and the body and
the embossing's shadow white. Embossed lines sit at the wide fixed pitch of ISO/IEC
7811-1; their character cells are set closer together first (letter-spaced
capitals confuse the recognizer, which then reads a narrow ``I`` as ``I1``). The
lines of one card are stacked into one strip and read in one call (page
segmentation mode 6, one whitelist). Each line is compared with the database text,
spaces ignored (the recognizer's word spacing is not reliable on embossing):
score = 1 - edit distance / length. A line that does not match is read once more
alone from its plain crop (mode 7), and the better score counts - a second look
only where the first one doubts.

**OCV** (optical character verification): each character cell of a line (the
pitch's cells of embossing, each character's advance of laser text) and the cell
after the text are compared with the same cell of the database text drawn at the
same place in the line's own font: 1 - the ink that differs / the ink of both
(from column totals, so a cell costs a few additions). The line's score is its
worst cell, so one wrong character weighs as much in a long line as in a short
one: the closest pair of different characters, ``O`` and ``Q``, scores 0.964 at
every size on the card, a correct one 1. It costs under a millisecond a card and
sees a wrong, missing or extra character that OCR might confuse with the right one.

**Photo**: the photo frame is sampled back to the database photo's own pixel grid
and correlated with it (normalized cross-correlation; 1 = the same picture).

Each score is reported with the card; the station rejects below the thresholds
of :class:`~cardperso.line.qc.config.QcConfig`. Reasons name the line (by its
number and kind) and the score, never the text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import accumulate

from PIL import Image, ImageChops, ImageStat

from cardperso.dataprep.prepared import CardBodyData
from cardperso.line.qc.config import QcConfig
from cardperso.line.qc.ocr import TesseractReader
from cardperso.line.visual import (
    BODY,
    FaceRender,
    TextLine,
    cells,
    draw_line,
    photo_box,
    photo_image,
    text_lines,
)

__all__ = ["LineRead", "VisionCheck", "VisionResult", "ncc", "similarity"]

# Levels: ink (40) -> black, the embossing's shadow (150) and the body (232) -> white.
_LEVELS = [0 if v <= 40 else 255 if v >= 140 else round((v - 40) * 255 / 100) for v in range(256)]
_GAP = 10
_WHITELIST = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ -'./&,"


def ncc(a: Image.Image, b: Image.Image) -> float:
    """Normalized cross-correlation of two grey images of one size (1: the same picture
    up to brightness and contrast; 0: unrelated). Two flat images: 1 if equal, else 0."""
    n = a.width * a.height
    sa, sb = ImageStat.Stat(a), ImageStat.Stat(b)
    d2 = ImageStat.Stat(ImageChops.difference(a, b)).sum2[0]
    va, vb = sa.var[0], sb.var[0]
    if va <= 1e-9 or vb <= 1e-9:
        return 1.0 if d2 == 0 else 0.0
    cov = (sa.sum2[0] + sb.sum2[0] - d2) / 2 / n - sa.mean[0] * sb.mean[0]
    return max(-1.0, min(1.0, cov / math.sqrt(va * vb)))


def _column_sums(img: Image.Image) -> list[int]:
    """Prefix sums of the image's column totals (index i: columns 0 .. i-1)."""
    row = img.resize((img.width, 1), Image.Resampling.BOX)
    return list(accumulate(row.tobytes(), initial=0))


def _normal(text: str) -> str:
    return "".join(text.split()).upper()


def similarity(read: str, expected: str) -> float:
    """1 - Levenshtein distance / the longer length, spaces and case ignored."""
    a, b = _normal(read), _normal(expected)
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / max(len(a), len(b))


@dataclass(frozen=True, slots=True)
class LineRead:
    """One text line: what OCR read (None if OCR did not run) and the two scores."""

    kind: str
    read: str | None
    ocr: float | None
    ocv: float


@dataclass(frozen=True, slots=True)
class VisionResult:
    """The camera check of one card: its scores (lowest line for OCR and OCV)."""

    lines: tuple[LineRead, ...]
    photo: float | None
    second_looks: int = 0

    @property
    def ocv(self) -> float:
        return min((r.ocv for r in self.lines), default=1.0)

    @property
    def ocr(self) -> float | None:
        scores = [r.ocr for r in self.lines if r.ocr is not None]
        return min(scores) if scores else None

    def reason(self, cfg: QcConfig) -> str:
        """Why the card fails the thresholds of ``cfg``, or "" if it passes."""
        for i, r in enumerate(self.lines, 1):
            if r.ocr is not None and r.ocr < cfg.ocr_threshold:
                return (
                    f"vision: card body line {i} ({r.kind}) read by OCR differs from the "
                    f"database (score {r.ocr:.3f} < {cfg.ocr_threshold:.3f})"
                )
        for i, r in enumerate(self.lines, 1):
            if r.ocv < cfg.ocv_threshold:
                return (
                    f"vision: card body line {i} ({r.kind}) does not match the database "
                    f"text (OCV {r.ocv:.3f} < {cfg.ocv_threshold:.3f})"
                )
        if self.photo is not None and self.photo < cfg.photo_threshold:
            return (
                f"vision: the card body's photo differs from the database photo "
                f"(score {self.photo:.4f} < {cfg.photo_threshold:.4f})"
            )
        return ""

    def as_detail(self) -> dict[str, object]:
        out: dict[str, object] = {"ocv": round(self.ocv, 4)}
        ocr = self.ocr
        if ocr is not None:
            out["ocr"] = round(ocr, 4)
            out["second_looks"] = self.second_looks
        if self.photo is not None:
            out["photo"] = round(self.photo, 5)
        return out


class VisionCheck:
    """The camera check (see the module notes); OCR through one :class:`TesseractReader`."""

    def __init__(self, config: QcConfig, reader: TesseractReader | None = None) -> None:
        self.config = config
        self._reader = reader

    @property
    def reader(self) -> TesseractReader:
        if self._reader is None:
            self._reader = TesseractReader(tessdata=self.config.tessdata)
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- regions ----------------------------------------------------------------------

    @staticmethod
    def _box(line: TextLine, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The line's region: its cells and one cell (or em) more, ascent to descent."""
        w, h = size
        extra = line.pitch if line.pitch is not None else float(line.size)
        right = round(line.x + line.advance() + extra) + 4
        return (
            max(line.x - 4, 0),
            max(line.baseline - line.ascent - 3, 0),
            min(right, w),
            min(line.baseline + line.descent + 3, h),
        )

    @staticmethod
    def _ocr_crop(img: Image.Image, line: TextLine, box: tuple[int, int, int, int]) -> Image.Image:
        """The line levelled for OCR; embossed characters set as ordinary type: each
        cell's ink cut out and put at a small fixed gap, an empty cell a word space."""
        _, top, right, bottom = box
        if line.pitch is None:
            return img.crop(box).point(_LEVELS)
        gap, space = max(round(line.size * 0.12), 2), round(line.size * 0.45)
        pieces: list[Image.Image | None] = []
        x = float(line.x)
        while round(x) < right - 2:
            cell = img.crop((round(x), top, min(round(x + line.pitch), right), bottom))
            cell = cell.point(_LEVELS)
            ink = ImageChops.invert(cell).getbbox()
            pieces.append(None if ink is None else cell.crop((ink[0], 0, ink[2], cell.height)))
            x += line.pitch
        width = 8 + sum(space if p is None else p.width + gap for p in pieces)
        out = Image.new("L", (width, bottom - top), 255)
        at = 4
        for p in pieces:
            if p is None:
                at += space
            else:
                out.paste(p, (at, 0))
                at += p.width + gap
        return out

    @staticmethod
    def _strip(crops: list[Image.Image]) -> Image.Image:
        width = max(c.width for c in crops) + 2 * _GAP
        height = sum(c.height + _GAP for c in crops) + _GAP
        strip = Image.new("L", (width, height), 255)
        y = _GAP
        for c in crops:
            strip.paste(c, (_GAP, y))
            y += c.height + _GAP
        return strip

    @staticmethod
    def _padded(img: Image.Image) -> Image.Image:
        out = Image.new("L", (img.width + 2 * _GAP, img.height + 2 * _GAP), 255)
        out.paste(img, (_GAP, _GAP))
        return out

    # -- the check --------------------------------------------------------------------

    def check(self, face: FaceRender, body: CardBodyData, *, ocr: bool) -> VisionResult:
        """Compare ``face`` (the camera picture) with ``body`` (the database)."""
        img = face.image.convert("L") if face.image.mode != "L" else face.image
        lines = text_lines(body, face.px_per_mm)
        boxes = [self._box(line, img.size) for line in lines]
        ocv = [self._ocv(img, line, box) for line, box in zip(lines, boxes, strict=True)]
        reads: list[str | None] = [None] * len(lines)
        scores: list[float | None] = [None] * len(lines)
        second = 0
        if ocr and lines:
            reads, scores, second = self._ocr(img, lines, boxes)
        return VisionResult(
            tuple(
                LineRead(line.kind, r, s, o)
                for line, r, s, o in zip(lines, reads, scores, ocv, strict=True)
            ),
            self._photo(img, body, face.px_per_mm),
            second,
        )

    @staticmethod
    def _ocv(img: Image.Image, line: TextLine, box: tuple[int, int, int, int]) -> float:
        """The worst character cell (and the cell after the text) of the line, compared
        with the same cell of the database text drawn in the line's own font: 1 - the
        ink that differs / the ink of both (1: the same character, 0: no common ink)."""
        left, top, right, bottom = box
        width, height = right - left, bottom - top
        if width <= 0 or height <= 0:
            return 0.0
        reference = Image.new("L", (width, height), BODY)
        draw_line(reference, line, -left, -top)
        seen = img.crop(box)
        blank = Image.new("L", (width, height), BODY)
        columns = [
            _column_sums(ImageChops.difference(a, b))
            for a, b in ((seen, reference), (seen, blank), (reference, blank))
        ]
        worst = 1.0
        for a, b in cells(line):
            a, b = max(a - left, 0), min(b - left, width)
            if b - a < 2:
                continue
            differ, ink_seen, ink_ref = (c[b] - c[a] for c in columns)
            ink = ink_seen + ink_ref
            if ink > 0:
                worst = min(worst, 1.0 - differ / ink)
        return max(worst, 0.0)

    def _ocr(
        self, img: Image.Image, lines: tuple[TextLine, ...], boxes: list[tuple[int, int, int, int]]
    ) -> tuple[list[str | None], list[float | None], int]:
        reader = self.reader
        allowed = _WHITELIST + "".join(
            sorted({ch for line in lines for ch in line.text if ch not in _WHITELIST})
        )
        crops = [self._ocr_crop(img, line, box) for line, box in zip(lines, boxes, strict=True)]
        got = reader.read_block(self._strip(crops), allowed)
        if len(got) != len(lines):  # the block did not split into our lines: one by one
            got = [reader.read_line(self._padded(c), allowed) for c in crops]
        reads: list[str | None] = []
        scores: list[float | None] = []
        second = 0
        for line, box, text in zip(lines, boxes, got, strict=True):
            score = similarity(text, line.text)
            if score < 1.0:  # a second look, alone and without moving the cells
                second += 1
                again = reader.read_line(self._padded(img.crop(box).point(_LEVELS)), allowed)
                better = similarity(again, line.text)
                if better > score:
                    text, score = again, better
            reads.append(text)
            scores.append(score)
        return reads, scores, second

    @staticmethod
    def _photo(img: Image.Image, body: CardBodyData, px_per_mm: float) -> float | None:
        expected = photo_image(body)
        box = photo_box(body, px_per_mm)
        if expected is None or box is None:
            return None
        frame = img.crop(box).resize(expected.size, Image.Resampling.BOX)
        return ncc(frame, expected.convert("L"))
