"""Operators, roles and who may do what.

Passwords are kept only as scrypt hashes (``hashlib.scrypt``, a random 16-byte salt
per operator, the cost parameters stored beside the hash so they can be raised
later) and compared with :func:`hmac.compare_digest`. An unknown name costs the
same scrypt as a wrong password, so timing does not tell names apart.
After :data:`MAX_FAILED_LOGINS` wrong passwords in a row the account is locked
until a security officer unlocks it.

:func:`authenticate` returns a :class:`Principal`; the use cases take a principal
and call :func:`authorize`, which re-reads the operator (so a revoked role or a
disabled account takes effect at once) and refuses with :class:`PermissionDenied`.
Refusals and failed logins are audited even though they abort the transaction:
the errors implement :class:`cardperso.production.db.DeferredWork`, and
:meth:`Database.transaction` commits their audit record after the rollback.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardperso.crypto.rand import RandomSource, SystemRandom
from cardperso.crypto.secret import SecretStr
from cardperso.errors import CardpersoError, InputError
from cardperso.production import audit
from cardperso.production.db import Database
from cardperso.production.models import Operator, OperatorRole, Role

__all__ = [
    "DEFAULT_SCRYPT",
    "MAX_FAILED_LOGINS",
    "PERMISSIONS",
    "Action",
    "AuthenticationFailed",
    "PermissionDenied",
    "Principal",
    "ScryptParams",
    "authenticate",
    "authorize",
    "create_operator",
    "login",
    "may",
    "set_active",
    "set_password",
    "unlock",
]

MAX_FAILED_LOGINS = 5
MIN_PASSWORD_LEN = 10
SALT_LEN = 16
HASH_LEN = 32


@dataclass(frozen=True)
class ScryptParams:
    n: int = 2**15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1) or self.r < 1 or self.p < 1:
            raise ValueError("scrypt n must be a power of two >= 2; r, p >= 1")


DEFAULT_SCRYPT = ScryptParams()


class Action(StrEnum):
    IMPORT_BATCH = "import_batch"
    START_BATCH = "start_batch"
    PAUSE_BATCH = "pause_batch"
    RESUME_BATCH = "resume_batch"
    CANCEL_BATCH = "cancel_batch"
    RELEASE_JOB = "release_job"
    RECEIVE_STOCK = "receive_stock"
    MANAGE_OPERATORS = "manage_operators"
    VIEW_REPORTS = "view_reports"
    VERIFY_AUDIT = "verify_audit"
    INITIALIZE_STOCK = "initialize_stock"
    DEPERSONALIZE_CARD = "depersonalize_card"
    RUN_LETTERSHOP = "run_lettershop"


_S, _O, _SO, _A = Role.SUPERVISOR, Role.OPERATOR, Role.SECURITY_OFFICER, Role.AUDITOR
_I = Role.INIT_OPERATOR
PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.IMPORT_BATCH: frozenset({_S}),
    Action.START_BATCH: frozenset({_S, _O}),
    Action.PAUSE_BATCH: frozenset({_S, _O}),
    Action.RESUME_BATCH: frozenset({_S, _O}),
    Action.CANCEL_BATCH: frozenset({_S}),
    Action.RELEASE_JOB: frozenset({_S}),
    Action.RECEIVE_STOCK: frozenset({_S, _O}),
    Action.MANAGE_OPERATORS: frozenset({_SO}),
    Action.VIEW_REPORTS: frozenset({_S, _SO, _A}),
    Action.VERIFY_AUDIT: frozenset({_S, _SO, _A}),
    Action.INITIALIZE_STOCK: frozenset({_I}),
    Action.DEPERSONALIZE_CARD: frozenset({_S}),
    Action.RUN_LETTERSHOP: frozenset({_S, _O}),
}
"""Who may do what. Security officers manage people but run no batches; auditors
only read; operators run the line but neither import nor cancel. Initialization
and personalization are separate rooms: only an init operator initializes stock,
and an init operator may do nothing else (no batch, so no personalization data).
Depersonalizing a card (a test card, a product that allows it) is a supervisor's."""


@dataclass(frozen=True)
class Principal:
    """An authenticated operator, as returned by :func:`authenticate`."""

    operator_id: int
    name: str
    roles: frozenset[Role]


