"""The bureau's HSM keys: the labels the built-in profiles, data preparation and the
line name, and how a fresh keystore for a demonstration gets them.

Production keystores receive their keys by ceremony from the key custodians
(``cardperso keys ceremony``); :func:`provision_demo_keys` instead *generates*
every missing key inside the soft HSM, which is what a demonstration or a test
bureau needs and nothing more. No key value ever leaves the HSM.
"""

from __future__ import annotations

from cardperso.hsm import Hsm, KeyAlgorithm, KeyNotFoundError, KeyUsage, Role
from cardperso.production.fieldkeys import FIELD_KEY

__all__ = ["BUREAU_KEYS", "CARD_SECRET", "FIELD_KEY", "PRINT_KEY", "provision_demo_keys"]

CARD_SECRET = "CARD.SECRET"  # noqa: S105 - a key label
"""CARD_SECRET key: prepared PINs and keys travel under it from data preparation to the card."""
PRINT_KEY = "ZPK.PRINT"
"""PIN_ENCRYPTION key of the PIN mailer blocks (the lettershop prints from it)."""
"""MAC key from which the sealing keys of cardholder records are derived (.fieldkeys)."""

_A128, _T2 = KeyAlgorithm.AES_128, KeyAlgorithm.TDES_2KEY
BUREAU_KEYS: dict[str, tuple[KeyAlgorithm, KeyUsage]] = {
    CARD_SECRET: (_A128, KeyUsage.CARD_SECRET),
    PRINT_KEY: (_T2, KeyUsage.PIN_ENCRYPTION),
    FIELD_KEY: (_A128, KeyUsage.MAC),
    # debit
    "KM.DEBIT.PERSO": (_A128, KeyUsage.KD_MASTER),
    "KM.DEBIT.ADMIN": (_A128, KeyUsage.KD_MASTER),
    "IMK.DEBIT.AC": (_T2, KeyUsage.KD_MASTER),
    "IMK.DEBIT.SMI": (_T2, KeyUsage.KD_MASTER),
    "IMK.DEBIT.SMC": (_T2, KeyUsage.KD_MASTER),
    "PDK.DEBIT": (_T2, KeyUsage.PIN_VERIFICATION),
    "PVK.DEBIT": (_T2, KeyUsage.PIN_VERIFICATION),
    "CVK.DEBIT": (_T2, KeyUsage.CVK),
    # sim
    "KEK.MNO": (_A128, KeyUsage.KEK),
    "KM.SIM.ADM": (_A128, KeyUsage.KD_MASTER),
    "KM.SIM.PERSO": (_A128, KeyUsage.KD_MASTER),
    "ZPK.MNO": (_T2, KeyUsage.PIN_ENCRYPTION),
    # employee
    "KM.EMPLOYEE.ADMIN": (_A128, KeyUsage.KD_MASTER),
    "ZPK.HR": (_T2, KeyUsage.PIN_ENCRYPTION),
}
"""Every key the built-in profiles (debit, sim, employee) and the bureau itself name."""


def provision_demo_keys(hsm: Hsm, operator: str = "demo security officer") -> list[str]:
    """Generate each key of :data:`BUREAU_KEYS` the keystore lacks; the labels made."""
    made: list[str] = []
    with hsm.session(Role.SECURITY_OFFICER, operator) as so:
        for label, (algorithm, usage) in BUREAU_KEYS.items():
            try:
                so.get_key(label)
            except KeyNotFoundError:
                so.generate_key(label, algorithm, usage)
                made.append(label)
    return made
