"""Caller roles and the table of which role may call which HSM operation.

Every HSM session is opened for one role and one named operator, and every call is
checked against :data:`PERMISSIONS` before a key is touched (and audited either
way). The table is the bureau's separation of duties, and later stations rely on it:

* ``security_officer`` manages keys (generate, import, export, destroy) but runs no
  production operation;
* ``custodian`` only enters key components in a ceremony;
* ``dataprep`` turns issuer records into card data: PINs, PVVs, offsets, CVVs,
  MACs, data for the chip - it may read issuer data (the fields it validates), and
  it prepares card PINs and keys only as CARD_SECRET cryptograms it cannot open;
* ``initialization`` loads the OS-level structure and KD into blank cards: it is the
  one role that may obtain KD in clear, and it may *not* decrypt issuer data;
* ``personalization`` talks to initialized cards: authentication cryptograms, issuer
  data re-encrypted for one chip, prepared card secrets opened into one card's
  secure-messaging channel (keyed from KD, or by ECDH with the card's own key
  pair), ECDH sessions - never KD in clear, never clear issuer
  data, and a PIN the card generates only as PIN blocks (``card_sm_unwrap_pin``);
* ``qc`` recomputes what a card should answer and verifies values;
* ``lettershop`` prints PIN mailers, the one place a clear PIN leaves.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from cardperso.errors import HsmError

__all__ = ["PERMISSIONS", "Operation", "PermissionDeniedError", "Role", "is_allowed", "require"]


class Role(StrEnum):
    """Who is calling the HSM (the audit record names it with the operator)."""

    SECURITY_OFFICER = "security_officer"
    CUSTODIAN = "custodian"
    DATAPREP = "dataprep"
    INITIALIZATION = "initialization"
    PERSONALIZATION = "personalization"
    QC = "qc"
    LETTERSHOP = "lettershop"


class Operation(StrEnum):
    """Every HSM operation, as named in the permission table and the audit log."""

    LIST_KEYS = "list_keys"
    GENERATE_KEY = "generate_key"
    DESTROY_KEY = "destroy_key"
    CEREMONY = "ceremony"
    IMPORT_KEY_BLOCK = "import_key_block"
    EXPORT_KEY_BLOCK = "export_key_block"
    PUBLIC_KEY = "public_key"
    KD_FOR_INITIALIZATION = "kd_for_initialization"
    CARD_CRYPTOGRAM = "card_cryptogram"
    VERIFY_CARD_CRYPTOGRAM = "verify_card_cryptogram"
    EXTERNAL_AUTH_CRYPTOGRAM = "external_auth_cryptogram"
    EMV_CRYPTOGRAM = "emv_cryptogram"
    TRANSLATE_TO_CARD = "translate_to_card"
    TRANSLATE_TO_SESSION = "translate_to_session"
    ENCRYPT_DATA = "encrypt_data"
    DECRYPT_DATA = "decrypt_data"
    GENERATE_PIN = "generate_pin"
    IBM3624_PIN = "ibm3624_pin"
    IBM3624_OFFSET = "ibm3624_offset"
    VERIFY_IBM3624 = "verify_ibm3624"
    PVV = "pvv"
    VERIFY_PVV = "verify_pvv"
    TRANSLATE_PIN_BLOCK = "translate_pin_block"
    PRINT_PIN_MAILER = "print_pin_mailer"
    GENERATE_CVV = "generate_cvv"
    VERIFY_CVV = "verify_cvv"
    GENERATE_MAC = "generate_mac"
    VERIFY_MAC = "verify_mac"
    ECDH_AGREE = "ecdh_agree"
    CARD_SM_OPEN = "card_sm_open"
    CARD_SM_AGREE = "card_sm_agree"
    CARD_SM_OPEN_ECDH = "card_sm_open_ecdh"
    CARD_SM_WRAP = "card_sm_wrap"
    CARD_SM_UNWRAP = "card_sm_unwrap"
    CARD_SECRETS = "card_secrets"
    CARD_SM_UNWRAP_PIN = "card_sm_unwrap_pin"
    GENERATE_CVVS = "generate_cvvs"


_R = Role
_O = Operation

#: Which roles may call each operation. Anything not listed is refused.
PERMISSIONS: Mapping[Operation, frozenset[Role]] = {
    _O.LIST_KEYS: frozenset(Role),
    _O.GENERATE_KEY: frozenset({_R.SECURITY_OFFICER}),
    # Personalization may destroy only the volatile ECDH session keys it made
    # (the backend checks that); the officer may destroy any key.
    _O.DESTROY_KEY: frozenset({_R.SECURITY_OFFICER, _R.PERSONALIZATION}),
    _O.CEREMONY: frozenset({_R.SECURITY_OFFICER, _R.CUSTODIAN}),
    _O.IMPORT_KEY_BLOCK: frozenset({_R.SECURITY_OFFICER}),
    _O.EXPORT_KEY_BLOCK: frozenset({_R.SECURITY_OFFICER}),
    _O.PUBLIC_KEY: frozenset({_R.SECURITY_OFFICER, _R.PERSONALIZATION, _R.QC}),
    _O.KD_FOR_INITIALIZATION: frozenset({_R.INITIALIZATION}),
    _O.CARD_CRYPTOGRAM: frozenset({_R.INITIALIZATION, _R.PERSONALIZATION, _R.QC}),
    _O.VERIFY_CARD_CRYPTOGRAM: frozenset({_R.INITIALIZATION, _R.PERSONALIZATION, _R.QC}),
    _O.EXTERNAL_AUTH_CRYPTOGRAM: frozenset({_R.INITIALIZATION, _R.PERSONALIZATION, _R.QC}),
    _O.EMV_CRYPTOGRAM: frozenset({_R.QC}),
    _O.TRANSLATE_TO_CARD: frozenset({_R.DATAPREP, _R.PERSONALIZATION}),
    _O.TRANSLATE_TO_SESSION: frozenset({_R.PERSONALIZATION}),
    _O.ENCRYPT_DATA: frozenset({_R.DATAPREP}),
    _O.DECRYPT_DATA: frozenset({_R.DATAPREP}),
    _O.GENERATE_PIN: frozenset({_R.DATAPREP}),
    _O.IBM3624_PIN: frozenset({_R.DATAPREP}),
    _O.IBM3624_OFFSET: frozenset({_R.DATAPREP}),
    _O.VERIFY_IBM3624: frozenset({_R.DATAPREP, _R.QC}),
    _O.PVV: frozenset({_R.DATAPREP}),
    _O.VERIFY_PVV: frozenset({_R.DATAPREP, _R.QC}),
    _O.TRANSLATE_PIN_BLOCK: frozenset({_R.DATAPREP, _R.PERSONALIZATION}),
    _O.PRINT_PIN_MAILER: frozenset({_R.LETTERSHOP}),
    _O.GENERATE_CVV: frozenset({_R.DATAPREP}),
    _O.VERIFY_CVV: frozenset({_R.DATAPREP, _R.QC}),
    _O.GENERATE_MAC: frozenset({_R.DATAPREP, _R.PERSONALIZATION, _R.QC}),
    _O.VERIFY_MAC: frozenset({_R.DATAPREP, _R.PERSONALIZATION, _R.QC}),
    _O.ECDH_AGREE: frozenset({_R.PERSONALIZATION}),
    # A secure-messaging channel to one card, keyed from KD inside the HSM: the
    # personalization station loads secrets through it, QC reads protected files.
    _O.CARD_SM_OPEN: frozenset({_R.PERSONALIZATION, _R.QC}),
    _O.CARD_SM_WRAP: frozenset({_R.PERSONALIZATION, _R.QC}),
    _O.CARD_SM_UNWRAP: frozenset({_R.PERSONALIZATION, _R.QC}),
    # ECDH-protected loading: a channel keyed by a key agreement with the card's own
    # P-256 key, started inside a KD-keyed channel that vouches for the card's point.
    _O.CARD_SM_AGREE: frozenset({_R.PERSONALIZATION}),
    _O.CARD_SM_OPEN_ECDH: frozenset({_R.PERSONALIZATION}),
    # Batch calls of data preparation: card PINs and keys as CARD_SECRET cryptograms
    # (opened only inside card_sm_wrap), and the CVVs of many records.
    _O.CARD_SECRETS: frozenset({_R.DATAPREP}),
    _O.GENERATE_CVVS: frozenset({_R.DATAPREP}),
    # A PIN the card generated (GENERATE PIN) leaves its SM answer only re-encrypted
    # under PIN keys (the print key for the mailer), never to the station.
    _O.CARD_SM_UNWRAP_PIN: frozenset({_R.PERSONALIZATION}),
}


class PermissionDeniedError(HsmError):
    """The caller's role may not call this operation."""


def is_allowed(role: Role, operation: Operation) -> bool:
    """True if ``role`` may call ``operation``."""
    return role in PERMISSIONS.get(operation, frozenset())


def require(role: Role, operation: Operation) -> None:
    """Raise :class:`PermissionDeniedError` unless ``role`` may call ``operation``."""
    if not is_allowed(role, operation):
        raise PermissionDeniedError(operation.value, f"role {role.value} may not call this")
