"""Loading profiles: the built-ins, round trips, and errors that name the YAML path."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from cardperso.errors import ConfigError
from cardperso.profiles import (
    Profile,
    ProfileError,
    dump_profile,
    list_builtin,
    load_builtin,
    load_profile,
    parse_profile,
    resolve_profile,
    schema,
)
from cardperso.profiles.loader import _builtin_dir


def _text(name: str) -> str:
    return (_builtin_dir() / f"{name}.yaml").read_text(encoding="utf-8")


def test_three_builtins_ship() -> None:
    assert list_builtin() == ["debit", "employee", "sim"]


@pytest.mark.parametrize("name", ["debit", "sim", "employee"])
def test_builtin_loads_and_round_trips(name: str) -> None:
    p = load_builtin(name)
    assert p.id == name and p.version == 1
    again = parse_profile(dump_profile(p), f"{name}.yaml")
    assert again == p
    # the dump is stable: dumping the reloaded profile gives the same text
    assert dump_profile(again) == dump_profile(p)


def test_debit_is_a_payment_card() -> None:
    p = load_builtin("debit")
    assert p.pins[0].method == schema.PinMethod.IBM3624 and p.pins[0].try_limit == 3
    assert p.magstripe is not None and p.magstripe.tracks == [1, 2]
    app = p.file("DF.PAY")
    assert app is not None and app.aid is not None and app.aid.startswith("F0")
    assert {k.route for k in p.keys} == {schema.KeyRoute.DERIVED_KD}
    assert p.input.unique == ["pan"]


def test_sim_follows_ts_51_011() -> None:
    p = load_builtin("sim")
    fids = {f.name: f.fid for f in p.files}
    assert fids["DF.GSM"] == "7F20" and fids["DF.TELECOM"] == "7F10"
    assert fids["EF.ICCID"] == "2FE2" and fids["EF.IMSI"] == "6F07"
    assert p.file_path("EF.IMSI") == (0x3F00, 0x7F20, 0x6F07)
    assert [x.name for x in p.pins] == ["PIN1", "PUK1", "PIN2", "PUK2"]
    assert {k.name: k.route.value for k in p.keys} == {
        "KI": "issuer_supplied",
        "OPC": "issuer_supplied",
        "ADM": "derived_kd",
        "KD_PERSO": "derived_kd",
    }


def test_employee_has_photo_and_card_generated_key_pair() -> None:
    p = load_builtin("employee")
    assert p.card_body.photo is not None and p.card_body.photo.field == "photo"
    gen = [k for k in p.keys if k.route == schema.KeyRoute.CARD_GENERATED]
    assert gen and all(k.algorithm == schema.KeyAlgorithm.EC_P256 for k in gen)
    assert p.loading.protection == schema.Protection.ECDH
    assert p.pins[0].method == schema.PinMethod.TRANSPORT and not p.pins[0].mailer


def _models() -> list[type[BaseModel]]:
    return [
        m
        for m in vars(schema).values()
        if isinstance(m, type)
        and issubclass(m, BaseModel)
        and m.__module__ == schema.__name__
        and not m.__name__.startswith("_")
    ]


def test_every_field_is_documented_and_forbids_extras() -> None:
    models = _models()
    assert len(models) > 20
    for m in models:
        assert m.model_config.get("extra") == "forbid", m.__name__
        assert m.__doc__, m.__name__
        for name, info in m.model_fields.items():
            assert info.description, f"{m.__name__}.{name} has no docstring"


def test_json_schema_carries_the_docs() -> None:
    js = Profile.model_json_schema()
    pin = js["$defs"]["PinObject"]["properties"]["try_limit"]
    assert "Wrong presentations" in pin["description"]


# -- errors name the YAML path -----------------------------------------------------

MUTATIONS = [
    (
        "size: 64",
        "size: 0",
        "debit.yaml: files[2].size: Input should be greater than or equal to 1",
    ),
    (
        "size: 64",
        "size: 16",
        "debit.yaml: data[0].content: up to 51 bytes do not fit 'EF.CH' (size 16)",
    ),
    (
        'fid: "5001"',
        "fid: 5001",
        "debit.yaml: files[2].fid: must be a quoted 4-digit hex FID string such as '3F00'",
    ),
    (
        'fid: "5001"',
        'fid: "3FFF"',
        "debit.yaml: files[2].fid: FID 3FFF is reserved (ISO/IEC 7816-4 §7.1.1)",
    ),
    ('fid: "5002"', 'fid: "5001"', "debit.yaml: files[3].fid: FID 5001 repeated in DF 'DF.PAY'"),
    (
        "aid: F0000000A0DEB101",
        "aid: F000",
        "debit.yaml: files[1].aid: AID must be 5 to 16 bytes",
    ),
    (
        'read: "pin:1"',
        'read: "pin:9"',
        "debit.yaml: files[4].access.read: no PIN object with ref 9",
    ),
    (
        'read: "pin:1"',
        'read: "pin:1+key:2"',
        "debit.yaml: files[4].access.read: PIN and key in one condition must share one "
        "reference number",
    ),
    (
        'read: "pin:1"',
        'read: "sometimes"',
        "debit.yaml: files[4].access.read: bad condition term 'sometimes': expected always, "
        "never, sm, pin:N or key:N",
    ),
    (
        '      create_ef: "key:2"\n      create_df',
        '      read: "key:2"\n      create_df',
        "debit.yaml: files[0].access.read: not an operation on a DF",
    ),
    (
        "    parent: DF.PAY\n    size: 24",
        "    parent: DF.PAYX\n    size: 24",
        "debit.yaml: files[3].parent: unknown DF 'DF.PAYX' "
        "(a DF must be listed before its children)",
    ),
    (
        "    record_length: 16\n",
        "",
        "debit.yaml: files[4].record_length: required for a linear_fixed EF",
    ),
    (
        "method: ibm3624",
        "method: magic",
        "debit.yaml: pins[0].method: Input should be 'transport', 'issuer_pin_block', "
        "'card_generated', 'bureau_random' or 'ibm3624'",
    ),
    (
        "    try_limit: 3\n",
        "    try_limit: 3\n    colour: red\n",
        "debit.yaml: pins[0].colour: unknown key",
    ),
    (
        "method: ibm3624",
        "method: bureau_random",
        "debit.yaml: pins[0].ibm3624: only for method ibm3624",
    ),
    (
        "    master_key: KM.DEBIT.PERSO\n",
        "",
        "debit.yaml: keys[0].master_key: required for route derived_kd",
    ),
    (
        "    algorithm: aes128\n    usage: [ext_auth, int_auth, sm]",
        "    algorithm: ec_p256\n    usage: [ext_auth, int_auth, sm]",
        "debit.yaml: keys[0].algorithm: ec_p256 keys, and only they, are generated on the card",
    ),
    (
        'service_code: "201"',
        "service_code: 201",
        "debit.yaml: magstripe.service_code: must be a quoted digit string such as '201'",
    ),
    (
        '{ kind: pvv, pin: PIN, pvki: "1", key: PVK.DEBIT }\n    - { kind: cvv',
        '{ kind: pvv, pin: PIX, pvki: "1", key: PVK.DEBIT }\n    - { kind: cvv',
        "debit.yaml: magstripe.discretionary[0].pin: no PIN object named 'PIX'",
    ),
    (
        "{pan|group4}",
        "{pan|grp}",
        "debit.yaml: card_body.emboss[0].text: bad template: unknown filter 'grp' (known: "
        "emboss, group4, initial, mmyy, track, upper, yymmdd)",
    ),
    (
        '"{embossed_name}", max_length: 26',
        '"{nickname}", max_length: 26',
        "debit.yaml: card_body.emboss[2].text: template names unknown input field 'nickname'",
    ),
    (
        "  key: KD_PERSO\n",
        "  key: MK_AC\n",
        "debit.yaml: loading.key: kd protection needs a symmetric key with usage sm",
    ),
    (
        "    pins: [PIN]\n",
        "    pins: [PIN, PUK]\n",
        "debit.yaml: letters.pin_mailer.pins[1]: no PIN object named 'PUK'",
    ),
    (
        "    mailer: true\n",
        "    mailer: false\n",
        "debit.yaml: letters.pin_mailer.pins[0]: PIN 'PIN' has mailer: false",
    ),
    (
        '          - { tag: "5F34", encoding: bcd, literal: "00", length: 1 }\n',
        '          - { tag: "7F34", encoding: bcd, literal: "00", length: 1 }\n',
        "debit.yaml: data[0].content[0].children[2].tag: a primitive element needs a "
        "primitive tag (b6 clear)",
    ),
    (
        '      - { tag: "57", encoding: binary, derived: track2_equivalent }',
        '      - { tag: "57", encoding: ascii, derived: track2_equivalent }',
        "debit.yaml: data[1].content[0].derived: track2_equivalent is bytes: use encoding binary",
    ),
    ("size: 64", "size: 64\n    size: 65", "debit.yaml:79:5: YAML error: duplicate key 'size'"),
    (
        "id: debit",
        "id: debit\n  oops: [",
        "debit.yaml:6:7: YAML error: mapping values are not allowed here",
    ),
]


@pytest.mark.parametrize(
    "old,new,expected", MUTATIONS, ids=[m[2].split(": ")[1] for m in MUTATIONS]
)
def test_error_names_file_and_yaml_path(old: str, new: str, expected: str) -> None:
    text = _text("debit")
    assert old in text
    with pytest.raises(ProfileError) as err:
        parse_profile(text.replace(old, new, 1), "debit.yaml")
    assert expected in err.value.problems
    assert str(err.value).splitlines() == err.value.problems
    assert isinstance(err.value, ConfigError)


def test_several_problems_are_all_listed() -> None:
    text = _text("debit").replace("size: 64", "size: 0").replace("try_limit: 3", "try_limit: 0")
    with pytest.raises(ProfileError) as err:
        parse_profile(text, "debit.yaml")
    assert err.value.problems == [
        "debit.yaml: files[2].size: Input should be greater than or equal to 1",
        "debit.yaml: pins[0].try_limit: Input should be greater than or equal to 1",
    ]


def test_not_a_mapping() -> None:
    with pytest.raises(ProfileError, match=r"^x.yaml: a profile is a YAML mapping"):
        parse_profile("- 1\n- 2\n", "x.yaml")


def test_missing_file_and_unknown_builtin(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"^nope.yaml: cannot read profile"):
        load_profile(tmp_path / "nope.yaml")
    with pytest.raises(ProfileError, match=r"^unknown profile 'credit' \(built-in profiles: "):
        load_builtin("credit")


def test_resolve_path_or_name(tmp_path: Path) -> None:
    f = tmp_path / "my.yaml"
    f.write_text(_text("sim").replace("id: sim", "id: my-sim"), encoding="utf-8")
    assert resolve_profile(str(f)).id == "my-sim"
    assert resolve_profile("sim").id == "sim"
    bad = tmp_path / "bad.yaml"
    bad.write_text(_text("sim").replace("size: 9\n", "size: 0\n", 1), encoding="utf-8")
    with pytest.raises(ProfileError, match=r"^bad.yaml: files\[\d+\]\.size: "):
        resolve_profile(bad)
