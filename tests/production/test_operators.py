"""Operators: passwords, lockout, roles, and refusals that are audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cardperso.crypto.secret import SecretStr
from cardperso.errors import CardpersoError, InputError
from cardperso.production import audit, operators, repo
from cardperso.production.crypto_fields import SoftFieldCipher
from cardperso.production.db import Database
from cardperso.production.models import AuditLog, Operator, Role
from cardperso.production.operators import (
    PERMISSIONS,
    Action,
    AuthenticationFailed,
    PermissionDenied,
    Principal,
)

from .support import FAST_SCRYPT, PASSWORD, Staff, setup_batch


def _login(db: Database, name: str, password: str | SecretStr = PASSWORD) -> Principal:
    return operators.login(db, name, password)


def test_authenticate_primitive(db: Database) -> None:
    Staff(db)
    with db.transaction() as s:
        assert operators.authenticate(s, "sam", PASSWORD, when=db.now()).name == "sam"
    with pytest.raises(AuthenticationFailed), db.transaction() as s:
        operators.authenticate(s, "sam", "nope nope nope", when=db.now())
    with db.reader() as s:
        assert s.scalars(select(Operator).where(Operator.name == "sam")).one().failed_logins == 1


def _last_audit(db: Database) -> AuditLog:
    with db.reader() as s:
        return s.scalars(select(AuditLog).order_by(AuditLog.seq.desc()).limit(1)).one()


def test_bootstrap_rules(db: Database) -> None:
    with pytest.raises(InputError, match="security officer"), db.transaction() as s:
        operators.create_operator(
            s, "sam", PASSWORD, [Role.SUPERVISOR], by=None, when=db.now(), params=FAST_SCRYPT
        )
    staff = Staff(db)
    with pytest.raises(PermissionDenied), db.transaction() as s:
        operators.create_operator(
            s,
            "eve",
            PASSWORD,
            [Role.SECURITY_OFFICER],
            by=None,
            when=db.now(),
            params=FAST_SCRYPT,
        )
    with pytest.raises(PermissionDenied), db.transaction() as s:
        operators.create_operator(
            s,
            "eve",
            PASSWORD,
            [Role.SUPERVISOR],
            by=staff.supervisor,
            when=db.now(),
            params=FAST_SCRYPT,
        )
    with pytest.raises(InputError, match="at least"), db.transaction() as s:
        operators.create_operator(
            s,
            "eve",
            "short",
            [Role.SUPERVISOR],
            by=staff.security_officer,
            when=db.now(),
            params=FAST_SCRYPT,
        )
    with pytest.raises(InputError, match="exists"), db.transaction() as s:
        operators.create_operator(
            s,
            "sam",
            PASSWORD,
            [Role.SUPERVISOR],
            by=staff.security_officer,
            when=db.now(),
            params=FAST_SCRYPT,
        )


def test_password_storage(db: Database) -> None:
    Staff(db)
    with db.reader() as s:
        ops = {o.name: o for o in s.scalars(select(Operator))}
    assert ops["sam"].salt != ops["olga"].salt
    assert ops["sam"].password_hash != ops["olga"].password_hash  # same password, own salt
    assert PASSWORD.encode() not in ops["sam"].password_hash
    assert (ops["sam"].scrypt_n, ops["sam"].scrypt_r, ops["sam"].scrypt_p) == (16, 1, 1)
    assert len(ops["sam"].password_hash) == 32 and len(ops["sam"].salt) == 16


def test_login_and_refusals(db: Database) -> None:
    Staff(db)
    p = _login(db, "sam", SecretStr(PASSWORD))
    assert p.name == "sam" and p.roles == frozenset({Role.SUPERVISOR})
    assert (_last_audit(db).action, _last_audit(db).result) == ("login", "ok")
    messages = set()
    for name, pw in (("sam", "wrong password!"), ("nobody", PASSWORD)):
        with pytest.raises(AuthenticationFailed) as info:
            _login(db, name, pw)
        messages.add(str(info.value))
        row = _last_audit(db)  # committed although the transaction failed
        assert (row.action, row.result, row.actor) == ("login", "refused", name)
        assert "wrong password!" not in row.detail and PASSWORD not in row.detail
    assert messages == {"authentication failed"}
    with db.reader() as s:
        assert s.scalars(select(Operator).where(Operator.name == "sam")).one().failed_logins == 1
    _login(db, "sam")  # success resets the count
    with db.reader() as s:
        assert s.scalars(select(Operator).where(Operator.name == "sam")).one().failed_logins == 0


def test_lockout_and_unlock(db: Database) -> None:
    staff = Staff(db)
    for _ in range(operators.MAX_FAILED_LOGINS):
        with pytest.raises(AuthenticationFailed):
            _login(db, "olga", "not the password")
    with pytest.raises(AuthenticationFailed):
        _login(db, "olga")  # right password, locked account
    assert "locked" in _last_audit(db).detail
    with pytest.raises(PermissionDenied), db.transaction() as s:
        operators.authorize(s, staff.operator, Action.START_BATCH, "batch:1", db.now())
    with db.transaction() as s:
        operators.unlock(s, "olga", by=staff.security_officer, when=db.now())
    assert _login(db, "olga").name == "olga"
    with db.transaction() as s:
        operators.set_password(
            s,
            "olga",
            "a brand new pass",
            by=staff.security_officer,
            when=db.now(),
            params=FAST_SCRYPT,
        )
    with pytest.raises(AuthenticationFailed):
        _login(db, "olga")
    assert _login(db, "olga", "a brand new pass").name == "olga"


def test_disabled_account(db: Database) -> None:
    staff = Staff(db)
    with db.transaction() as s:
        operators.set_active(s, "olga", False, by=staff.security_officer, when=db.now())
    with pytest.raises(AuthenticationFailed):
        _login(db, "olga")
    # a principal obtained before the account was disabled no longer works either
    with pytest.raises(PermissionDenied), db.transaction() as s:
        operators.authorize(s, staff.operator, Action.START_BATCH, "batch:1", db.now())
    with pytest.raises(InputError), db.transaction() as s:
        operators.set_active(s, "sofia", False, by=staff.security_officer, when=db.now())


@pytest.mark.parametrize(
    ("who", "action", "allowed"),
    [
        ("operator", "start", True),
        ("operator", "resume", True),
        ("operator", "cancel", False),
        ("supervisor", "cancel", True),
        ("auditor", "start", False),
        ("auditor", "resume", False),
        ("security_officer", "start", False),
        ("security_officer", "cancel", False),
    ],
)
def test_who_may_start_resume_cancel(
    db: Database, staff: Staff, cipher: SoftFieldCipher, who: str, action: str, allowed: bool
) -> None:
    batch_id = setup_batch(db, staff, cipher, 2, 2, start=action != "start")
    if action == "resume":
        with db.transaction() as s:
            repo.pause_batch(s, batch_id, by=staff.supervisor, when=db.now())
    principal: Principal = getattr(staff, who)
    fn = {"start": repo.start_batch, "resume": repo.resume_batch, "cancel": repo.cancel_batch}
    with db.reader() as s:
        before = audit.head(s)[0]
    if allowed:
        with db.transaction() as s:
            fn[action](s, batch_id, by=principal, when=db.now())
        row = _last_audit(db)
        assert (row.actor, row.result) == (principal.name, "ok")
    else:
        with pytest.raises(PermissionDenied) as info, db.transaction() as s:
            fn[action](s, batch_id, by=principal, when=db.now())
        assert isinstance(info.value, CardpersoError)
        assert principal.name in str(info.value)
        row = _last_audit(db)
        assert row.seq == before + 1
        assert (row.actor, row.action, row.result) == (principal.name, f"{action}_batch", "denied")
    with db.reader() as s:
        assert audit.verify_chain(s) == []


def test_permission_table_is_complete() -> None:
    assert set(PERMISSIONS) == set(Action)
    assert Role.OPERATOR not in PERMISSIONS[Action.CANCEL_BATCH]
    assert not any(
        Role.AUDITOR in roles
        for a, roles in PERMISSIONS.items()
        if a not in (Action.VIEW_REPORTS, Action.VERIFY_AUDIT)
    )
    p = Principal(1, "x", frozenset({Role.AUDITOR}))
    assert operators.may(p, Action.VERIFY_AUDIT) and not operators.may(p, Action.START_BATCH)
