"""Every PIN method and key route can be described, and misdescriptions are caught."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from cardperso.profiles import ProfileError, parse_profile
from cardperso.profiles.loader import _builtin_dir
from cardperso.profiles.schema import KeyRoute, PinMethod

BASE: dict[str, Any] = yaml.safe_load((_builtin_dir() / "debit.yaml").read_text(encoding="utf-8"))


def _profile(change: Any) -> Any:
    data = copy.deepcopy(BASE)
    change(data)
    return parse_profile(yaml.safe_dump(data, sort_keys=False), "p.yaml")


def _problems(change: Any) -> list[str]:
    with pytest.raises(ProfileError) as err:
        _profile(change)
    return err.value.problems


def _pin(**fields: Any) -> Any:
    def change(d: dict[str, Any]) -> None:
        pin = {"name": "PIN", "ref": 1, "length": 4, "try_limit": 3, **fields}
        d["pins"][0] = {k: v for k, v in pin.items() if v is not None}
        if not pin.get("mailer"):
            d["letters"].pop("pin_mailer")
        d["input"]["fields"].append(
            {"name": "pin_block", "rule": "hex", "min_length": 16, "max_length": 16}
        )
        d["input"]["fields"].append({"name": "pin_offset", "rule": "digits", "max_length": 12})

    return change


@pytest.mark.parametrize(
    "fields",
    [
        {"method": "transport", "transport_value": "0000"},
        {
            "method": "issuer_pin_block",
            "mailer": True,
            "issuer": {"field": "pin_block", "format": "iso4", "key": "ZPK.ISSUER"},
        },
        {"method": "card_generated", "mailer": True, "return_to_issuer": {"key": "ZPK.ISSUER"}},
        {"method": "bureau_random", "mailer": True},
        {"method": "bureau_random", "mailer": True, "return_to_issuer": {"key": "ZPK.ISSUER"}},
        {
            "method": "ibm3624",
            "mailer": True,
            "ibm3624": {"pdk": "PDK.X", "offset_field": "pin_offset", "pad": "0"},
        },
    ],
    ids=lambda f: f["method"] + ("+return" if "return_to_issuer" in f else ""),
)
def test_each_pin_method_is_accepted(fields: dict[str, Any]) -> None:
    p = _profile(_pin(**fields))
    assert p.pins[0].method == PinMethod(fields["method"])


@pytest.mark.parametrize(
    "fields,problem",
    [
        ({"method": "transport"}, "p.yaml: pins[0].transport_value: required for method transport"),
        (
            {"method": "transport", "transport_value": "0000", "mailer": True},
            "p.yaml: pins[0].mailer: a transport PIN has no PIN letter",
        ),
        (
            {"method": "issuer_pin_block", "mailer": True},
            "p.yaml: pins[0].issuer: required for method issuer_pin_block",
        ),
        (
            {
                "method": "issuer_pin_block",
                "mailer": True,
                "issuer": {"field": "pin_offset", "key": "ZPK.ISSUER"},
            },
            "p.yaml: pins[0].issuer.field: must name a hex field (the PIN block)",
        ),
        (
            {"method": "ibm3624", "mailer": True, "ibm3624": {"pdk": "P", "offset_field": "nope"}},
            "p.yaml: pins[0].ibm3624.offset_field: unknown input field 'nope'",
        ),
        (
            {
                "method": "ibm3624",
                "mailer": True,
                "ibm3624": {"pdk": "P"},
                "return_to_issuer": {"key": "K"},
            },
            "p.yaml: pins[0].return_to_issuer: only for bureau_random or card_generated",
        ),
        (
            {"method": "bureau_random", "mailer": True, "puk": "PIN"},
            "p.yaml: pins[0].puk: 'PIN' is not a PUK (is_puk: true)",
        ),
        (
            {"method": "bureau_random", "mailer": True, "length": 13},
            "p.yaml: pins[0].length: Input should be less than or equal to 12",
        ),
    ],
)
def test_pin_misdescriptions(fields: dict[str, Any], problem: str) -> None:
    assert problem in _problems(_pin(**fields))


def _key(index: int, **fields: Any) -> Any:
    def change(d: dict[str, Any]) -> None:
        d["keys"][index] = {**d["keys"][index], **fields}
        d["keys"][index] = {k: v for k, v in d["keys"][index].items() if v is not None}
        d["input"]["fields"].append(
            {"name": "k_crypt", "rule": "hex", "min_length": 32, "max_length": 32}
        )

    return change


def test_each_key_route_is_accepted() -> None:
    def change(d: dict[str, Any]) -> None:
        _key(
            3,
            route="issuer_supplied",
            master_key=None,
            derivation=None,
            diversifier=None,
            field="k_crypt",
            transport_key="KEK.ISSUER",
        )(d)
        d["keys"][4] = {
            "name": "MK_SMC",
            "ref": 5,
            "route": "bureau_random",
            "algorithm": "aes256",
            "usage": ["sm"],
            "return_to_issuer": "KEK.ISSUER",
        }
        d["keys"].append(
            {
                "name": "SIGN",
                "ref": 6,
                "route": "card_generated",
                "algorithm": "ec_p256",
                "usage": ["int_auth"],
            }
        )

    p = _profile(change)
    assert [k.route for k in p.keys] == [
        KeyRoute.DERIVED_KD,
        KeyRoute.DERIVED_KD,
        KeyRoute.DERIVED_KD,
        KeyRoute.ISSUER_SUPPLIED,
        KeyRoute.BUREAU_RANDOM,
        KeyRoute.CARD_GENERATED,
    ]
    assert p.keys[0].usage_bits == 0x01 | 0x02 | 0x04
    assert [k.algorithm.card_code for k in p.keys[2:5]] == [0x01, 0x01, 0x05]


@pytest.mark.parametrize(
    "index,fields,problem",
    [
        (
            3,
            {"route": "issuer_supplied", "master_key": None},
            "p.yaml: keys[3].field: required for route issuer_supplied",
        ),
        (
            3,
            {"route": "issuer_supplied", "master_key": None, "field": "k_crypt"},
            "p.yaml: keys[3].transport_key: required for route issuer_supplied",
        ),
        (3, {"route": "bureau_random"}, "p.yaml: keys[3].master_key: only for route derived_kd"),
        (
            0,
            {"usage": ["ext_auth", "key_agreement"]},
            "p.yaml: keys[0].usage[1]: key_agreement is not a usage of a symmetric key",
        ),
        (1, {"ref": 1}, "p.yaml: keys[1].ref: key reference 1 repeated"),
        (
            3,
            {"diversifier": "serial_no"},
            "p.yaml: keys[3].diversifier: unknown input field 'serial_no'",
        ),
        (
            2,
            {"return_to_issuer": "KEK.X"},
            "p.yaml: keys[2].return_to_issuer: only for bureau_random or card_generated",
        ),
    ],
)
def test_key_misdescriptions(index: int, fields: dict[str, Any], problem: str) -> None:
    assert problem in _problems(_key(index, **fields))
