"""The sealing keys of cardholder records, derived inside the HSM.

Cardholder records are kept in the production database only sealed
(:class:`~cardperso.production.crypto_fields.FieldCipher`, AES-256-GCM and an
HMAC digest for PANs). Their keys are not stored anywhere: each process derives
them from the HSM's MAC key :data:`FIELD_KEY` with the
NIST SP 800-108r1 counter-mode KDF, PRF = the HSM's CMAC::

    K(i) = CMAC(FIELD.MASTER, [i]_8 || label || 00 || key_id || [256]_16)

two blocks for each 32-byte key (labels ``cardperso field ENC`` and ``... MAC``).
The root stays in the HSM, so whoever lacks the HSM (a stolen database file) cannot
open a record; the derived working keys live only in the process that uses them,
wrapped in redacting types (a data-encryption key in the usual envelope pattern).
The roles that may MAC (dataprep, personalization, QC) may open records: data
preparation writes them, the line reads them.
"""

from __future__ import annotations

from cardperso.crypto.rand import RandomSource
from cardperso.crypto.secret import SecretBytes
from cardperso.hsm import HsmSession, MacAlgorithm
from cardperso.production.crypto_fields import FieldKeys, SoftFieldCipher

__all__ = ["DEFAULT_KEY_ID", "FIELD_KEY", "field_cipher"]

DEFAULT_KEY_ID = "field-1"
FIELD_KEY = "FIELD.MASTER"
"""Label of the HSM's MAC key the record keys derive from (the bureau provisions it)."""


def _derive(session: HsmSession, label: bytes, key_id: str, key_label: str) -> SecretBytes:
    key = session.get_key(key_label)
    context = key_id.encode("ascii")
    blocks = [
        session.generate_mac(
            key,
            bytes([i]) + label + b"\x00" + context + (256).to_bytes(2, "big"),
            algorithm=MacAlgorithm.CMAC,
            length=16,
        )
        for i in (1, 2)
    ]
    return SecretBytes(b"".join(blocks))


def field_cipher(
    session: HsmSession,
    key_id: str = DEFAULT_KEY_ID,
    *,
    key_label: str = FIELD_KEY,
    rng: RandomSource | None = None,
) -> SoftFieldCipher:
    """The record cipher for ``key_id``, its keys derived from ``key_label`` in the HSM."""
    keys = FieldKeys(
        key_id,
        _derive(session, b"cardperso field ENC", key_id, key_label),
        _derive(session, b"cardperso field MAC", key_id, key_label),
    )
    return SoftFieldCipher(keys, rng=rng)
