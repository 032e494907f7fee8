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

__all__ = [
    "CardBodyLayout",
    "EmbossedLine",
    "EngravedText",
    "PhotoImage",
    "card_body_layout",
    "check_card_body",
    "emboss_texts",
    "laser_texts",
    "photo_image",
]


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


def emboss_texts(spec: CardBody, values: Mapping[str, str]) -> list[str]:
    """The text of each embossed line of ``spec``, checked against its ISO/IEC 7811-1
    area (the first line that cannot be embossed raises ``InputError``)."""
    out: list[str] = []
    for e in spec.emboss:
        text = _render(e.text, values)
        problem = check_emboss(text, e.area, e.max_length)
        if problem:
            raise InputError(problem, field=_field(e.text))
        out.append(text)
    return out


def laser_texts(spec: CardBody, values: Mapping[str, str]) -> list[str]:
    """The text of each engraved line of ``spec``, checked against its length."""
    out: list[str] = []
    for t in spec.laser:
        text = _render(t.text, values)
        if len(text) > t.max_length:
            raise InputError(
                f"engraved text is {len(text)} characters, more than {t.max_length}",
                field=_field(t.text),
            )
        out.append(text)
    return out


def photo_image(spec: CardBody, values: Mapping[str, str]) -> PhotoImage | None:
    """The engraved photo of ``spec`` decoded from its field, or None without one."""
    if spec.photo is None:
        return None
    p = spec.photo
    pbm = decode_pbm(base64.b64decode(values.get(p.field, ""), validate=True))
    if pbm is None:
        raise InputError("photo is not a black-and-white binary PBM image (P4)", field=p.field)
    w, h, rows = pbm
    return PhotoImage(p.side, p.x_mm, p.y_mm, p.width_mm, p.height_mm, w, h, rows)


def check_card_body(spec: CardBody, values: Mapping[str, str]) -> None:
    """Raise ``InputError`` for the first part of the card body a record cannot have."""
    emboss_texts(spec, values)
    if spec.laser:
        laser_texts(spec, values)
    if spec.photo is not None:
        photo_image(spec, values)


def card_body_layout(spec: CardBody, values: Mapping[str, str]) -> CardBodyLayout:
    """Render and check the visual personalization of one record."""
    lines = tuple(
        EmbossedLine(e.area, e.row, text)
        for e, text in zip(spec.emboss, emboss_texts(spec, values), strict=True)
    )
    laser = tuple(
        EngravedText(t.side, t.x_mm, t.y_mm, t.height_mm, text)
        for t, text in zip(spec.laser, laser_texts(spec, values), strict=True)
    )
    return CardBodyLayout(lines, laser, photo_image(spec, values))