class AuthenticationFailed(CardpersoError):
    """Unknown operator, wrong password, disabled or locked account (one message for all)."""

    exit_code = 7

    def __init__(self, name: str, when: datetime, reason: str) -> None:
        super().__init__("authentication failed")
        self._name, self._when, self._reason = name, when, reason

    def after_rollback(self, session: Session) -> None:
        op = session.scalars(select(Operator).where(Operator.name == self._name)).first()
        if op is not None and self._reason == "wrong password":
            op.failed_logins += 1
        audit.append(
            session,
            actor=self._name[:64],
            action="login",
            obj=f"operator:{self._name[:50]}",
            result="refused",
            when=self._when,
            detail={"reason": self._reason},
        )


class PermissionDenied(CardpersoError):
    """The operator lacks the role for an action (names the operator and action)."""

    exit_code = 7

    def __init__(self, who: str, action: Action, obj: str, when: datetime) -> None:
        super().__init__(f"operator {who!r} may not {action.value.replace('_', ' ')}")
        self.who, self.action, self.obj, self._when = who, action, obj, when

    def after_rollback(self, session: Session) -> None:
        audit.append(
            session,
            actor=self.who,
            action=self.action.value,
            obj=self.obj,
            result="denied",
            when=self._when,
        )


def _hash(password: str, salt: bytes, params: ScryptParams) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=256 * params.n * params.r + (1 << 20),
        dklen=HASH_LEN,
    )


def _reveal(password: str | SecretStr) -> str:
    return password.reveal() if isinstance(password, SecretStr) else password


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LEN:
        raise InputError(
            f"password must have at least {MIN_PASSWORD_LEN} characters", field="password"
        )


def _set_hash(op: Operator, password: str, params: ScryptParams, rng: RandomSource | None) -> None:
    salt = (rng or SystemRandom()).random_bytes(SALT_LEN)
    op.salt = salt
    op.scrypt_n, op.scrypt_r, op.scrypt_p = params.n, params.r, params.p
    op.password_hash = _hash(password, salt, params)


def create_operator(
    session: Session,
    name: str,
    password: str | SecretStr,
    roles: Iterable[Role],
    *,
    by: Principal | None,
    when: datetime,
    params: ScryptParams = DEFAULT_SCRYPT,
    rng: RandomSource | None = None,
) -> Operator:
    """Add an operator. ``by`` must be a security officer, except for the very first
    operator (bootstrap, ``by=None``), who must be a security officer."""
    role_set = frozenset(Role(r) for r in roles)
    if not role_set:
        raise InputError("an operator needs at least one role", field="roles")
    if not (1 <= len(name) <= 64 and name.isprintable() and name.strip() == name):
        raise InputError("operator name must be 1..64 printable characters", field="name")
    clear = _reveal(password)
    _check_password(clear)
    if by is None:
        if session.scalar(select(func.count()).select_from(Operator)):
            raise PermissionDenied("(nobody)", Action.MANAGE_OPERATORS, f"operator:{name}", when)
        if Role.SECURITY_OFFICER not in role_set:
            raise InputError("the first operator must be a security officer", field="roles")
        actor = name
    else:
        authorize(session, by, Action.MANAGE_OPERATORS, f"operator:{name}", when)
        actor = by.name
    if session.scalars(select(Operator.id).where(Operator.name == name)).first() is not None:
        raise InputError(f"operator {name!r} exists", field="name")
    op = Operator(name=name, active=True, failed_logins=0, created_at=when)
    _set_hash(op, clear, params, rng)
    op.roles = [OperatorRole(role=r) for r in sorted(role_set)]
    session.add(op)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="create_operator",
        obj=f"operator:{name}",
        result="ok",
        when=when,
        detail={"roles": sorted(r.value for r in role_set)},
    )
    return op


_DUMMY_SALT = b"\0" * SALT_LEN


def authenticate(
    session: Session,
    name: str,
    password: str | SecretStr,
    *,
    when: datetime,
) -> Principal:
    """Check a password; returns the principal or raises :class:`AuthenticationFailed`.

    Use inside :meth:`Database.transaction` so a refusal is audited and counted, or
    call :func:`login`, which also keeps the slow scrypt outside the transaction.
    """
    return _authenticate(session, name, _reveal(password), when, None)


