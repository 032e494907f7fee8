"""The card body of one record: embossed lines, engraved text and the photo.

:func:`card_body_layout` renders the profile's templates for one record and
checks each embossed line against its ISO/IEC 7811-1 area (character set and
length, :func:`cardperso.dataprep.fields.check_emboss`); a line that cannot be
embossed is an :class:`~cardperso.errors.InputError` naming the field it came from.
The visual station draws the result; this module decides only the text.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass

from cardperso.dataprep.fields import check_emboss, decode_pbm
from cardperso.dataprep.text import RenderError, render
from cardperso.errors import InputError
from cardperso.profiles.schema import CardBody, EmbossArea
from cardperso.profiles.template import fields_of

__all__ = ["CardBodyLayout", "EmbossedLine", "EngravedText", "PhotoImage", "card_body_layout"]


@dataclass(frozen=True, slots=True)
class EmbossedLine:
    area: EmbossArea
    row: int
    text: str


@dataclass(frozen=True, slots=True)
class EngravedText:
    side: str
    x_mm: float
    y_mm: float
    height_mm: float
    text: str


@dataclass(frozen=True, slots=True)
class PhotoImage:
    side: str
    x_mm: float
    y_mm: float
    width_mm: float
    height_mm: float
    width_px: int
    height_px: int
    rows: bytes
    """Packed 1-bit rows, 1 = black (Netpbm P4 convention)."""


@dataclass(frozen=True, slots=True)
class CardBodyLayout:
    emboss: tuple[EmbossedLine, ...]
    laser: tuple[EngravedText, ...]
    photo: PhotoImage | None


def _field(template: str) -> str | None:
    names = fields_of(template)
    return names[0] if names else None


def _render(template: str, values: Mapping[str, str]) -> str:
    try:
        return render(template, values)
    except RenderError as e:
        raise InputError(str(e), field=e.field) from None


def card_body_layout(spec: CardBody, values: Mapping[str, str]) -> CardBodyLayout:
    """Render and check the visual personalization of one record."""
    lines: list[EmbossedLine] = []
    for e in spec.emboss:
        text = _render(e.text, values)
        problem = check_emboss(text, e.area, e.max_length)
        if problem:
            raise InputError(problem, field=_field(e.text))
        lines.append(EmbossedLine(e.area, e.row, text))
    laser: list[EngravedText] = []
    for t in spec.laser:
        text = _render(t.text, values)
        if len(text) > t.max_length:
            raise InputError(
                f"engraved text is {len(text)} characters, more than {t.max_length}",
                field=_field(t.text),
            )
        laser.append(EngravedText(t.side, t.x_mm, t.y_mm, t.height_mm, text))
    photo = None
    if spec.photo is not None:
        p = spec.photo
        pbm = decode_pbm(base64.b64decode(values.get(p.field, ""), validate=True))
        if pbm is None:
            raise InputError("photo is not a black-and-white binary PBM image (P4)", field=p.field)
        w, h, rows = pbm
        photo = PhotoImage(p.side, p.x_mm, p.y_mm, p.width_mm, p.height_mm, w, h, rows)
    return CardBodyLayout(tuple(lines), tuple(laser), photo)
