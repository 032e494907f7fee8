"""Key ceremonies: components from separate custodians, each checked by its KCV."""

from __future__ import annotations

import json

import pytest

from cardperso.crypto.ciphers import TDES
from cardperso.crypto.parity import has_odd_parity
from cardperso.crypto.secret import SecretBytes
from cardperso.hsm import (
    CeremonyError,
    HsmError,
    KeyAlgorithm,
    KeyUsage,
    PermissionDeniedError,
    Role,
)
from cardperso.hsm.ceremony import ComponentCombiner, key_check_value

from .support import H, Harness, watch_key

T2, A128 = KeyAlgorithm.TDES_2KEY, KeyAlgorithm.AES_128
# Three components of 0123456789ABCDEFFEDCBA9876543210 (KCV 08D7B4), each odd parity.
PARTS = [
    H("1C587F1C13EC5104B640A2FE34CB8A9D"),
    H("A1F40D1CC786FBB6ABA6CE01C110D5EF"),
]
PARTS.append(
    bytes(a ^ b ^ c for a, b, c in zip(H("0123456789ABCDEFFEDCBA9876543210"), *PARTS, strict=True))
)


def kcv(part: bytes, alg: KeyAlgorithm = T2) -> str:
    return key_check_value(alg, part)


@pytest.fixture(autouse=True)
def _watch() -> None:
    for p in PARTS:
        watch_key(p)
    watch_key(H("0123456789ABCDEFFEDCBA9876543210"))


def test_three_custodians_make_the_key(hsm: Harness) -> None:
    c = hsm.session(Role.CUSTODIAN).begin_ceremony("zmk", T2, KeyUsage.KEK, components=3)
    shown = [c.add_component(n, SecretBytes(p), kcv(p)) for n, p in zip("xyz", PARTS, strict=True)]
    assert shown == [kcv(p) for p in PARTS]
    assert c.custodians == ("x", "y", "z")
    handle = c.complete(expected_kcv="08D7B4")
    assert handle.kcv == "08D7B4" and handle.usage is KeyUsage.KEK
    assert handle in hsm.officer.list_keys()


def test_two_components_and_a_four_digit_kcv(hsm: Harness) -> None:
    first = PARTS[0]
    second = bytes(a ^ b for a, b in zip(H("0123456789ABCDEFFEDCBA9876543210"), first, strict=True))
    watch_key(second)
    c = hsm.officer.begin_ceremony("zmk2", T2, KeyUsage.KEK)
    c.add_component("alice", SecretBytes(first), kcv(first)[:4])
    c.add_component("bob", SecretBytes(second), kcv(second).lower())
    assert c.complete("08d7").kcv == "08D7B4"


def test_combined_tdes_key_gets_odd_parity() -> None:
    comb = ComponentCombiner(T2, 2)
    comb.add("a", SecretBytes(PARTS[0]), kcv(PARTS[0]))
    comb.add("b", SecretBytes(PARTS[1]), kcv(PARTS[1]))
    value, check = comb.combine()
    assert has_odd_parity(value.reveal())
    raw = bytes(a ^ b for a, b in zip(PARTS[0], PARTS[1], strict=True))
    assert check == kcv(raw)  # parity bits do not change the KCV
    assert TDES(value.reveal()).encrypt_ecb(bytes(8)) == TDES(raw).encrypt_ecb(bytes(8))


@pytest.mark.parametrize("n", [0, 1, 4])
def test_wrong_component_counts_are_refused(hsm: Harness, n: int) -> None:
    with pytest.raises(CeremonyError, match="2 to 3 components"):
        hsm.officer.begin_ceremony("k", T2, KeyUsage.KEK, components=n)


def test_a_wrong_kcv_is_refused_and_names_the_custodian(hsm: Harness) -> None:
    c = hsm.officer.begin_ceremony("k", T2, KeyUsage.KEK)
    with pytest.raises(CeremonyError, match="'alice' does not match its KCV"):
        c.add_component("alice", SecretBytes(PARTS[0]), kcv(PARTS[1]))
    for bad in ("", "12", "XYZXYZ", "1234567"):
        with pytest.raises(CeremonyError, match="KCV"):
            c.add_component("alice", SecretBytes(PARTS[0]), bad)
    assert c.custodians == ()


