"""Security module: key handles, roles, audit, and the soft backend (DESIGN.md §3, §4).

Callers open a session for their role on an :class:`Hsm` and pass
:class:`KeyHandle` objects; key bytes never leave a backend. See
:mod:`cardperso.hsm.api` for the contract, :mod:`cardperso.hsm.engine` for the
recipes every backend shares, :mod:`cardperso.hsm.soft` for the embedded default
and :mod:`cardperso.hsm.pkcs11` for a token behind a PKCS#11 library (imported on
demand: ``from cardperso.hsm.pkcs11 import Pkcs11Hsm``).
"""

from cardperso.errors import HsmError, KeyUsageError
from cardperso.hsm.api import (
    AgreedKeys,
    CardChannel,
    CardSecret,
    CardSecretRequest,
    Ceremony,
    CvvRequest,
    DerivedKey,
    DerivedPin,
    Hsm,
    HsmSession,
    IssuerPin,
    KdScheme,
    KeyAlgorithm,
    KeyHandle,
    KeyNotFoundError,
    KeyUsage,
    MacAlgorithm,
    PinBlockFormat,
    PinCopy,
    PinMailerRenderer,
    PvvRequest,
    RandomKey,
    RandomPin,
    SealedData,
    SmCommand,
    WrappedKey,
)
from cardperso.hsm.audit import AuditChainError, verify_chain
from cardperso.hsm.ceremony import CeremonyError
from cardperso.hsm.keystore import KeystoreError
from cardperso.hsm.roles import Operation, PermissionDeniedError, Role
from cardperso.hsm.soft import RequestSeededRandom, SoftHsm, SoftSession

__all__ = [
    "AgreedKeys",
    "AuditChainError",
    "CardChannel",
    "CardSecret",
    "CardSecretRequest",
    "Ceremony",
    "CeremonyError",
    "CvvRequest",
    "DerivedKey",
    "DerivedPin",
    "Hsm",
    "HsmError",
    "HsmSession",
    "IssuerPin",
    "KdScheme",
    "KeyAlgorithm",
    "KeyHandle",
    "KeyNotFoundError",
    "KeyUsage",
    "KeyUsageError",
    "KeystoreError",
    "MacAlgorithm",
    "Operation",
    "PermissionDeniedError",
    "PinBlockFormat",
    "PinCopy",
    "PinMailerRenderer",
    "PvvRequest",
    "RandomKey",
    "RandomPin",
    "RequestSeededRandom",
    "Role",
    "SealedData",
    "SmCommand",
    "SoftHsm",
    "SoftSession",
    "WrappedKey",
    "verify_chain",
]
