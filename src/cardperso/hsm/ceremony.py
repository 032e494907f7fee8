"""Key ceremony: a key entered as components by separate custodians.

Dual control and split knowledge (PCI PIN Security Requirements 13 to 16; ANSI
X9.24-1 §7): a key loaded by hand is split into 2 or 3 components, each held by a
different custodian who enters it alone, unseen. Each component comes with the
KCV printed on its sheet and is checked on entry, so a typing error is caught at
once and pinned on one custodian; the HSM XORs the components into the key only
when all are in, and checks the combined KCV too.

:func:`key_check_value` is the KCV every backend shows for a key (see
:mod:`cardperso.hsm.api`). :class:`ComponentCombiner` is the backend-neutral rule
book; a backend wraps it in its :class:`~cardperso.hsm.api.Ceremony`.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from cardperso.crypto.ciphers import AES, TDES
from cardperso.crypto.ec import p256_public_key
from cardperso.crypto.kcv import kcv, kcv_cmac
from cardperso.crypto.parity import adjust_des_parity
from cardperso.crypto.secret import SecretBytes
from cardperso.errors import HsmError
from cardperso.hsm.api import ALGORITHM_KEY_LENGTH, KeyAlgorithm

__all__ = [
    "KCV_LENGTH",
    "MAX_COMPONENTS",
    "MIN_COMPONENTS",
    "CeremonyError",
    "ComponentCombiner",
    "check_custodian",
    "kcv_matches",
    "key_check_value",
]

MIN_COMPONENTS = 2
MAX_COMPONENTS = 3
KCV_LENGTH = 3
"""Bytes of a KCV (6 hex digits)."""

_CUSTODIAN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")
_HEX = re.compile(r"[0-9A-Fa-f]{4,6}")


class CeremonyError(HsmError):
    """A component or the ceremony was refused (says which check, never key bytes)."""


def key_check_value(algorithm: KeyAlgorithm, value: bytes) -> str:
    """The 6-hex-digit KCV of a key: TDES E(0^8), AES CMAC(0^16), EC SHA-256(public point)."""
    if algorithm.is_tdes:
        return kcv(TDES(value), KCV_LENGTH).hex().upper()
    if algorithm.is_aes:
        return kcv_cmac(AES(value), KCV_LENGTH).hex().upper()
    return hashlib.sha256(p256_public_key(value)).digest()[:KCV_LENGTH].hex().upper()


def check_custodian(name: str) -> str:
    """A custodian name: 1 to 64 characters, letters, digits, space and ``._@-``."""
    if not isinstance(name, str) or not _CUSTODIAN.fullmatch(name):
        raise CeremonyError("ceremony", "custodian name must be 1-64 letters, digits or ._@- ")
    return name


def kcv_matches(actual: str, entered: str) -> bool:
    """True if ``entered`` (4 to 6 hex digits from a component sheet) is a prefix of ``actual``."""
    entered = entered.strip().upper() if isinstance(entered, str) else ""
    if not _HEX.fullmatch(entered):
        return False
    return hmac.compare_digest(actual[: len(entered)].encode(), entered.encode())


class ComponentCombiner:
    """Collects 2 or 3 components of one key and combines them (XOR).

    Refuses: fewer than 2 or more than 3 components, an EC key, a component of the
    wrong length, a component whose KCV does not match the one entered, the same
    custodian twice, completing before every component is in, and a combined key
    of all zeros (two equal components). TDES keys get odd parity after the XOR.
    """

    def __init__(self, algorithm: KeyAlgorithm, components: int) -> None:
        if algorithm is KeyAlgorithm.EC_P256:
            raise CeremonyError("ceremony", "EC keys cannot be entered as components")
        if not isinstance(components, int) or not MIN_COMPONENTS <= components <= MAX_COMPONENTS:
            raise CeremonyError(
                "ceremony",
                f"a key is entered as {MIN_COMPONENTS} to {MAX_COMPONENTS} components",
            )
        self.algorithm = algorithm
        self.components = components
        self._length = ALGORITHM_KEY_LENGTH[algorithm]
        self._custodians: list[str] = []
        self._acc = bytes(self._length)

    @property
    def custodians(self) -> tuple[str, ...]:
        return tuple(self._custodians)

    @property
    def complete(self) -> bool:
        return len(self._custodians) == self.components

    def add(self, custodian: str, value: SecretBytes, entered_kcv: str) -> str:
        """Check and take one component; return its KCV."""
        custodian = check_custodian(custodian)
        if self.complete:
            raise CeremonyError("ceremony", f"all {self.components} components are already in")
        if custodian.casefold() in (c.casefold() for c in self._custodians):
            raise CeremonyError(
                "ceremony", f"custodian {custodian!r} has already entered a component"
            )
        if not isinstance(value, SecretBytes) or len(value) != self._length:
            raise CeremonyError("ceremony", f"a {self.algorithm} component is {self._length} bytes")
        actual = key_check_value(self.algorithm, value.reveal())
        if not kcv_matches(actual, entered_kcv):
            raise CeremonyError(
                "ceremony", f"the component from {custodian!r} does not match its KCV"
            )
        self._acc = bytes(a ^ b for a, b in zip(self._acc, value.reveal(), strict=True))
        self._custodians.append(custodian)
        return actual

    def combine(self, expected_kcv: str | None = None) -> tuple[SecretBytes, str]:
        """The combined key and its KCV, checked against ``expected_kcv`` if given."""
        if not self.complete:
            raise CeremonyError(
                "ceremony",
                f"{len(self._custodians)} of {self.components} components are in",
            )
        key = self._acc
        if self.algorithm.is_tdes:
            key = adjust_des_parity(key)
        if not any(self._acc):
            raise CeremonyError("ceremony", "the components cancel out (the key would be zero)")
        actual = key_check_value(self.algorithm, key)
        if expected_kcv is not None and not kcv_matches(actual, expected_kcv):
            raise CeremonyError("ceremony", "the combined key does not match the expected KCV")
        return SecretBytes(key), actual

    def clear(self) -> None:
        self._custodians.clear()
        self._acc = bytes(self._length)
