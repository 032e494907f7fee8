"""Use cases for the security module's keystore and keys (called by the CLI).

Each function opens the soft HSM, runs one step as the right role, and closes it;
the command line only parses, prompts and prints (DESIGN.md §3).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cardperso.crypto.secret import SecretBytes, SecretStr
from cardperso.hsm import (
    CeremonyError,
    KeyAlgorithm,
    KeyHandle,
    KeyUsage,
    Role,
    SoftHsm,
    verify_chain,
)
from cardperso.hsm.audit import ChainReport
from cardperso.hsm.backends import create_hsm, is_pkcs11, open_hsm, token_audit_path
from cardperso.hsm.keystore import DEFAULT_SCRYPT_N

__all__ = [
    "ComponentEntry",
    "init_keystore",
    "list_keys",
    "parse_component",
    "run_ceremony",
    "verify_audit",
]

_HEX = re.compile(r"[0-9A-Fa-f]+")


@dataclass(frozen=True, slots=True)
class ComponentEntry:
    """What one custodian types: their name, the component, the KCV on their sheet."""

    custodian: str
    value: SecretBytes
    kcv: str


def parse_component(text: str) -> SecretBytes:
    """A component typed as hex digits (spaces allowed); the error never quotes it."""
    digits = "".join(text.split())
    if not digits or len(digits) % 2 or not _HEX.fullmatch(digits):
        raise CeremonyError("ceremony", "a component is an even number of hexadecimal digits")
    return SecretBytes(bytes.fromhex(digits))


def init_keystore(
    keystore: Path, passphrase: SecretStr, operator: str, *, scrypt_n: int = DEFAULT_SCRYPT_N
) -> Path:
    """Create an empty keystore (or start on an initialized PKCS#11 token) and its audit
    log; return the audit log's path."""
    hsm, audit = create_hsm(keystore, passphrase, operator=operator, scrypt_n=scrypt_n)
    hsm.close()
    return audit


def list_keys(keystore: Path, passphrase: SecretStr, operator: str) -> list[KeyHandle]:
    """Handles of every stored key (as the security officer)."""
    with (
        open_hsm(keystore, passphrase, operator=operator) as hsm,
        hsm.session(Role.SECURITY_OFFICER, operator) as session,
    ):
        return session.list_keys()


def run_ceremony(
    keystore: Path,
    passphrase: SecretStr,
    operator: str,
    *,
    label: str,
    algorithm: KeyAlgorithm,
    usage: KeyUsage,
    components: int,
    read_component: Callable[[int], ComponentEntry],
    component_accepted: Callable[[int, str, str], None],
    expected_kcv: str | None = None,
    exportable: bool = False,
) -> KeyHandle:
    """Import a key from ``components`` custodians' components.

    ``read_component(i)`` asks custodian ``i`` (1-based) for their entry;
    ``component_accepted(i, custodian, kcv)`` reports a checked component. A
    refused component aborts the whole ceremony: nothing is stored.
    """
    with (
        open_hsm(keystore, passphrase, operator=operator) as hsm,
        hsm.session(Role.CUSTODIAN, operator) as session,
    ):
        ceremony = session.begin_ceremony(
            label, algorithm, usage, components=components, exportable=exportable
        )
        try:
            for i in range(1, components + 1):
                entry = read_component(i)
                kcv = ceremony.add_component(entry.custodian, entry.value, entry.kcv)
                component_accepted(i, entry.custodian, kcv)
            return ceremony.complete(expected_kcv)
        except BaseException:
            ceremony.abort()
            raise


def verify_audit(keystore: Path) -> ChainReport:
    """Verify the hash chain of the keystore's audit log (no passphrase needed)."""
    if is_pkcs11(keystore):
        return verify_chain(token_audit_path(keystore))
    return verify_chain(SoftHsm.default_audit_path(keystore))
