"""What the shared recipes (:mod:`cardperso.hsm.engine`) need from a backend's keys.

A backend keeps its keys its own way - the soft HSM as bytes in memory, the PKCS#11
backend as object handles in a token - and shows each one to the recipes as a
:class:`KeyMaterial`: the handle plus block ciphers that run *by* the key. A recipe
never asks for a key's bytes, except the two places the contract itself hands a
key on: :meth:`KeyMaterial.export_value` (a TR-31 export of an exportable key) and
the card keys that :meth:`~cardperso.hsm.api.HsmSession.card_secrets` and
``kd_for_initialization`` return by design.

Keys made for one call or one channel (KD, session keys, ephemeral EC keys) are
*disposable*: a backend whose derived keys are objects somewhere (a token) puts
them on the call's scratch list, and the engine destroys them when the call ends.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol

from cardperso.crypto.ciphers import BlockCipher
from cardperso.crypto.secret import SecretBytes
from cardperso.hsm.api import KeyHandle
from cardperso.payments.tr31 import VariantSource

__all__ = ["Disposable", "EcPrivate", "KeyMaterial", "Scratch", "dispose"]


class Disposable(Protocol):
    """Something that lives in a backend until destroyed (a token session object)."""

    def destroy(self) -> None: ...


Scratch = list[Disposable]
"""Where a backend puts the temporary keys it makes for one call or one channel."""


def dispose(scratch: Scratch) -> None:
    """Destroy everything on ``scratch`` (every item is tried; the list is emptied)."""
    while scratch:
        item = scratch.pop()
        # best effort: the end of the backend's session destroys it anyway
        with contextlib.suppress(Exception):
            item.destroy()


class EcPrivate(ABC):
    """A P-256 private key inside the backend (static or ephemeral)."""

    @property
    @abstractmethod
    def public(self) -> bytes:
        """The 65-byte uncompressed public point."""

    @abstractmethod
    def agree(self, peer: bytes) -> SecretBytes:
        """Z = the x-coordinate of d * peer (SEC 1 §3.3.1); refuses invalid points."""


class KeyMaterial(ABC):
    """One stored or volatile key as the recipes see it."""

    handle: KeyHandle

    @property
    @abstractmethod
    def sym(self) -> BlockCipher:
        """The key as a block cipher (AES or TDES); symmetric keys only."""

    @abstractmethod
    def des_half(self, index: int) -> BlockCipher:
        """Single DES under K1 (``index`` 0) or K2 (1) of a TDES-2KEY key: CVK-A for the
        CVV, both halves for the retail MAC."""

    @abstractmethod
    def variant_source(self) -> VariantSource | None:
        """KBPK xor a constant as a cipher (TR-31 versions A and C); None for AES keys."""

    @abstractmethod
    def export_value(self) -> SecretBytes:
        """The key's value, to put into a TR-31 block (exportable keys only)."""

    @property
    @abstractmethod
    def ec(self) -> EcPrivate:
        """The private half of an EC key."""

    @abstractmethod
    def secret_pair(self) -> tuple[BlockCipher, Callable[[bytes], bytes]]:
        """(K_ENC, HMAC-SHA256 under K_MAC) of a CARD_SECRET key (derived once)."""

    def destroy(self) -> None:  # noqa: B027 - most keys need nothing
        """Forget a volatile key."""

    @property
    def public(self) -> bytes:
        return self.ec.public
