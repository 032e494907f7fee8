"""What the lettershop takes from a good card: a PIN the card generated, the PAN for the HSM."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cardperso.dataprep.prepared import (
    CarrierData,
    MailerData,
    MailerPin,
    PreparedCard,
    Step,
    StepKind,
)
from cardperso.errors import InputError
from cardperso.lettershop.source import _letter
from cardperso.production.models import Attempt, CardJob

PAN = "4761730647912867"


def card(block: bytes, *, tracks: dict[int, str] | None = None, fmt: int = 0) -> PreparedCard:
    return PreparedCard(
        batch_id="B-1",
        seq=3,
        line=4,
        profile="p",
        profile_version=1,
        channel_key="K",
        protection_note="kd",
        init_steps=(),
        script=(),
        tracks={2: f";{PAN}=290220117459936?"} if tracks is None else tracks,
        presort=("DE", "80", "331"),
        carrier=CarrierData("carrier-x", ("A B", "1 Street", "80331 Town", "DE"), "Hi", 85.0),
        mailer=MailerData(
            "pin-x",
            ("A B", "1 Street", "80331 Town", "DE"),
            2,
            (MailerPin("PIN2", "ZPK.PRINT", fmt, block),),
        ),
    )


def job() -> CardJob:
    return CardJob(batch_id=9, seq=3, record_ref="B-1/0000003", pan_masked="476173******2867")


def attempt(collected: dict[str, str] | None = None) -> Attempt:
    results = [{"station": "chip_module", "ok": True, "detail": {}}]
    if collected is not None:
        results.append({"station": "finishing", "ok": True, "detail": {"collected": collected}})
    return Attempt(chip_serial="823C5DA900000002", station_results=results)


def test_a_pin_the_card_generated_is_printed_from_the_lines_mailer_copy() -> None:
    got = _letter(
        job(),
        attempt({"pin_blocks:PIN2/0": "00112233AABBCCDD", "pin_blocks:PIN2/1": "FF" * 8}),
        card(b""),
    )
    (pin,) = got.pins
    assert (pin.name, pin.key, pin.block) == (
        "PIN2",
        "ZPK.PRINT",
        bytes.fromhex("00112233AABBCCDD"),
    )
    assert got.pan == PAN and got.chip_serial == "823C5DA900000002" and got.mailer_delay_days == 2
    assert PAN not in repr(got) and "Street" not in repr(got)  # cardholder data stays out of logs


def test_a_good_card_without_its_mailer_block_is_refused() -> None:
    with pytest.raises(InputError, match="no mailer PIN block for PIN2"):
        _letter(job(), attempt({"pin_blocks:PIN2/1": "FF" * 8}), card(b""))


def test_the_pan_comes_from_a_pin_step_or_a_track_and_only_for_pan_bound_formats() -> None:
    a = attempt()
    assert _letter(job(), a, card(b"\x01" * 8, tracks={1: f"%B{PAN}^DOE/J^2902201?"})).pan == PAN
    step = Step(StepKind.GENERATE_PIN, "gen", pan="4000001234567899")
    assert (
        _letter(job(), a, replace(card(b"\x01" * 8, tracks={}), script=(step,))).pan
        == "4000001234567899"
    )
    assert _letter(job(), a, card(b"\x01" * 8, fmt=1)).pan is None  # ISO format 1: no PAN
