"""The lettershop settings refuse what would break a card, a weighing or a PIN's separation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cardperso.errors import ConfigError
from cardperso.lettershop.config import (
    CarrierLayout,
    LettershopConfig,
    MailerLayout,
    Rect,
    Weights,
    dump_config,
    load_config,
)


def test_the_defaults_are_a_working_bureau() -> None:
    c = LettershopConfig()
    assert c.carrier.check_card(85.0) is None  # debit: 85 mm from the top
    assert c.carrier.check_card(90.0) is None  # sim
    w = c.weights
    assert w.worst_noise_g() < w.tolerance_g < w.card_g - w.worst_noise_g() - w.card_spread_g


def test_a_card_across_a_fold_is_refused_the_chips_would_break() -> None:
    half = CarrierLayout()  # folded once, at 148.5 mm
    assert "fold at 148.5" in (half.check_card(120.0) or "")
    letter = CarrierLayout(fold="letter", address=Rect(x_mm=20, y_mm=27, w_mm=85, h_mm=40))
    assert "fold at 99" in (letter.check_card(85.0) or "")
    assert letter.check_card(120.0) is None  # the middle panel: 120 to 174 mm
    with pytest.raises(ValidationError, match="bent by the fold"):
        CarrierLayout(card_y_mm=140)


def test_the_card_stays_clear_of_the_address_and_the_code_and_on_the_sheet() -> None:
    assert "address" in (CarrierLayout(fold="none").check_card(40.0) or "")
    assert "machine-readable" in (CarrierLayout(fold="none").check_card(230.0) or "")
    assert "off the sheet" in (CarrierLayout(fold="none", card_x_mm=150).check_card(160) or "")


def test_the_blind_print_area_is_inside_one_panel_and_apart_from_the_outside() -> None:
    with pytest.raises(ValidationError, match="crosses the fold"):
        MailerLayout(blind=Rect(x_mm=20, y_mm=90, w_mm=170, h_mm=40))
    with pytest.raises(ValidationError, match="outer areas"):
        MailerLayout(fold="none", blind=Rect(x_mm=20, y_mm=30, w_mm=170, h_mm=40))


@pytest.mark.parametrize(
    ("tolerance", "why"),
    [(0.5, "good pieces would be diverted"), (5.5, "a missing or a second card could pass")],
)
def test_a_tolerance_that_could_not_tell_a_card_is_refused(tolerance: float, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        Weights(tolerance_g=tolerance)


def test_a_pin_mailer_never_goes_on_its_cards_day() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        LettershopConfig(mailer_delay_days=0)
    assert LettershopConfig(mailer_delay_days=1).mailer_delay_days == 1


def test_postage_classes_by_rising_weight_and_capacity_of_a_tray() -> None:
    with pytest.raises(ValidationError, match="rising max_g"):
        LettershopConfig.model_validate(
            {
                "postage": [
                    {"name": "b", "max_g": 50, "price": 1},
                    {"name": "a", "max_g": 20, "price": 1},
                ]
            }
        )
    with pytest.raises(ValidationError, match="full tray"):
        LettershopConfig.model_validate({"daily_capacity": 10, "presort": {"tray_size": 400}})


def test_settings_load_from_yaml_and_a_bad_file_names_the_path(tmp_path: Path) -> None:
    good = tmp_path / "ls.yaml"
    good.write_text(dump_config(LettershopConfig(mailer_delay_days=4)), encoding="utf-8")
    assert load_config(good) == LettershopConfig(mailer_delay_days=4)
    assert load_config(None) == LettershopConfig()
    bad = tmp_path / "bad.yaml"
    bad.write_text("weights:\n  tolerance_g: 9\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: weights"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("presort:\n  tray_sise: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="tray_sise"):
        load_config(typo)
