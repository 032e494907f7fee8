"""The soft HSM: the embedded default security module, in process.

Keys live in a keystore file encrypted at rest (:mod:`cardperso.hsm.keystore`) and,
once opened, in this object's memory; nothing outside this module sees their bytes.
The recipes, role checks and audit records are the shared ones of
:mod:`cardperso.hsm.engine` (the PKCS#11 backend runs the same code); this module
is the key store and the key factories: every key is bytes in memory and every
cipher an in-process :mod:`cardperso.crypto.ciphers` object.

Randomness and time are injected, so a soft HSM built with a seeded
:class:`~cardperso.crypto.rand.SeededRandom` and a fixed clock writes byte-for-byte
the same keystore and audit log for the same calls. A lock guards the key table and
keystore writes, and the audit log has its own, so sessions may run in threads.

Limits of a software module: the keys are in this process's memory (Python cannot
wipe them), so the boundary is the process and the machine it runs on.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cardperso.crypto.ciphers import AES, DES, TDES, BlockCipher
from cardperso.crypto.ec import p256_ecdh, p256_generate_scalar, p256_public_key
from cardperso.crypto.kdf import sp800_108_counter_cmac
from cardperso.crypto.parity import adjust_des_parity
from cardperso.crypto.rand import RandomSource, SystemRandom
from cardperso.crypto.secret import SecretBytes, SecretStr
from cardperso.errors import HsmError
from cardperso.hsm.api import ALGORITHM_KEY_LENGTH, KeyAlgorithm, KeyHandle, KeyUsage
from cardperso.hsm.audit import AuditChainError, AuditLog, Clock
from cardperso.hsm.ceremony import key_check_value
from cardperso.hsm.engine import (
    SECRET_ENC_LABEL,
    SECRET_MAC_LABEL,
    RecipeHsm,
    RecipeSession,
    RequestSeededRandom,
)
from cardperso.hsm.keystore import DEFAULT_SCRYPT_N, Keystore, KeystoreError, StoredKey
from cardperso.hsm.material import EcPrivate, KeyMaterial, Scratch
from cardperso.hsm.roles import Role
from cardperso.payments import tr31
from cardperso.payments.tr31 import VariantSource

__all__ = ["RequestSeededRandom", "SoftHsm", "SoftSession"]


def _cipher(algorithm: KeyAlgorithm, value: bytes) -> BlockCipher:
    return AES(value) if algorithm.is_aes else TDES(value)


_FAMILIES: dict[str, Callable[[bytes], BlockCipher]] = {"AES": AES, "TDES": TDES, "DES": DES}


class _SoftEc(EcPrivate):
    """A P-256 private scalar in memory."""

    def __init__(self, d: bytes) -> None:
        self._d = SecretBytes(d)
        self._public = p256_public_key(d)

    @property
    def public(self) -> bytes:
        return self._public

    def agree(self, peer: bytes) -> SecretBytes:
        return SecretBytes(p256_ecdh(self._d.reveal(), bytes(peer)))


@dataclass(slots=True, eq=False)
class _Key(KeyMaterial):
    """A key inside the module: handle, value, and ciphers built once."""

    handle: KeyHandle
    value: SecretBytes | None
    cipher: BlockCipher | None = None
    private: _SoftEc | None = None  # EC keys
    halves: tuple[BlockCipher, BlockCipher] | None = None  # TDES-2KEY: DES K1, DES K2
    pair: tuple[BlockCipher, Callable[[bytes], bytes]] | None = None  # CARD_SECRET

    @classmethod
    def build(cls, handle: KeyHandle, value: SecretBytes) -> _Key:
        raw = value.reveal()
        if handle.algorithm is KeyAlgorithm.EC_P256:
            return cls(handle, value, private=_SoftEc(raw))
        return cls(handle, value, cipher=_cipher(handle.algorithm, raw))

    @property
    def sym(self) -> BlockCipher:
        assert self.cipher is not None  # usage tables admit only symmetric keys here
        return self.cipher

    def _raw(self) -> bytes:
        assert self.value is not None  # only volatile session keys have no value
        return self.value.reveal()

    def des_half(self, index: int) -> BlockCipher:
        if self.halves is None:
            raw = self._raw()
            self.halves = (DES(raw[:8]), DES(raw[8:16]))
        return self.halves[index]

    def variant_source(self) -> VariantSource | None:
        return tr31.tdes_variant_source(self._raw()) if self.handle.algorithm.is_tdes else None

    def export_value(self) -> SecretBytes:
        return SecretBytes(self._raw())

    @property
    def ec(self) -> EcPrivate:
        assert self.private is not None  # usage tables admit only EC keys here
        return self.private

    def secret_pair(self) -> tuple[BlockCipher, Callable[[bytes], bytes]]:
        """K_ENC (AES, as long as the key) and K_MAC (32 bytes, HMAC-SHA256) of a
        CARD_SECRET key, from the SP 800-108 counter-mode KDF with CMAC; made once."""
        if self.pair is None:
            n = ALGORITHM_KEY_LENGTH[self.handle.algorithm]
            k_mac = sp800_108_counter_cmac(self.sym, SECRET_MAC_LABEL, b"", 32)

            def tag(data: bytes) -> bytes:
                # one-shot HMAC-SHA256 (the bytes of hmac.new(...).digest(), no object)
                return hmac.digest(k_mac, data, "sha256")

            self.pair = (AES(sp800_108_counter_cmac(self.sym, SECRET_ENC_LABEL, b"", n)), tag)
        return self.pair


class SoftSession(RecipeSession):
    """One caller's session on a :class:`SoftHsm`."""


