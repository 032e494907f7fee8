"""Caller roles: every operation and every role through the HSM, as the table says."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cardperso.hsm import HsmError, Operation, PermissionDeniedError, Role
from cardperso.hsm.roles import PERMISSIONS, is_allowed

from .calls import CALLS, Prepared, prepare
from .conftest import BACKENDS, make_harness


@pytest.fixture(scope="module", params=BACKENDS)
def prepared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prepared]:
    """One prepared HSM per backend for the whole matrix (building one takes a while)."""
    harness = make_harness(request.param, tmp_path_factory.mktemp(request.param))
    yield prepare(harness)
    harness.close()


def test_every_operation_has_a_rule_and_a_call() -> None:
    assert set(PERMISSIONS) == set(Operation)
    assert set(CALLS) == set(Operation)


def test_the_separation_later_stations_rely_on() -> None:
    # Personalization must never obtain KD in clear; initialization must not read issuer data.
    assert not is_allowed(Role.PERSONALIZATION, Operation.KD_FOR_INITIALIZATION)
    assert is_allowed(Role.INITIALIZATION, Operation.KD_FOR_INITIALIZATION)
    assert not is_allowed(Role.INITIALIZATION, Operation.DECRYPT_DATA)
    assert not is_allowed(Role.INITIALIZATION, Operation.TRANSLATE_TO_CARD)
    assert not is_allowed(Role.PERSONALIZATION, Operation.DECRYPT_DATA)
    # The clear PIN leaves only through the lettershop's PIN mailer.
    assert PERMISSIONS[Operation.PRINT_PIN_MAILER] == {Role.LETTERSHOP}
    # Key management is the officer's; custodians only enter components.
    assert {op for op in Operation if is_allowed(Role.CUSTODIAN, op)} == {
        Operation.LIST_KEYS,
        Operation.CEREMONY,
    }
    assert {op for op in Operation if is_allowed(Role.LETTERSHOP, op)} == {
        Operation.LIST_KEYS,
        Operation.PRINT_PIN_MAILER,
    }


@pytest.mark.parametrize("role", list(Role), ids=str)
@pytest.mark.parametrize("op", list(Operation), ids=str)
def test_permission_matrix(prepared: Prepared, role: Role, op: Operation) -> None:
    hsm = prepared.h
    session = hsm.hsm.session(role, "matrix")
    call = CALLS[op]
    denied = not is_allowed(role, op) or (
        op is Operation.DESTROY_KEY and role is Role.PERSONALIZATION
    )
    if denied:
        with pytest.raises(PermissionDeniedError) as info:
            call(session, prepared)
        assert info.value.operation == op.value
        assert hsm.audit is not None
        last = json.loads(hsm.audit.read_text().splitlines()[-1])
        assert (last["operation"], last["role"], last["result"]) == (
            op.value, role.value, "PermissionDeniedError"
        )  # fmt: skip
    else:
        try:
            call(session, prepared)
        except PermissionDeniedError:  # pragma: no cover - the failure being tested
            pytest.fail(f"{role} was refused {op}")
        except HsmError:
            raise


def test_personalization_destroys_its_session_keys(prepared: Prepared) -> None:
    hsm = prepared.h
    from .calls import CARD_PUBLIC

    pers = hsm.session(Role.PERSONALIZATION)
    keys = pers.ecdh_agree(CARD_PUBLIC)
    pers.destroy_key(keys.enc)
    pers.destroy_key(keys.mac)
