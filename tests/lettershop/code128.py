"""Read a Code 128 symbol back out of a PDF page, the way an inserter's scanner would.

The bars are the filled rectangles of one height that reportlab draws; their widths
and the gaps between them, in modules, are matched against the symbol table of
ISO/IEC 15417 (written out here from the standard's table, independently of the
library that draws them), the check character verified, and the code sets A, B and
C followed to the text.
"""

from __future__ import annotations

import base64
import re
import zlib
from pathlib import Path

_TABLE = (
    "212222 222122 222221 121223 121322 131222 122213 122312 132212 221213 "
    "221312 231212 112232 122132 122231 113222 123122 123221 223211 221132 "
    "221231 213212 223112 312131 311222 321122 321221 312212 322112 322211 "
    "212123 212321 232121 111323 131123 131321 112313 132113 132311 211313 "
    "231113 231311 112133 112331 132131 113123 113321 133121 313121 211331 "
    "231131 213113 213311 213131 311123 311321 331121 312113 312311 332111 "
    "314111 221411 431111 111224 111422 121124 121421 141122 141221 112214 "
    "112412 122114 122411 142112 142211 241211 221114 413111 241112 134111 "
    "111242 121142 121241 114212 124112 124211 411212 421112 421211 212141 "
    "214121 412121 111143 111341 131141 114113 114311 411113 411311 113141 "
    "114131 311141 411131 211412 211214 211232"
)
PATTERNS = tuple(_TABLE.split())
STOP = "2331112"
VALUE = {p: i for i, p in enumerate(PATTERNS)}
START_A, START_B, START_C = 103, 104, 105
CODE_A, CODE_B, CODE_C = 101, 100, 99

_STREAM = re.compile(rb"stream\r?\n(.*?)endstream", re.S)
_RECT = re.compile(rb"n ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) re f\*")


def _streams(pdf: bytes) -> list[bytes]:
    out = []
    for m in _STREAM.finditer(pdf):
        raw = m.group(1).strip()
        if raw.endswith(b"~>"):  # ASCII85, then Flate (reportlab's compressed pages)
            raw = base64.a85decode(raw[:-2])
        try:
            out.append(zlib.decompress(raw))
        except zlib.error:
            out.append(raw)
    return out


def bars(pdf: Path, page: int = 1) -> list[tuple[float, float]]:
    """(x, width) of the bars on one page (the tallest group of equal-height rectangles)."""
    pages = [s for s in _streams(pdf.read_bytes()) if b" Tf " in s or b" re f*" in s]
    content = pages[page - 1]
    rects = [tuple(float(v) for v in m.groups()) for m in _RECT.finditer(content)]
    heights: dict[float, list[tuple[float, float]]] = {}
    for x, _y, w, h in rects:
        heights.setdefault(round(h, 2), []).append((x, w))
    return sorted(max(heights.values(), key=len))


def modules(symbol_bars: list[tuple[float, float]]) -> str:
    """The widths of bars and spaces, in modules, left to right."""
    unit = min(w for _, w in symbol_bars)
    out = []
    for (x, w), nxt in zip(symbol_bars, [*symbol_bars[1:], None], strict=True):
        out.append(str(round(w / unit)))
        if nxt is not None:
            out.append(str(round((nxt[0] - x - w) / unit)))
    return "".join(out)


def decode(widths: str) -> str:
    """The text of a Code 128 symbol given as module widths (start ... check stop)."""
    if not widths.endswith(STOP):
        raise ValueError("no stop pattern")
    body = widths[: -len(STOP)]
    if len(body) % 6:
        raise ValueError("not a whole number of symbols")
    values = [VALUE[body[i : i + 6]] for i in range(0, len(body), 6)]
    start, data, check = values[0], values[1:-1], values[-1]
    if (start + sum(i * v for i, v in enumerate(data, 1))) % 103 != check:
        raise ValueError("check character does not match")
    sets = {START_A: "A", START_B: "B", START_C: "C"}
    if start not in sets:
        raise ValueError("no start character")
    mode, text = sets[start], []
    for v in data:
        if v == CODE_C and mode != "C":
            mode = "C"
        elif v == CODE_B and mode != "B":
            mode = "B"
        elif v == CODE_A:
            mode = "A"
        elif mode == "C":
            text.append(f"{v:02d}")
        elif mode == "B":
            text.append(chr(32 + v))
        else:
            text.append(chr(32 + v) if v < 64 else chr(v - 64))
    return "".join(text)


def read_code(pdf: Path, page: int = 1) -> str:
    """The text of the Code 128 symbol on one page of a PDF."""
    return decode(modules(bars(pdf, page)))