class SoftHsm(RecipeHsm):
    """The soft HSM over one keystore file and one audit log."""

    def __init__(
        self,
        keystore: Keystore,
        keys: Iterable[StoredKey],
        audit: AuditLog,
        rng: RandomSource,
    ) -> None:
        super().__init__(audit, rng)
        self._keystore = keystore
        self._keys = {k.handle.label: _Key.build(k.handle, k.value) for k in keys}

    def __repr__(self) -> str:
        return f"SoftHsm({str(self._keystore.path)!r}, {len(self._keys)} keys)"

    @staticmethod
    def default_audit_path(path: Path | str) -> Path:
        """Where the audit log of keystore ``path`` lives unless told otherwise."""
        p = Path(path)
        return p.with_name(p.name + ".audit.jsonl")

    @classmethod
    def create(
        cls,
        path: Path | str,
        passphrase: SecretStr,
        *,
        operator: str = "security officer",
        rng: RandomSource | None = None,
        clock: Clock | None = None,
        audit_path: Path | str | None = None,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        audit_sync: bool = False,
    ) -> SoftHsm:
        """Create a new, empty keystore and its audit log."""
        rng = rng or SystemRandom()
        apath = Path(audit_path) if audit_path else cls.default_audit_path(path)
        if apath.exists():
            raise KeystoreError("create_keystore", f"{apath} already exists")
        keystore = Keystore.create(path, passphrase, rng, scrypt_n=scrypt_n)
        audit = AuditLog(apath, clock=clock, sync=audit_sync)
        audit.append("create_keystore", Role.SECURITY_OFFICER.value, operator, [], "ok")
        return cls(keystore, [], audit, rng)

    @classmethod
    def open(
        cls,
        path: Path | str,
        passphrase: SecretStr,
        *,
        operator: str = "unknown",
        rng: RandomSource | None = None,
        clock: Clock | None = None,
        audit_path: Path | str | None = None,
        audit_sync: bool = False,
    ) -> SoftHsm:
        """Open an existing keystore; the attempt is audited, failed or not."""
        apath = Path(audit_path) if audit_path else cls.default_audit_path(path)
        if not apath.exists():
            raise AuditChainError("open_keystore", f"the audit log {apath} is missing")
        audit = AuditLog(apath, clock=clock, sync=audit_sync)
        try:
            keystore, keys = Keystore.open(path, passphrase)
        except KeystoreError as e:
            audit.append("open_keystore", "-", operator, [], type(e).__name__)
            audit.close()
            raise
        audit.append("open_keystore", "-", operator, [], "ok")
        return cls(keystore, keys, audit, rng or SystemRandom())

    def session(self, role: Role, operator: str) -> SoftSession:
        return SoftSession(self, Role(role), operator)

    # -- the key table (under the lock) ---------------------------------------------------

    def _get(self, label: str) -> _Key | None:
        with self._lock:
            return self._keys.get(label)

    def _handles(self) -> list[KeyHandle]:
        with self._lock:
            return [self._keys[label].handle for label in sorted(self._keys)]

    def _persist(self) -> None:
        self._keystore.save(
            [StoredKey(k.handle, k.value) for k in self._keys.values() if k.value is not None],
            self._rng,
        )

    def _store(self, operation: str, handle: KeyHandle, value: SecretBytes) -> _Key:
        key = _Key.build(handle, value)
        with self._lock:
            if handle.label in self._keys:
                raise HsmError(operation, f"a key labelled {handle.label!r} already exists")
            self._keys[handle.label] = key
            try:
                self._persist()
            except BaseException:
                del self._keys[handle.label]
                raise
        return key

    def _generate(
        self,
        operation: str,
        label: str,
        algorithm: KeyAlgorithm,
        usage: KeyUsage,
        exportable: bool,
        version: str,
    ) -> KeyHandle:
        if algorithm is KeyAlgorithm.EC_P256:
            raw = p256_generate_scalar(self._rng)
        else:
            raw = self._rng.random_bytes(ALGORITHM_KEY_LENGTH[algorithm])
            if algorithm.is_tdes:
                raw = adjust_des_parity(raw)
        kcv = key_check_value(algorithm, raw)
        handle = KeyHandle(label, algorithm, usage, kcv, version, exportable)
        self._store(operation, handle, SecretBytes(raw))
        return handle

    def _remove(self, label: str) -> None:
        with self._lock:
            key = self._keys.pop(label)
            try:
                self._persist()
            except BaseException:
                self._keys[label] = key
                raise

    # -- key factories: in-process ciphers, nothing to destroy ------------------------------

    def _make(self, family: str, value: bytes, scratch: Scratch) -> BlockCipher:
        return _FAMILIES[family](bytes(value))

    def _kdf_key(
        self, base: BlockCipher, label: bytes, context: bytes, length: int, scratch: Scratch
    ) -> BlockCipher:
        raw = sp800_108_counter_cmac(base, label, context, length)
        return AES(raw) if base.algorithm == "AES" else TDES(raw)

    def _kdf_des_halves(
        self, base: BlockCipher, label: bytes, context: bytes, scratch: Scratch
    ) -> tuple[BlockCipher, BlockCipher]:
        raw = sp800_108_counter_cmac(base, label, context, 16)
        return DES(raw[:8]), DES(raw[8:])

    def _derive_ecb(self, base: BlockCipher, data: bytes, scratch: Scratch) -> BlockCipher:
        raw = base.encrypt_ecb(bytes(data))
        return AES(raw) if base.algorithm == "AES" else TDES(adjust_des_parity(raw))

    def _ec_generate(self, scratch: Scratch) -> EcPrivate:
        return _SoftEc(p256_generate_scalar(self._rng))

    def _volatile_key(self, handle: KeyHandle, cipher: BlockCipher) -> KeyMaterial:
        return _Key(handle, None, cipher=cipher)