def test_the_same_custodian_cannot_enter_twice(hsm: Harness) -> None:
    c = hsm.officer.begin_ceremony("k", T2, KeyUsage.KEK)
    c.add_component("alice", SecretBytes(PARTS[0]), kcv(PARTS[0]))
    with pytest.raises(CeremonyError, match="already entered"):
        c.add_component("Alice", SecretBytes(PARTS[1]), kcv(PARTS[1]))
    with pytest.raises(CeremonyError, match="1 of 2"):
        c.complete()


def test_more_refusals(hsm: Harness) -> None:
    so = hsm.officer
    c = so.begin_ceremony("k", T2, KeyUsage.KEK)
    with pytest.raises(CeremonyError, match="16 bytes"):
        c.add_component("alice", SecretBytes(PARTS[0][:8]), kcv(PARTS[0]))
    with pytest.raises(CeremonyError, match="custodian name"):
        c.add_component("", SecretBytes(PARTS[0]), kcv(PARTS[0]))
    c.add_component("alice", SecretBytes(PARTS[0]), kcv(PARTS[0]))
    c.add_component("bob", SecretBytes(PARTS[0]), kcv(PARTS[0]))
    with pytest.raises(CeremonyError, match="already in"):
        c.add_component("carol", SecretBytes(PARTS[1]), kcv(PARTS[1]))
    with pytest.raises(CeremonyError, match="cancel out"):
        c.complete()
    c2 = so.begin_ceremony("k2", T2, KeyUsage.KEK)
    c2.add_component("alice", SecretBytes(PARTS[0]), kcv(PARTS[0]))
    c2.add_component("bob", SecretBytes(PARTS[1]), kcv(PARTS[1]))
    with pytest.raises(CeremonyError, match="expected KCV"):
        c2.complete("000000")
    with pytest.raises(CeremonyError, match="EC keys"):
        so.begin_ceremony("ec", KeyAlgorithm.EC_P256, KeyUsage.KEY_AGREEMENT)
    hsm.new("taken", A128, KeyUsage.MAC)
    with pytest.raises(HsmError, match="already exists"):
        so.begin_ceremony("taken", A128, KeyUsage.MAC)
    assert {h.label for h in so.list_keys()} == {"taken"}


def test_abort_and_finish_forget_the_components(hsm: Harness) -> None:
    c = hsm.officer.begin_ceremony("k", T2, KeyUsage.KEK)
    c.add_component("alice", SecretBytes(PARTS[0]), kcv(PARTS[0]))
    c.abort()
    with pytest.raises(HsmError, match="finished"):
        c.add_component("bob", SecretBytes(PARTS[1]), kcv(PARTS[1]))
    assert hsm.officer.list_keys() == []
    d = hsm.officer.begin_ceremony("k", T2, KeyUsage.KEK)
    d.add_component("alice", SecretBytes(PARTS[0]), kcv(PARTS[0]))
    d.add_component("bob", SecretBytes(PARTS[1]), kcv(PARTS[1]))
    d.complete()
    with pytest.raises(HsmError, match="finished"):
        d.complete()


def test_only_officers_and_custodians_hold_ceremonies(hsm: Harness) -> None:
    for role in (Role.DATAPREP, Role.PERSONALIZATION, Role.LETTERSHOP, Role.QC):
        with pytest.raises(PermissionDeniedError):
            hsm.session(role).begin_ceremony("k", T2, KeyUsage.KEK)


def test_audit_names_each_custodian_and_never_a_component(hsm: Harness) -> None:
    c = hsm.session(Role.CUSTODIAN).begin_ceremony("zmk", T2, KeyUsage.KEK, components=3)
    for name, part in zip(("alice", "bob", "carol"), PARTS, strict=True):
        c.add_component(name, SecretBytes(part), kcv(part))
    c.complete()
    assert hsm.audit is not None
    records = [json.loads(line) for line in hsm.audit.read_text().splitlines()]
    steps = [r["detail"] for r in records if r["operation"] == "ceremony"]
    assert [s["step"] for s in steps] == [
        "begin",
        "component",
        "component",
        "component",
        "complete",
    ]
    assert [s.get("custodian") for s in steps[1:4]] == ["alice", "bob", "carol"]
    assert [s["component_kcv"] for s in steps[1:4]] == [kcv(p) for p in PARTS]
    assert steps[4]["custodians"] == "alice,bob,carol"
    text = hsm.audit.read_text()
    for part in PARTS:
        assert part.hex() not in text.lower()