def _authenticate(
    session: Session,
    name: str,
    clear: str,
    when: datetime,
    precomputed: tuple[bytes, ScryptParams, bytes] | None,
) -> Principal:
    op = session.scalars(select(Operator).where(Operator.name == name)).first()
    if op is None:
        if precomputed is None:
            _hash(clear, _DUMMY_SALT, DEFAULT_SCRYPT)  # same cost as a real check
        raise AuthenticationFailed(name, when, "unknown operator")
    params = ScryptParams(op.scrypt_n, op.scrypt_r, op.scrypt_p)
    if precomputed is not None and precomputed[:2] == (op.salt, params):
        digest = precomputed[2]
    else:
        digest = _hash(clear, op.salt, params)
    ok = hmac.compare_digest(digest, op.password_hash)
    if not op.active:
        raise AuthenticationFailed(name, when, "disabled")
    if op.failed_logins >= MAX_FAILED_LOGINS:
        raise AuthenticationFailed(name, when, "locked")
    if not ok:
        raise AuthenticationFailed(name, when, "wrong password")
    op.failed_logins = 0
    audit.append(
        session, actor=name, action="login", obj=f"operator:{name}", result="ok", when=when
    )
    return Principal(op.id, op.name, op.role_set)


def login(db: Database, name: str, password: str | SecretStr) -> Principal:
    """Authenticate with the scrypt work done outside any write transaction (a
    SQLite write transaction holds the database's writer lock), then check and
    record the result in one short transaction. Refusals are audited and counted."""
    clear = _reveal(password)
    with db.reader() as s:
        op = s.scalars(select(Operator).where(Operator.name == name)).first()
        params = ScryptParams(op.scrypt_n, op.scrypt_r, op.scrypt_p) if op else DEFAULT_SCRYPT
        salt = op.salt if op else _DUMMY_SALT
    pre = (salt, params, _hash(clear, salt, params))
    with db.transaction() as s:
        return _authenticate(s, name, clear, db.now(), pre)


def may(principal: Principal, action: Action) -> bool:
    """Whether the principal's roles allow ``action`` (no database check)."""
    return bool(principal.roles & PERMISSIONS[action])


def authorize(
    session: Session, principal: Principal, action: Action, obj: str, when: datetime
) -> Operator:
    """Re-read the operator and check it is active and holds a role for ``action``."""
    op = session.get(Operator, principal.operator_id)
    if (
        op is None
        or op.name != principal.name
        or not op.active
        or op.failed_logins >= MAX_FAILED_LOGINS
        or not (op.role_set & PERMISSIONS[action])
    ):
        raise PermissionDenied(principal.name, action, obj, when)
    return op


def _managed(session: Session, by: Principal, name: str, when: datetime) -> Operator:
    authorize(session, by, Action.MANAGE_OPERATORS, f"operator:{name}", when)
    op = session.scalars(select(Operator).where(Operator.name == name)).first()
    if op is None:
        raise InputError(f"no operator {name!r}", field="name")
    return op


def set_password(
    session: Session,
    name: str,
    password: str | SecretStr,
    *,
    by: Principal,
    when: datetime,
    params: ScryptParams = DEFAULT_SCRYPT,
    rng: RandomSource | None = None,
) -> None:
    """A security officer sets a new password (also clears the failed-login count)."""
    op = _managed(session, by, name, when)
    clear = _reveal(password)
    _check_password(clear)
    _set_hash(op, clear, params, rng)
    op.failed_logins = 0
    audit.append(
        session,
        actor=by.name,
        action="set_password",
        obj=f"operator:{name}",
        result="ok",
        when=when,
    )


def unlock(session: Session, name: str, *, by: Principal, when: datetime) -> None:
    """A security officer clears the failed-login lock."""
    op = _managed(session, by, name, when)
    op.failed_logins = 0
    audit.append(
        session,
        actor=by.name,
        action="unlock_operator",
        obj=f"operator:{name}",
        result="ok",
        when=when,
    )


def set_active(session: Session, name: str, active: bool, *, by: Principal, when: datetime) -> None:
    """A security officer disables (or re-enables) an account."""
    op = _managed(session, by, name, when)
    if op.id == by.operator_id and not active:
        raise InputError("a security officer cannot disable their own account", field="name")
    op.active = active
    audit.append(
        session,
        actor=by.name,
        action="enable_operator" if active else "disable_operator",
        obj=f"operator:{name}",
        result="ok",
        when=when,
    )
