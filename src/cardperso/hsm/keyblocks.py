"""How HSM key handles map to TR-31 / X9.143 key block headers, and back.

Export writes version B under a TDES KEK and version D under an AES KEK; import
reads versions A, B, C and D (:mod:`cardperso.payments.tr31` does the
cryptography). The usage codes follow X9.143-2022 Table 6 / TR-31-2018 A.5.1:

=================  ======  ====  ======================================
usage              code    mode  meaning of the code
=================  ======  ====  ======================================
KEK, ISSUER_KEK    K1      B     TR-31 key block protection key (K0 read too)
KD_MASTER          E6      X     EMV/chip issuer master key: other
EMV_IMK            E0      X     EMV/chip issuer master key: application cryptograms
TRANSPORT          D0      B     symmetric data encryption
PIN_ENCRYPTION     P0      B     PIN encryption
PIN_VERIFICATION   V0      C     PIN verification, other (V1 IBM 3624, V2 Visa PVV read too)
CVK                C0      C     card verification key
MAC                M6      C     ISO/IEC 9797-1 MAC algorithm 5 (CMAC) (M0-M8 read)
=================  ======  ====  ======================================

Card keys generated at the bureau go back to the issuer as response data under
usage ``E6`` (EMV/chip: other), mode ``N``, the card key's version as the key
version number, not exportable further (:func:`card_key_header`).

A key is wrapped or unwrapped only under a KEK at least as strong as itself
(ANSI X9.24-1 and the PCI PIN Security Requirements: a key is protected only by a
key of equal or greater strength); strengths are NIST SP 800-57 security bits.
"""

from __future__ import annotations

from cardperso.errors import HsmError, KeyUsageError
from cardperso.hsm.api import KeyAlgorithm, KeyHandle, KeyUsage
from cardperso.payments.tr31 import KeyBlockHeader

__all__ = [
    "STRENGTH",
    "card_key_header",
    "check_strength",
    "export_header",
    "exportable_usage",
    "read_header",
]

#: Security strength in bits (NIST SP 800-57 Part 1 r5, Table 2).
STRENGTH: dict[KeyAlgorithm, int] = {
    KeyAlgorithm.TDES_2KEY: 80,
    KeyAlgorithm.TDES_3KEY: 112,
    KeyAlgorithm.AES_128: 128,
    KeyAlgorithm.AES_256: 256,
}

_EXPORT: dict[KeyUsage, tuple[str, str]] = {
    KeyUsage.KEK: ("K1", "B"),
    KeyUsage.ISSUER_KEK: ("K1", "B"),
    KeyUsage.KD_MASTER: ("E6", "X"),
    KeyUsage.EMV_IMK: ("E0", "X"),
    KeyUsage.TRANSPORT: ("D0", "B"),
    KeyUsage.PIN_ENCRYPTION: ("P0", "B"),
    KeyUsage.PIN_VERIFICATION: ("V0", "C"),
    KeyUsage.CVK: ("C0", "C"),
    KeyUsage.MAC: ("M6", "C"),
}

_IMPORT: dict[str, KeyUsage] = {
    "K0": KeyUsage.KEK,
    "K1": KeyUsage.KEK,
    "E6": KeyUsage.KD_MASTER,
    "E0": KeyUsage.EMV_IMK,
    "D0": KeyUsage.TRANSPORT,
    "P0": KeyUsage.PIN_ENCRYPTION,
    "V0": KeyUsage.PIN_VERIFICATION,
    "V1": KeyUsage.PIN_VERIFICATION,
    "V2": KeyUsage.PIN_VERIFICATION,
    "C0": KeyUsage.CVK,
    **{f"M{i}": KeyUsage.MAC for i in range(9)},
}

_ALGORITHMS: dict[tuple[str, int], KeyAlgorithm] = {
    ("T", 16): KeyAlgorithm.TDES_2KEY,
    ("T", 24): KeyAlgorithm.TDES_3KEY,
    ("A", 16): KeyAlgorithm.AES_128,
    ("A", 32): KeyAlgorithm.AES_256,
}


def exportable_usage(usage: KeyUsage) -> bool:
    """True if keys of this usage can travel in a key block at all."""
    return usage in _EXPORT


def check_strength(operation: str, kek: KeyHandle, algorithm: KeyAlgorithm) -> None:
    """Refuse to wrap or unwrap a key under a weaker KEK."""
    if STRENGTH[kek.algorithm] < STRENGTH[algorithm]:
        raise KeyUsageError(
            operation, f"KEK {kek.label!r} ({kek.algorithm}) is weaker than a {algorithm} key"
        )


def export_header(
    kek: KeyHandle, key: KeyHandle, *, exportable_by_receiver: bool
) -> KeyBlockHeader:
    """The header for exporting ``key`` under ``kek``."""
    if key.usage not in _EXPORT:
        raise KeyUsageError("export_key_block", f"{key.usage} keys cannot travel in a key block")
    code, mode = _EXPORT[key.usage]
    return KeyBlockHeader(
        version_id="D" if kek.algorithm.is_aes else "B",
        key_usage=code,
        algorithm="A" if key.algorithm.is_aes else "T",
        mode_of_use=mode,
        key_version_number=key.version,
        exportability="E" if exportable_by_receiver else "N",
    )


def card_key_header(kek: KeyHandle, algorithm: KeyAlgorithm, version: str) -> KeyBlockHeader:
    """The header for a card key sent to the issuer as response data under ``kek``."""
    return KeyBlockHeader(
        version_id="D" if kek.algorithm.is_aes else "B",
        key_usage="E6",
        algorithm="A" if algorithm.is_aes else "T",
        mode_of_use="N",
        key_version_number=version,
        exportability="N",
    )


def read_header(
    header: KeyBlockHeader, key_length: int, usage: KeyUsage | None
) -> tuple[KeyAlgorithm, KeyUsage, bool, str]:
    """(algorithm, usage, exportable, version) of an unwrapped key.

    ``usage`` may refine the header's usage (ISSUER_KEK for a K0/K1 block) but
    must agree with it.
    """
    algorithm = _ALGORITHMS.get((header.algorithm, key_length))
    if algorithm is None:
        raise HsmError(
            "import_key_block", "the key block holds a key algorithm or length not supported"
        )
    found = _IMPORT.get(header.key_usage)
    if found is None:
        raise KeyUsageError("import_key_block", f"key usage {header.key_usage} is not supported")
    if usage is not None and usage is not found:
        if not (found is KeyUsage.KEK and usage is KeyUsage.ISSUER_KEK):
            raise KeyUsageError(
                "import_key_block", f"a {header.key_usage} key block cannot become a {usage} key"
            )
        found = usage
    return algorithm, found, header.exportability == "E", header.key_version_number
