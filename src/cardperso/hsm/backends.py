"""Open the security module a command names: a soft HSM keystore file, or a PKCS#11
token by URL. The one place the command line chooses a backend, so every command
(key ceremonies, data preparation, the line, the lettershop) runs on either.

``where`` is a path (the soft HSM's keystore, its audit log beside it) or
``pkcs11:<module path>?token=<label>`` (see :func:`~cardperso.hsm.pkcs11.parse_pkcs11_url`);
the secret is the keystore passphrase or the token's user PIN. A token's audit log
is ``audit`` when given, else ``$CARDPERSO_HSM_AUDIT``, else ``<label>.audit.jsonl``
in the working directory (the token keeps none of its own).
"""

from __future__ import annotations

import os
from pathlib import Path

from cardperso.crypto.secret import SecretStr
from cardperso.hsm.api import Hsm
from cardperso.hsm.keystore import DEFAULT_SCRYPT_N
from cardperso.hsm.soft import SoftHsm

__all__ = ["AUDIT_ENV", "create_hsm", "is_pkcs11", "open_hsm", "token_audit_path"]

AUDIT_ENV = "CARDPERSO_HSM_AUDIT"


def is_pkcs11(where: str | Path) -> bool:
    return str(where).startswith("pkcs11:")


def token_audit_path(where: str | Path, audit: Path | None = None) -> Path:
    """Where a token's audit log lives (see the module notes)."""
    from cardperso.hsm.pkcs11 import parse_pkcs11_url

    if audit is not None:
        return audit
    env = os.environ.get(AUDIT_ENV)
    if env:
        return Path(env)
    return Path(f"{parse_pkcs11_url(str(where)).token}.audit.jsonl")


def open_hsm(
    where: str | Path, secret: SecretStr, *, operator: str, audit: Path | None = None
) -> Hsm:
    """The security module at ``where``, opened for ``operator`` (audited)."""
    if is_pkcs11(where):
        from cardperso.hsm.pkcs11 import Pkcs11Hsm

        return Pkcs11Hsm.open(str(where), secret, token_audit_path(where, audit), operator=operator)
    return SoftHsm.open(Path(where), secret, operator=operator)


def create_hsm(
    where: str | Path,
    secret: SecretStr,
    *,
    operator: str,
    audit: Path | None = None,
    scrypt_n: int | None = None,
) -> tuple[Hsm, Path]:
    """Start using a new keystore, or an initialized token, with a new audit log;
    the module and its audit log's path."""
    if is_pkcs11(where):
        from cardperso.hsm.pkcs11 import Pkcs11Hsm

        path = token_audit_path(where, audit)
        return Pkcs11Hsm.create(str(where), secret, path, operator=operator), path
    cost = DEFAULT_SCRYPT_N if scrypt_n is None else scrypt_n
    hsm = SoftHsm.create(Path(where), secret, operator=operator, scrypt_n=cost)
    return hsm, hsm.audit_path
