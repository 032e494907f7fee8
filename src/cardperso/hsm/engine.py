"""The shared recipes of every backend: one session class, one audited call path.

:class:`RecipeSession` implements the whole :class:`~cardperso.hsm.api.HsmSession`
contract once. A backend (:mod:`cardperso.hsm.soft`, :mod:`cardperso.hsm.pkcs11`)
subclasses :class:`RecipeHsm` and supplies only its key store (get, store, generate,
remove, list) and a few key factories (a derived key as a cipher, the SP 800-108
KDF into a key, an ephemeral EC key); every key reaches the recipes as a
:class:`~cardperso.hsm.material.KeyMaterial` whose ciphers run *by* the key.

Every session call goes through :meth:`RecipeSession._call`, which in this order:

1. checks the caller's role against :mod:`cardperso.hsm.roles`;
2. resolves each key handle by label to the *stored* key and checks that its usage
   allows this operation (``KeyUsageError`` otherwise) - the handle's own fields are
   never trusted;
3. runs the recipe from :mod:`cardperso.payments` / :mod:`cardperso.crypto`;
4. destroys the call's temporary keys (KD, derived keys) and writes one audit
   record, whatever the outcome, and turns any recipe error into an
   :class:`~cardperso.errors.HsmError` naming the operation.
"""

from __future__ import annotations

import hashlib
import re
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cardperso import securemsg, tlv
from cardperso.apdu import CommandAPDU
from cardperso.crypto.ciphers import AES, BlockCipher, CipherError
from cardperso.crypto.kcv import kcv, kcv_cmac
from cardperso.crypto.kdf import sp800_108_counter_cmac
from cardperso.crypto.mac import cmac, mac_alg3, pad_iso9797, unpad_m2, verify_mac
from cardperso.crypto.parity import adjust_des_parity
from cardperso.crypto.rand import RandomSource, SeededRandom
from cardperso.crypto.secret import SecretBytes, SecretStr
from cardperso.errors import CardpersoError, HsmError, KeyUsageError
from cardperso.hsm import keyblocks
from cardperso.hsm.api import (
    ALGORITHM_KEY_LENGTH,
    SECRET_COMMANDS,
    USAGE_ALGORITHMS,
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
    RandomKey,
    RandomPin,
    SealedData,
    SmCommand,
    WrappedKey,
)
from cardperso.hsm.audit import AuditLog, ChainReport, verify_chain
from cardperso.hsm.ceremony import ComponentCombiner, key_check_value
from cardperso.hsm.material import EcPrivate, KeyMaterial, Scratch, dispose
from cardperso.hsm.roles import Operation, PermissionDeniedError, Role, require
from cardperso.payments import cvv as cvv_recipe
from cardperso.payments import emv_keys, ibm3624, pinblock, tr31
from cardperso.payments import pvv as pvv_recipe

__all__ = ["RecipeHsm", "RecipeSession", "RequestSeededRandom"]

KD_LABEL = b"cardperso KD"
KD_ENC_LABEL = b"cardperso KD ENC"
KD_MAC_LABEL = b"cardperso KD MAC"
ECDH_ENC_LABEL = securemsg.ECDH_ENC_LABEL
ECDH_MAC_LABEL = securemsg.ECDH_MAC_LABEL
SEALED_MAC_LENGTH = 8
MAX_CHALLENGE = 64  # the card OS takes at most 64 bytes
INTERNAL_AUTH_PREFIX = b"\x88"

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,63}")
_OPERATOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:/@-]{0,63}")
_VERSION = re.compile(r"[0-9A-Z]{2}")
_FF8 = b"\xff" * 8

_Usages = frozenset[KeyUsage]
_ANY_EXPORTABLE: _Usages = frozenset(u for u in KeyUsage if keyblocks.exportable_usage(u))
_SESSION_USAGES: _Usages = frozenset({KeyUsage.SESSION_ENC, KeyUsage.SESSION_MAC})
_SM_WRAP_USAGES: _Usages = frozenset({KeyUsage.TRANSPORT, KeyUsage.CARD_SECRET})


def _u(*usages: KeyUsage) -> _Usages:
    return frozenset(usages)


class RequestSeededRandom:
    """A seeded random source for repeatable runs (tests, demos, benchmarks only).

    As a plain source it is one :class:`~cardperso.crypto.rand.SeededRandom`
    stream. For batch calls that name each request (:meth:`RecipeSession.card_secrets`)
    the soft HSM asks :meth:`for_request` for a stream of that request's own,
    derived from the seed and the request's context (the record id), so a prepared
    card comes out the same whichever process, call or position served it. A
    production HSM draws from the system's generator and ignores contexts.
    """

    def __init__(self, seed: bytes | str | int) -> None:
        self._base = SeededRandom(seed)
        raw = seed if isinstance(seed, bytes) else str(seed).encode()
        self._root = hashlib.sha256(b"cardperso-request-random|" + raw).digest()

    def random_bytes(self, n: int) -> bytes:
        return self._base.random_bytes(n)

    def for_request(self, context: str) -> RandomSource:
        return SeededRandom(self._root + context.encode())

    def __repr__(self) -> str:
        return "RequestSeededRandom(...)"


@dataclass(slots=True)
class _Call:
    """What one audited call has resolved and will record."""

    keys: list[KeyMaterial]
    audited: list[tuple[str, str]]
    detail: dict[str, str] = field(default_factory=dict)
    scratch: Scratch = field(default_factory=list)  # this call's temporary keys


class _AuditedCall:
    """The context manager behind :meth:`RecipeSession._call` (a class, not a generator:
    it runs on every call, and this costs a fraction of ``@contextmanager``).

    On entry: refuses a closed session (nothing to audit with), then checks the
    role and resolves the keys. On exit, one audit record whatever the outcome, and
    recipe errors turned into an :class:`HsmError` naming the operation.
    """

    __slots__ = ("_call", "_keys", "_op", "_session")

    def __init__(
        self,
        session: RecipeSession,
        op: Operation,
        keys: tuple[tuple[KeyHandle, _Usages], ...],
        detail: dict[str, str] | None,
    ) -> None:
        self._session, self._op, self._keys = session, op, keys
        self._call = _Call([], [], detail or {})

    def __enter__(self) -> _Call:
        session, op, call = self._session, self._op, self._call
        if session._closed or session._hsm._closed:
            raise HsmError(op.value, "the session is closed")  # nothing to audit with
        call.audited = [(h.label, h.kcv) for h, _ in self._keys]
        try:
            require(session.role, op)
            call.keys = [session._resolve(op, h, allowed) for h, allowed in self._keys]
        except Exception as e:
            mapped = self._failed(e)
            if mapped is None:
                raise
            raise mapped from None
        return call

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: object
    ) -> None:
        if self._call.scratch:
            dispose(self._call.scratch)
        if e is None:
            self._session._record(self._op, self._call, "ok")
            return
        if isinstance(e, Exception):
            mapped = self._failed(e)
            if mapped is not None:
                raise mapped from None

    def _failed(self, e: Exception) -> HsmError | None:
        """Record a failed call; the error to raise instead of ``e`` (None: re-raise ``e``).

        Errors outside these classes propagate unrecorded, as they always have.
        """
        op, record = self._op, self._session._record
        if isinstance(e, HsmError):
            record(op, self._call, type(e).__name__)
            return None
        if isinstance(e, CardpersoError | CipherError):
            # Recipe errors name a field and a rule, never a value (DESIGN.md §4).
            record(op, self._call, type(e).__name__)
            return HsmError(op.value, str(e))
        if isinstance(e, ValueError | TypeError):
            # Foreign messages may quote their input: keep only the class.
            record(op, self._call, type(e).__name__)
            return HsmError(op.value, "invalid argument")
        return None


def _check_label(operation: str, label: str) -> str:
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise HsmError(operation, "a key label is 1-64 characters: letters, digits, _.:/@-")
    return label


def _check_version(operation: str, version: str) -> str:
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise HsmError(operation, "a key version is two characters 0-9 or A-Z")
    return version


def _check_algorithm_for(operation: str, algorithm: KeyAlgorithm, usage: KeyUsage) -> None:
    if algorithm not in USAGE_ALGORITHMS[usage]:
        raise KeyUsageError(operation, f"a {usage} key cannot be a {algorithm} key")


class RecipeHsm(Hsm):
    """What every backend shares: audit log, random source, lock, sessions.

    A backend implements the key store (``_get``, ``_handles``, ``_store``,
    ``_generate``, ``_remove``) and the key factories (``_make``, ``_kdf_key``,
    ``_kdf_des_halves``, ``_derive_ecb``, ``_ec_generate``, ``_volatile_key``).
    Factories take the scratch list the key belongs to (one call's, or one
    channel's); a backend whose keys are objects somewhere appends them to it.
    """

    _lock: threading.RLock

    def __init__(self, audit: AuditLog, rng: RandomSource) -> None:
        self._audit = audit
        self._rng = rng
        self._lock = threading.RLock()
        self._volatile_serial = 0
        self._closed = False

    @property
    def audit_path(self) -> Path:
        return self._audit.path

    def audit_anchor(self) -> tuple[str, int]:
        """(head hash, record count) of the audit log, to keep outside it."""
        return self._audit.head, self._audit.count

    def verify_audit(self) -> ChainReport:
        """Verify the whole audit chain up to the last record this object wrote."""
        head, count = self.audit_anchor()
        return verify_chain(self._audit.path, expected_head=head, expected_count=count)

    def session(self, role: Role, operator: str) -> RecipeSession:
        return RecipeSession(self, Role(role), operator)

    def close(self) -> None:
        """Close the audit log; every session of this HSM stops working."""
        with self._lock:
            self._closed = True
            self._audit.close()

    def _next_volatile(self) -> int:
        with self._lock:
            self._volatile_serial += 1
            return self._volatile_serial

    def _request_rng(self, context: str) -> RandomSource:
        """The random source for one named request (see :class:`RequestSeededRandom`)."""
        if isinstance(self._rng, RequestSeededRandom):
            return self._rng.for_request(context)
        return self._rng

    def _label_free(self, operation: str, label: str) -> None:
        if self._get(label) is not None:
            raise HsmError(operation, f"a key labelled {label!r} already exists")

    # -- the key store ------------------------------------------------------------------

    @abstractmethod
    def _get(self, label: str) -> KeyMaterial | None:
        """The stored key ``label``, or None."""

    @abstractmethod
    def _handles(self) -> list[KeyHandle]:
        """Handles of every stored key, sorted by label."""

    @abstractmethod
    def _store(self, operation: str, handle: KeyHandle, value: SecretBytes) -> KeyMaterial:
        """Store a key entered or unwrapped in clear (a ceremony, a key block)."""

    @abstractmethod
    def _generate(
        self,
        operation: str,
        label: str,
        algorithm: KeyAlgorithm,
        usage: KeyUsage,
        exportable: bool,
        version: str,
    ) -> KeyHandle:
        """Generate and store a key (TDES with odd parity); its handle."""

    @abstractmethod
    def _remove(self, label: str) -> None:
        """Destroy the stored key ``label``."""

    # -- key factories --------------------------------------------------------------------

    @abstractmethod
    def _make(self, family: str, value: bytes, scratch: Scratch) -> BlockCipher:
        """A key the recipe holds in clear (``family`` AES, TDES or DES) as a cipher."""

    @abstractmethod
    def _kdf_key(
        self, base: BlockCipher, label: bytes, context: bytes, length: int, scratch: Scratch
    ) -> BlockCipher:
        """SP 800-108r1 counter-mode CMAC KDF under ``base``, the output as a key of
        ``base``'s family (AES, or 2-key TDES for 16 bytes under TDES)."""

    @abstractmethod
    def _kdf_des_halves(
        self, base: BlockCipher, label: bytes, context: bytes, scratch: Scratch
    ) -> tuple[BlockCipher, BlockCipher]:
        """The same KDF for a 16-byte TDES key, as single-DES K1 and K2 (retail MAC)."""

    @abstractmethod
    def _derive_ecb(self, base: BlockCipher, data: bytes, scratch: Scratch) -> BlockCipher:
        """E_base(data) (ECB) as a key of ``base``'s family (parity bits aside)."""

    @abstractmethod
    def _ec_generate(self, scratch: Scratch) -> EcPrivate:
        """An ephemeral P-256 key pair."""

    @abstractmethod
    def _volatile_key(self, handle: KeyHandle, cipher: BlockCipher) -> KeyMaterial:
        """A session key made from a derived cipher (owned by the session)."""

    def _kcv_of(self, algorithm: KeyAlgorithm, cipher: BlockCipher) -> str:
        """The KCV of a key held as a cipher (:func:`key_check_value` without the bytes)."""
        if algorithm.is_tdes:
            return kcv(cipher, 3).hex().upper()
        return kcv_cmac(cipher, 3).hex().upper()


class _Ceremony(Ceremony):
    """A ceremony inside the HSM; every step is audited with the custodian."""

    def __init__(
        self,
        session: RecipeSession,
        label: str,
        algorithm: KeyAlgorithm,
        usage: KeyUsage,
        components: int,
        exportable: bool,
        version: str,
    ) -> None:
        self.label, self.algorithm, self.usage = label, algorithm, usage
        self.components = components
        self._session = session
        self._exportable, self._version = exportable, version
        self._combiner = ComponentCombiner(algorithm, components)
        self._lock = threading.Lock()
        self._done = False

    @property
    def custodians(self) -> tuple[str, ...]:
        return self._combiner.custodians

    def _detail(self, step: str) -> dict[str, str]:
        return {"step": step, "label": self.label, "usage": self.usage.value}

    def add_component(self, custodian: str, value: SecretBytes, kcv: str) -> str:
        with self._session._call(Operation.CEREMONY, detail=self._detail("component")) as c:
            c.detail["custodian"] = str(custodian)[:64]
            with self._lock:
                if self._done:
                    raise HsmError("ceremony", "this ceremony is finished")
                actual = self._combiner.add(custodian, value, kcv)
            c.detail["component_kcv"] = actual
            return actual

    def complete(self, expected_kcv: str | None = None) -> KeyHandle:
        with self._session._call(Operation.CEREMONY, detail=self._detail("complete")) as c:
            with self._lock:
                if self._done:
                    raise HsmError("ceremony", "this ceremony is finished")
                value, kcv = self._combiner.combine(expected_kcv)
                handle = KeyHandle(
                    self.label, self.algorithm, self.usage, kcv, self._version, self._exportable
                )
                self._session._hsm._store("ceremony", handle, value)
                self._done = True
                c.detail["custodians"] = ",".join(self._combiner.custodians)
                self._combiner.clear()
            c.audited.append((handle.label, handle.kcv))
            return handle

    def abort(self) -> None:
        with (
            self._session._call(Operation.CEREMONY, detail=self._detail("abort")),
            self._lock,
        ):
            self._combiner.clear()
            self._done = True


class RecipeSession(HsmSession):
    """One caller's session on a :class:`RecipeHsm` (any backend)."""

    def __init__(self, hsm: RecipeHsm, role: Role, operator: str) -> None:
        if not isinstance(operator, str) or not _OPERATOR.fullmatch(operator):
            raise HsmError("session", "an operator name is 1-64 letters, digits, space, _.:/@-")
        self._hsm = hsm
        self.role = role
        self.operator = operator
        self._volatile: dict[str, KeyMaterial] = {}
        self._channels: dict[str, securemsg.SmChannel] = {}
        self._channel_keys: dict[str, Scratch] = {}  # channel label -> its session keys
        # channel label -> (header, the counter its answer follows) of each command
        # sent and not yet answered, in order
        self._wrapped: dict[str, list[tuple[bytes, int]]] = {}
        # (channel label, EC key ref) -> the public point the card answered on it
        self._points: dict[tuple[str, int], bytes] = {}
        # channel label -> (key ref, ephemeral key, card point, scratch holding the key)
        self._agreements: dict[str, tuple[int, EcPrivate, bytes, Scratch]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.role.value}, {self.operator!r})"

    def close(self) -> None:
        with self._hsm._lock:
            for key in self._volatile.values():
                key.destroy()
            for label in list(self._channels):
                self._close_channel(label)
            self._volatile.clear()
            self._channels.clear()
            self._wrapped.clear()
            self._points.clear()
            self._agreements.clear()
            self._closed = True

    # -- the one path every call takes ---------------------------------------------------

    def _call(
        self,
        op: Operation,
        *keys: tuple[KeyHandle, _Usages],
        detail: dict[str, str] | None = None,
    ) -> _AuditedCall:
        """The audited scope of one call: ``with self._call(op, ...) as c:``."""
        return _AuditedCall(self, op, keys, detail)

    def _record(self, op: Operation, call: _Call, result: str) -> None:
        self._hsm._audit.append(
            op.value, self.role.value, self.operator, call.audited, result, call.detail
        )

    def _resolve(self, op: Operation, handle: KeyHandle, allowed: _Usages) -> KeyMaterial:
        if not isinstance(handle, KeyHandle):
            raise HsmError(op.value, "a key argument must be a KeyHandle")
        key = self._volatile.get(handle.label) or self._hsm._get(handle.label)
        if key is None:
            raise KeyNotFoundError(op.value, f"no key labelled {handle.label!r}")
        if key.handle.kcv != handle.kcv or key.handle.algorithm != handle.algorithm:
            raise KeyNotFoundError(op.value, f"handle {handle.label!r} does not match the key")
        if key.handle.usage not in allowed:
            need = ", ".join(sorted(u.value for u in allowed))
            raise KeyUsageError(
                op.value,
                f"key {handle.label!r} has usage {key.handle.usage.value}; this needs {need}",
            )
        return key

    # -- key management -------------------------------------------------------------------

    def list_keys(self) -> list[KeyHandle]:
        with self._call(Operation.LIST_KEYS):
            return self._hsm._handles()

    def get_key(self, label: str) -> KeyHandle:
        with self._call(Operation.LIST_KEYS, detail={"label": str(label)[:64]}) as c:
            key = self._hsm._get(_check_label("get_key", label))
            if key is None:
                raise KeyNotFoundError("get_key", f"no key labelled {label!r}")
            c.audited.append((key.handle.label, key.handle.kcv))
            return key.handle

    def generate_key(
        self,
        label: str,
        algorithm: KeyAlgorithm,
        usage: KeyUsage,
        *,
        exportable: bool = False,
        version: str = "00",
    ) -> KeyHandle:
        op = Operation.GENERATE_KEY
        with self._call(op, detail={"label": str(label)[:64], "usage": str(usage)}) as c:
            algorithm, usage = KeyAlgorithm(algorithm), KeyUsage(usage)
            _check_label(op.value, label)
            _check_version(op.value, version)
            if usage in _SESSION_USAGES:
                raise KeyUsageError(op.value, "session keys come only from ecdh_agree")
            _check_algorithm_for(op.value, algorithm, usage)
            self._hsm._label_free(op.value, label)
            handle = self._hsm._generate(
                op.value, label, algorithm, usage, bool(exportable), version
            )
            c.audited.append((handle.label, handle.kcv))
            return handle

    def destroy_key(self, key: KeyHandle) -> None:
        with self._call(Operation.DESTROY_KEY, (key, frozenset(KeyUsage))) as c:
            k = c.keys[0]
            if key.label in self._volatile:
                with self._hsm._lock:
                    self._volatile.pop(key.label).destroy()
                return
            if self.role is not Role.SECURITY_OFFICER:
                raise PermissionDeniedError(
                    "destroy_key", f"role {self.role.value} may destroy only its session keys"
                )
            self._hsm._remove(k.handle.label)

    def begin_ceremony(
        self,
        label: str,
        algorithm: KeyAlgorithm,
        usage: KeyUsage,
        *,
        components: int = 2,
        exportable: bool = False,
        version: str = "00",
    ) -> Ceremony:
        op = Operation.CEREMONY
        detail = {"step": "begin", "label": str(label)[:64], "usage": str(usage)}
        with self._call(op, detail=detail):
            algorithm, usage = KeyAlgorithm(algorithm), KeyUsage(usage)
            _check_label(op.value, label)
            _check_version(op.value, version)
            if usage in _SESSION_USAGES:
                raise KeyUsageError(op.value, "session keys come only from ecdh_agree")
            _check_algorithm_for(op.value, algorithm, usage)
            self._hsm._label_free(op.value, label)
            return _Ceremony(self, label, algorithm, usage, components, bool(exportable), version)

    def import_key_block(
        self, kek: KeyHandle, block: str, label: str, *, usage: KeyUsage | None = None
    ) -> KeyHandle:
        op = Operation.IMPORT_KEY_BLOCK
        with self._call(op, (kek, _u(KeyUsage.KEK)), detail={"label": str(label)[:64]}) as c:
            _check_label(op.value, label)
            self._hsm._label_free(op.value, label)
            w = c.keys[0]
            header, raw = tr31.unwrap(w.sym, block, kbpk_variant=w.variant_source())
            algorithm, found, exportable, version = keyblocks.read_header(
                header, len(raw), None if usage is None else KeyUsage(usage)
            )
            keyblocks.check_strength(op.value, w.handle, algorithm)
            _check_algorithm_for(op.value, algorithm, found)
            c.detail["tr31"] = f"{header.version_id}/{header.key_usage}/{header.mode_of_use}"
            handle = KeyHandle(
                label, algorithm, found, key_check_value(algorithm, raw), version, exportable
            )
            self._hsm._store(op.value, handle, SecretBytes(raw))
            c.audited.append((handle.label, handle.kcv))
            return handle

    def export_key_block(
        self, kek: KeyHandle, key: KeyHandle, *, exportable_by_receiver: bool = False
    ) -> str:
        op = Operation.EXPORT_KEY_BLOCK
        wrapping = _u(KeyUsage.KEK, KeyUsage.ISSUER_KEK)
        with self._call(op, (kek, wrapping), (key, _ANY_EXPORTABLE)) as c:
            w, k = c.keys
            if not k.handle.exportable:
                raise KeyUsageError(op.value, f"key {k.handle.label!r} is not exportable")
            keyblocks.check_strength(op.value, w.handle, k.handle.algorithm)
            header = keyblocks.export_header(
                w.handle, k.handle, exportable_by_receiver=exportable_by_receiver
            )
            return tr31.wrap(w.sym, header, k.export_value().reveal(), self._hsm._rng)

    def public_key(self, key: KeyHandle) -> bytes:
        with self._call(Operation.PUBLIC_KEY, (key, _u(KeyUsage.KEY_AGREEMENT))) as c:
            return c.keys[0].public

    # -- card keys ------------------------------------------------------------------------

    def _kd(
        self, op: Operation, c: _Call, km: KeyMaterial, serial: bytes, scheme: KdScheme | None
    ) -> BlockCipher:
        """KD as a cipher (AES for an AES KM, 2-key TDES for a TDES KM), made by the
        backend's factories: inside the token for the PKCS#11 backend, for this call."""
        scheme, serial = _kd_scheme(op, km, serial, scheme)
        if scheme is KdScheme.AES_SP800_108:
            n = ALGORITHM_KEY_LENGTH[km.handle.algorithm]
            return self._hsm._kdf_key(km.sym, KD_LABEL, serial, n, c.scratch)
        inverted = bytes(a ^ b for a, b in zip(serial, _FF8, strict=True))
        return self._hsm._derive_ecb(km.sym, serial + inverted, c.scratch)

    def kd_for_initialization(
        self, km: KeyHandle, serial: bytes, *, scheme: KdScheme | None = None
    ) -> SecretBytes:
        op = Operation.KD_FOR_INITIALIZATION
        with self._call(op, (km, _u(KeyUsage.KD_MASTER)), detail=_serial_detail(serial)) as c:
            return SecretBytes(_derive_kd(op, c.keys[0], serial, scheme))

    def card_cryptogram(
        self, km: KeyHandle, serial: bytes, challenge: bytes, *, scheme: KdScheme | None = None
    ) -> bytes:
        op = Operation.CARD_CRYPTOGRAM
        with self._call(op, (km, _u(KeyUsage.KD_MASTER)), detail=_serial_detail(serial)) as c:
            kd = self._kd(op, c, c.keys[0], serial, scheme)
            return _internal_auth(kd, _check_challenge(op, challenge))

    def verify_card_cryptogram(
        self,
        km: KeyHandle,
        serial: bytes,
        challenge: bytes,
        response: bytes,
        *,
        scheme: KdScheme | None = None,
    ) -> bool:
        op = Operation.VERIFY_CARD_CRYPTOGRAM
        with self._call(op, (km, _u(KeyUsage.KD_MASTER)), detail=_serial_detail(serial)) as c:
            kd = self._kd(op, c, c.keys[0], serial, scheme)
            ok = verify_mac(_internal_auth(kd, _check_challenge(op, challenge)), bytes(response))
            c.detail["verified"] = str(ok).lower()
            return ok

    def external_auth_cryptogram(
        self,
        km: KeyHandle,
        serial: bytes,
        card_challenge: bytes,
        *,
        scheme: KdScheme | None = None,
    ) -> bytes:
        op = Operation.EXTERNAL_AUTH_CRYPTOGRAM
        with self._call(op, (km, _u(KeyUsage.KD_MASTER)), detail=_serial_detail(serial)) as c:
            kd = self._kd(op, c, c.keys[0], serial, scheme)
            if len(card_challenge) != kd.block_size:
                raise HsmError(op.value, f"the card challenge must be {kd.block_size} bytes")
            return kd.encrypt_ecb(bytes(card_challenge))

    def emv_cryptogram(
        self,
        imk: KeyHandle,
        pan: str,
        psn: str,
        r: bytes,
        data: bytes,
        *,
        method: str = "A",
        padding: int = 2,
    ) -> bytes:
        op = Operation.EMV_CRYPTOGRAM
        with self._call(op, (imk, _u(KeyUsage.EMV_IMK)), detail={"method": str(method)}) as c:
            if method == "A":
                icc_mk = emv_keys.derive_icc_mk_a(c.keys[0].sym, pan, psn)
            elif method == "B":
                icc_mk = emv_keys.derive_icc_mk_b(c.keys[0].sym, pan, psn)
            else:
                raise HsmError(op.value, "the EMV derivation method is A or B")
            # payments.emv_keys returns the ICC master key and the session key as bytes:
            # they pass this process's memory (docs/pkcs11.md), the IMK never does.
            icc = self._hsm._make("TDES", icc_mk, c.scratch)
            sk = emv_keys.derive_common_session_key(icc, bytes(r))
            return emv_keys.generate_ac(sk, bytes(data), padding=padding)

    def translate_to_card(
        self,
        transport: KeyHandle,
        ciphertext: bytes,
        iv: bytes,
        km: KeyHandle,
        serial: bytes,
        *,
        scheme: KdScheme | None = None,
    ) -> SealedData:
        op = Operation.TRANSLATE_TO_CARD
        keys = ((transport, _u(KeyUsage.TRANSPORT)), (km, _u(KeyUsage.KD_MASTER)))
        with self._call(op, *keys, detail=_serial_detail(serial)) as c:
            t, m = c.keys
            plain = _decrypt_transport(t, ciphertext, iv)
            kd = self._kd(op, c, m, serial, scheme)
            n = ALGORITHM_KEY_LENGTH[m.handle.algorithm] if kd.algorithm == "AES" else 16
            k_enc = self._hsm._kdf_key(kd, KD_ENC_LABEL, b"", n, c.scratch)
            k_mac = self._hsm._kdf_key(kd, KD_MAC_LABEL, b"", n, c.scratch)
            return _seal(k_enc, k_mac, plain)

    def ecdh_agree(
        self, card_public: bytes, *, key: KeyHandle | None = None, context: bytes = b""
    ) -> AgreedKeys:
        op = Operation.ECDH_AGREE
        keys = ((key, _u(KeyUsage.KEY_AGREEMENT)),) if key is not None else ()
        with self._call(op, *keys, detail={"static": str(key is not None).lower()}) as c:
            private = c.keys[0].ec if c.keys else self._hsm._ec_generate(c.scratch)
            host_public = private.public
            card_public = bytes(card_public)
            kdk = self._kdk(private.agree(card_public), c.scratch)
            info = host_public + card_public + bytes(context)
            n = self._hsm._next_volatile()
            enc = self._add_volatile(
                f"session/{n}/enc", KeyUsage.SESSION_ENC, kdk, ECDH_ENC_LABEL, info
            )
            mac = self._add_volatile(
                f"session/{n}/mac", KeyUsage.SESSION_MAC, kdk, ECDH_MAC_LABEL, info
            )
            c.audited.extend([(enc.label, enc.kcv), (mac.label, mac.kcv)])
            return AgreedKeys(enc, mac, host_public)

    def _add_volatile(
        self, label: str, usage: KeyUsage, kdk: BlockCipher, kdf_label: bytes, info: bytes
    ) -> KeyHandle:
        kept: Scratch = []  # the key belongs to the session, not to this call
        cipher = self._hsm._kdf_key(kdk, kdf_label, info, 16, kept)
        algorithm = KeyAlgorithm.AES_128
        handle = KeyHandle(label, algorithm, usage, self._hsm._kcv_of(algorithm, cipher))
        with self._hsm._lock:
            self._volatile[label] = self._hsm._volatile_key(handle, cipher)
        return handle

    def _kdk(self, z: SecretBytes, scratch: Scratch) -> BlockCipher:
        """K_DK = AES-CMAC(salt = 0^16, Z): SP 800-56C r2 §5.1 step 1 (randomness
        extraction). The salt is the key and Z the message, so Z passes through this
        process's memory on every backend (no PKCS#11 2.40 mechanism MACs a key's value)."""
        return self._hsm._make("AES", cmac(_ECDH_SALT, z.reveal()), scratch)

    # -- secure messaging with one card ----------------------------------------------------

    def card_sm_open(
        self,
        km: KeyHandle,
        serial: bytes,
        host_random: bytes,
        card_reply: bytes,
        *,
        scheme: KdScheme | None = None,
    ) -> CardChannel:
        op = Operation.CARD_SM_OPEN
        with self._call(op, (km, _u(KeyUsage.KD_MASTER)), detail=_serial_detail(serial)) as c:
            kd = self._kd(op, c, c.keys[0], serial, scheme)
            rh = bytes(host_random)
            if len(rh) != kd.block_size:
                raise HsmError(op.value, f"the host random must be {kd.block_size} bytes")
            try:
                reply = tlv.to_dict(tlv.to_dict(bytes(card_reply))[0x7C])
                rc, cc = reply[0x82], reply[0x83]
            except (tlv.TlvError, KeyError):
                raise HsmError(op.value, "malformed GENERAL AUTHENTICATE reply") from None
            if len(rc) != kd.block_size:
                raise HsmError(op.value, "malformed GENERAL AUTHENTICATE reply")
            kept: Scratch = []
            try:
                channel = self._sm_channel(kd, rh + rc, kept)
                card = channel.session_mac_of(b"\x01" + rh + rc)
                if not verify_mac(card, cc):
                    raise HsmError(op.value, "the card cryptogram does not verify")
            except BaseException:
                dispose(kept)
                raise
            label = f"card-sm/{self._hsm._next_volatile()}"
            with self._hsm._lock:
                self._channels[label] = channel
                self._channel_keys[label] = kept
            c.detail["channel"] = label
            return CardChannel(label, bytes(serial), channel.session_mac_of(b"\x02" + rc + rh))

    def _sm_channel(self, kd: BlockCipher, context: bytes, kept: Scratch) -> _KeyedChannel:
        """SK.ENC and SK.MAC from KD (:func:`cardperso.securemsg.derive_session`) made by
        the backend as keys, and the channel that runs by them."""
        family, hsm = kd.algorithm, self._hsm
        if family == "AES":
            n = kd.key_length
            enc = hsm._kdf_key(kd, SM_ENC_LABEL, context, n, kept)
            macs: tuple[BlockCipher, ...] = (hsm._kdf_key(kd, SM_MAC_LABEL, context, n, kept),)
        else:
            enc = hsm._kdf_key(kd, SM_ENC_LABEL, context, 16, kept)
            macs = hsm._kdf_des_halves(kd, SM_MAC_LABEL, context, kept)
        return _KeyedChannel(family, b"", b"", enc_key=enc, mac_keys=macs)

    def _channel(self, op: Operation, channel: CardChannel) -> securemsg.SmChannel:
        if not isinstance(channel, CardChannel):
            raise HsmError(op.value, "not a card channel")
        ch = self._channels.get(channel.label)
        if ch is None:
            raise HsmError(op.value, "no such open card channel in this session")
        if channel.label in self._agreements and op is not Operation.CARD_SM_OPEN_ECDH:
            raise HsmError(op.value, "a key agreement is pending: finish it with card_sm_open_ecdh")
        return ch

    def _close_channel(self, label: str) -> None:
        with self._hsm._lock:
            self._channels.pop(label, None)
            self._wrapped.pop(label, None)
            dispose(self._channel_keys.pop(label, []))
            pending = self._agreements.pop(label, None)
            if pending is not None:
                dispose(pending[3])
            for k in [k for k in self._points if k[0] == label]:
                del self._points[k]

    def _note_point(self, label: str, header: bytes, data: bytes) -> None:
        """Keep the public point of the card's answer to GENERATE ASYMMETRIC KEY PAIR
        (``00 47 80|81 ref``): the channel vouches that this chip reported it."""
        if header[:2] != b"\x00\x47" or header[2] not in (0x80, 0x81):
            return
        try:
            point = tlv.to_dict(tlv.to_dict(data)[0x7F49])[0x86]
        except (tlv.TlvError, KeyError):
            return
        if len(point) == 65 and point[0] == 0x04:
            self._points[(label, header[3] & 0x0F)] = point

    def card_sm_agree(self, channel: CardChannel, key_ref: int) -> bytes:
        op = Operation.CARD_SM_AGREE
        detail = {"channel": str(getattr(channel, "label", "")), "key_ref": str(key_ref)[:4]}
        with self._call(op, detail=detail) as c:
            ch = self._channel(op, channel)
            if type(key_ref) is not int or not 1 <= key_ref <= 15:
                raise HsmError(op.value, "the card key reference is 1 to 15")
            card_public = self._points.get((channel.label, key_ref))
            if card_public is None:
                raise HsmError(
                    op.value,
                    f"the card has not reported EC key {key_ref} on this channel "
                    "(GENERATE ASYMMETRIC KEY PAIR under secure messaging first)",
                )
            c.detail["card_key"] = _point_id(card_public)
            kept: Scratch = []
            private = self._hsm._ec_generate(kept)
            host_public = private.public
            header = bytes([0x00, 0x86, 0x00, key_ref])
            data = tlv.encode(0x7C, tlv.encode(0x80, host_public))
            cmd = CommandAPDU(0x00, 0x86, 0x00, key_ref, data, 256)
            with self._hsm._lock:
                old = self._agreements.pop(channel.label, None)
                if old is not None:
                    dispose(old[3])
                self._agreements[channel.label] = (key_ref, private, card_public, kept)
                apdu = ch.wrap_command(cmd)
                self._wrapped[channel.label] = [(header, ch.ssc)]
                return apdu

    def card_sm_open_ecdh(self, channel: CardChannel, response: bytes) -> CardChannel:
        op = Operation.CARD_SM_OPEN_ECDH
        with self._call(op, detail={"channel": str(getattr(channel, "label", ""))}) as c:
            ch = self._channel(op, channel)
            with self._hsm._lock:
                pending = self._agreements.pop(channel.label, None)
                self._wrapped.pop(channel.label, None)
            if pending is None:
                raise HsmError(op.value, "no key agreement is pending on this channel")
            ref, private, card_public, ephemeral = pending
            c.scratch.extend(ephemeral)  # destroyed with this call, whatever its outcome
            host_public = private.public
            response = bytes(response)
            if len(response) < 2:
                raise HsmError(op.value, "a response ends in a status word")
            try:
                with self._hsm._lock:
                    data, sw = ch.unwrap_response(
                        response[:-2], int.from_bytes(response[-2:], "big")
                    )
            except securemsg.SmError as e:
                self._close_channel(channel.label)
                raise HsmError(op.value, f"protected response rejected ({e})") from None
            c.detail["sw"] = f"{sw:04X}"
            if sw != 0x9000:  # refused: the card keeps the old session, and so do we
                raise HsmError(op.value, f"the card refused the key agreement (SW {sw:04X})")
            # Whatever follows, the card has left the old session.
            self._close_channel(channel.label)
            try:
                reply = tlv.to_dict(tlv.to_dict(data)[0x7C])
                nonce, tag = reply[0x81], reply[0x82]
            except (tlv.TlvError, KeyError):
                raise HsmError(op.value, "malformed key-agreement answer") from None
            if len(nonce) != securemsg.ECDH_NONCE_LENGTH:
                raise HsmError(op.value, "malformed key-agreement answer")
            # securemsg.ecdh_session and ecdh_confirmation, with the keys made by the backend
            hsm, kept = self._hsm, Scratch()
            try:
                kdk = self._kdk(private.agree(card_public), c.scratch)
                ctx = host_public + card_public + nonce
                k_kc = hsm._kdf_key(kdk, securemsg.ECDH_KC_LABEL, ctx, 16, c.scratch)
                message = b"KC_1_V" + channel.serial + card_public + nonce + host_public
                if not verify_mac(cmac(k_kc, message), tag):
                    raise HsmError(op.value, "the card's key confirmation does not verify")
                enc = hsm._kdf_key(kdk, ECDH_ENC_LABEL, ctx, 16, kept)
                mac = hsm._kdf_key(kdk, ECDH_MAC_LABEL, ctx, 16, kept)
            except BaseException:
                dispose(kept)
                raise
            label = f"card-sm/{self._hsm._next_volatile()}"
            with self._hsm._lock:
                self._channels[label] = _KeyedChannel(
                    "AES", b"", b"", 0, ref, enc_key=enc, mac_keys=(mac,)
                )
                self._channel_keys[label] = kept
            c.detail.update(ecdh_channel=label, card_key=_point_id(card_public))
            return CardChannel(label, channel.serial, b"")

    def card_sm_wrap(
        self,
        channel: CardChannel,
        header: bytes,
        data: bytes = b"",
        *,
        le: int = 0,
        transport: KeyHandle | None = None,
        iv: bytes = b"",
    ) -> bytes:
        op = Operation.CARD_SM_WRAP
        keys = ((transport, _SM_WRAP_USAGES),) if transport is not None else ()
        with self._call(op, *keys, detail={"channel": str(getattr(channel, "label", ""))}) as c:
            ch = self._channel(op, channel)
            command = SmCommand(bytes(header), bytes(data), le, transport, bytes(iv))
            key = c.keys[0] if c.keys else None
            with self._hsm._lock:
                apdu, header = self._wrap_one(op, ch, command, key, c.detail)
                self._wrapped[channel.label] = [(header, ch.ssc)]
            return apdu

    def card_sm_wrap_many(self, channel: CardChannel, commands: Sequence[SmCommand]) -> list[bytes]:
        op = Operation.CARD_SM_WRAP
        commands = list(commands)
        if not commands or not all(isinstance(cmd, SmCommand) for cmd in commands):
            commands = []  # refused inside the audited call below
        handles = {c.transport.label: c.transport for c in commands if c.transport is not None}
        keys = tuple((h, _SM_WRAP_USAGES) for h in handles.values())
        detail = {"channel": str(getattr(channel, "label", "")), "commands": str(len(commands))}
        with self._call(op, *keys, detail=detail) as c:
            if not all(isinstance(cmd, SmCommand) for cmd in commands) or not commands:
                raise HsmError(op.value, "give one SmCommand or more")
            ch = self._channel(op, channel)
            resolved = dict(zip(handles, c.keys, strict=True))
            out: list[bytes] = []
            pending: list[tuple[bytes, int]] = []
            with self._hsm._lock:
                start = ch.ssc
                try:
                    for cmd in commands:
                        key = resolved[cmd.transport.label] if cmd.transport is not None else None
                        apdu, header = self._wrap_one(op, ch, cmd, key, c.detail)
                        out.append(apdu)
                        # the card counts each command and its answer: the answer to
                        # this command comes next, then the following command
                        pending.append((header, ch.ssc))
                        ch.ssc += 1
                except BaseException:
                    ch.ssc = start  # nothing of this call reaches the card
                    raise
                # until the first answer is opened the counter stands after the first command
                ch.ssc = pending[0][1]
                self._wrapped[channel.label] = pending
            c.detail["ins"] = " ".join(f"{h[1]:02X}" for h, _ in pending)
            return out

    def _wrap_one(
        self,
        op: Operation,
        ch: securemsg.SmChannel,
        command: SmCommand,
        key: KeyMaterial | None,
        detail: dict[str, str],
    ) -> tuple[bytes, bytes]:
        """(the protected APDU, its header) for one command; opens a transport or
        card-secret cryptogram inside the HSM first."""
        header = bytes(command.header)
        if len(header) != 4 or header[0] not in (0x00, 0x80):
            raise HsmError(op.value, "the header is CLA INS P1 P2 with CLA 00 or 80")
        if key is None:
            plain = bytes(command.data)
        elif key.handle.usage is KeyUsage.CARD_SECRET:
            listed = detail.get("card_secret")
            detail["card_secret"] = (f"{listed} " if listed else "") + header.hex().upper()
            plain = _open_secret(op, key, header, bytes(command.data), bytes(command.iv))
        else:
            plain = _decrypt_transport(key, command.data, command.iv)
        cmd = CommandAPDU(header[0], header[1], header[2], header[3], plain, command.le)
        return ch.wrap_command(cmd), header

    def _unwrap(
        self, op: Operation, channel: CardChannel, response: bytes, *, pin: bool
    ) -> tuple[bytes, int]:
        ch = self._channel(op, channel)
        pending = self._wrapped.get(channel.label)
        header, counter = pending[0] if pending else (b"", ch.ssc)
        generated = header[:2] == GENERATE_PIN_COMMAND
        if generated != pin:
            raise HsmError(
                op.value,
                "the answer to GENERATE PIN opens only through card_sm_unwrap_pin"
                if generated
                else "card_sm_unwrap_pin takes only the answer to GENERATE PIN",
            )
        response = bytes(response)
        if len(response) < 2:
            raise HsmError(op.value, "a response ends in a status word")
        try:
            with self._hsm._lock:
                waiting = self._wrapped.get(channel.label)
                if waiting:
                    waiting.pop(0)
                ch.ssc = counter
                data, sw = ch.unwrap_response(response[:-2], int.from_bytes(response[-2:], "big"))
                if sw == 0x9000:
                    self._note_point(channel.label, header, data)
                return data, sw
        except securemsg.SmError as e:
            self._close_channel(channel.label)
            raise HsmError(op.value, f"protected response rejected ({e})") from None

    def card_sm_unwrap_many(
        self, channel: CardChannel, responses: Sequence[bytes]
    ) -> list[tuple[bytes, int]]:
        op = Operation.CARD_SM_UNWRAP
        detail = {"channel": str(getattr(channel, "label", "")), "responses": str(len(responses))}
        with self._call(op, detail=detail) as c:
            out: list[tuple[bytes, int]] = []
            for response in responses:
                try:
                    out.append(self._unwrap(op, channel, response, pin=False))
                except HsmError as e:
                    c.detail["rejected"] = str(len(out))
                    c.detail["why"] = str(e)[:120]
                    break
            c.detail["sw"] = " ".join(f"{sw:04X}" for _, sw in out)
            return out

    def card_sm_unwrap(self, channel: CardChannel, response: bytes) -> tuple[bytes, int]:
        op = Operation.CARD_SM_UNWRAP
        with self._call(op, detail={"channel": str(getattr(channel, "label", ""))}) as c:
            data, sw = self._unwrap(op, channel, response, pin=False)
            c.detail["sw"] = f"{sw:04X}"
            return data, sw

    def card_sm_unwrap_pin(
        self,
        channel: CardChannel,
        response: bytes,
        copies: Sequence[PinCopy],
        pan: str | None = None,
    ) -> tuple[tuple[bytes, ...], int]:
        op = Operation.CARD_SM_UNWRAP_PIN
        copies = tuple(copies)
        keys = [(cp.key, _PIN_KEY) for cp in copies if isinstance(cp, PinCopy)]
        if len(keys) != len(copies) or not copies:
            keys, copies = [], ()
        detail = {"channel": str(getattr(channel, "label", "")), "copies": str(len(copies))}
        with self._call(op, *keys, detail=detail) as c:
            if not copies:
                raise HsmError(op.value, "give at least one PinCopy (the PIN leaves only so)")
            data, sw = self._unwrap(op, channel, response, pin=True)
            c.detail["sw"] = f"{sw:04X}"
            if sw != 0x9000:
                return (), sw
            pin = _parse_format2(op, data)
            rng = self._hsm._rng
            return tuple(
                pinblock.encrypt_pin_block(k.sym, cp.fmt, pin, pan, rng)
                for k, cp in zip(c.keys, copies, strict=True)
            ), sw

    def translate_to_session(
        self, transport: KeyHandle, ciphertext: bytes, iv: bytes, session: AgreedKeys
    ) -> SealedData:
        op = Operation.TRANSLATE_TO_SESSION
        keys = (
            (transport, _u(KeyUsage.TRANSPORT)),
            (session.enc, _u(KeyUsage.SESSION_ENC)),
            (session.mac, _u(KeyUsage.SESSION_MAC)),
        )
        with self._call(op, *keys) as c:
            t, enc, mac = c.keys
            return _seal(enc.sym, mac.sym, _decrypt_transport(t, ciphertext, iv))

    # -- card secrets and CVVs for data preparation (batch calls) -------------------------

    @staticmethod
    def _batch_keys(
        op: Operation, pairs: Iterable[tuple[KeyHandle, _Usages]]
    ) -> tuple[list[tuple[KeyHandle, _Usages]], dict[tuple[str, _Usages], int]]:
        """Distinct (handle, usages) pairs in first-seen order, and where each one is."""
        order: list[tuple[KeyHandle, _Usages]] = []
        where: dict[tuple[str, _Usages], int] = {}
        for handle, usages in pairs:
            if not isinstance(handle, KeyHandle):
                raise HsmError(op.value, "a key argument must be a KeyHandle")
            if (handle.label, usages) not in where:
                where[(handle.label, usages)] = len(order)
                order.append((handle, usages))
        return order, where

    def card_secrets(
        self, protect: KeyHandle, requests: Sequence[CardSecretRequest]
    ) -> list[CardSecret]:
        op = Operation.CARD_SECRETS
        reqs = list(requests)
        order: list[tuple[KeyHandle, _Usages]] = []
        where: dict[tuple[str, _Usages], int] = {}
        detail: dict[str, str] = {"requests": str(len(reqs))}
        malformed: HsmError | None = None
        try:
            pairs: list[tuple[KeyHandle, _Usages]] = [(protect, _u(KeyUsage.CARD_SECRET))]
            for r in reqs:
                if not isinstance(r, CardSecretRequest):
                    raise HsmError(op.value, "requests must be CardSecretRequest objects")
                pairs.extend(_request_keys(r))
            order, where = self._batch_keys(op, pairs)
            pins = sum(isinstance(r.source, IssuerPin | RandomPin | DerivedPin) for r in reqs)
            detail.update(pins=str(pins), keys=str(len(reqs) - pins))
            if reqs:
                detail.update(first=reqs[0].context, last=reqs[-1].context)
        except HsmError as e:
            malformed, order = e, []
        with self._call(op, *order, detail=detail) as c:
            if malformed is not None:
                raise malformed  # refused, and audited like every call

            def key(handle: KeyHandle, usages: _Usages) -> KeyMaterial:
                return c.keys[where[(handle.label, usages)]]

            out: list[CardSecret] = []
            for i, r in enumerate(reqs):
                try:
                    out.append(self._card_secret(c.keys[0], r, key))
                except HsmError as e:
                    raise type(e)(op.value, f"request {i} ({r.context}): {_reason(e)}") from None
                except (CardpersoError, CipherError) as e:
                    raise HsmError(op.value, f"request {i} ({r.context}): {e}") from None
                except (ValueError, TypeError):
                    raise HsmError(
                        op.value, f"request {i} ({r.context}): invalid argument"
                    ) from None
            return out

    def _card_secret(
        self,
        protect: KeyMaterial,
        r: CardSecretRequest,
        key: Callable[[KeyHandle, _Usages], KeyMaterial],
    ) -> CardSecret:
        op = Operation.CARD_SECRETS.value
        rng = self._hsm._request_rng(r.context)
        src = r.source
        is_pin = isinstance(src, IssuerPin | RandomPin | DerivedPin)
        header = bytes(r.header)
        bound = SECRET_COMMANDS["pin" if is_pin else "key"]
        if len(header) != 4 or tuple(header[:3]) != bound or not 1 <= header[3] <= 15:
            want = "PUT PIN (80 D8 01 ref)" if is_pin else "PUT KEY (80 D8 00 ref)"
            raise HsmError(op, f"a {'PIN' if is_pin else 'key'} is loaded only by {want}")
        copies: tuple[bytes, ...] = ()
        pvv: str | None = None
        block: str | None = None
        kcv: str | None = None
        if isinstance(src, IssuerPin | RandomPin | DerivedPin):
            if r.export_under is not None:
                raise HsmError(op, "a PIN is returned as a PIN copy, not a key block")
            pin = self._source_pin(src, r.pan, key, rng)
            value = _format2(pin)
            copies = tuple(
                pinblock.encrypt_pin_block(key(cp.key, _PIN_KEY).sym, cp.fmt, pin, r.pan, rng)
                for cp in r.copies
            )
            if r.pvv is not None:
                if r.pan is None:
                    raise HsmError(op, "the PVV needs the PAN")
                pvv = pvv_recipe.pvv(key(r.pvv.pvk, _PVK).sym, r.pan, r.pvv.pvki, pin)
        else:
            if r.copies or r.pvv is not None:
                raise HsmError(op, "PIN copies and PVVs are for PIN sources")
            value, algorithm = self._source_key(src, key, rng)
            if not isinstance(src, DerivedKey):  # derived keys: QC recomputes them from KM
                kcv = key_check_value(algorithm, value)
            if r.export_under is not None:
                if not isinstance(src, RandomKey):
                    raise KeyUsageError(op, "only keys generated here go back to the issuer")
                kek = key(r.export_under, _u(KeyUsage.ISSUER_KEK))
                keyblocks.check_strength(op, kek.handle, algorithm)
                kvn = _check_version(op, r.key_version)
                hdr = keyblocks.card_key_header(kek.handle, algorithm, kvn)
                block = tr31.wrap(kek.sym, hdr, value, rng)
        if not 0 < r.tag <= 0xFFFF:
            raise HsmError(op, "the value tag must be a 1- or 2-byte tag")
        plain = bytes(r.prefix) + tlv.encode(r.tag, value)
        iv = rng.random_bytes(16)
        return CardSecret(_seal_secret(protect, header, plain, iv), iv, copies, pvv, block, kcv)

    def _source_pin(
        self,
        src: IssuerPin | RandomPin | DerivedPin,
        pan: str | None,
        key: Callable[[KeyHandle, _Usages], KeyMaterial],
        rng: RandomSource,
    ) -> str:
        if isinstance(src, IssuerPin):
            return pinblock.decrypt_pin_block(key(src.key, _PIN_KEY).sym, src.fmt, src.block, pan)
        if isinstance(src, RandomPin):
            return pinblock.random_pin(rng, src.length)
        pdk = key(src.pdk, _PVK).sym
        if src.offset is None:
            return ibm3624.natural_pin(
                pdk, src.validation_data, src.decimalization_table, src.length, src.pad
            )
        if len(src.offset) != src.length:
            raise HsmError(Operation.CARD_SECRETS.value, "the offset must have length digits")
        return ibm3624.pin_from_offset(
            pdk, src.validation_data, src.decimalization_table, src.offset, src.pad
        )

    def _source_key(
        self,
        src: RandomKey | DerivedKey | WrappedKey,
        key: Callable[[KeyHandle, _Usages], KeyMaterial],
        rng: RandomSource,
    ) -> tuple[bytes, KeyAlgorithm]:
        op = Operation.CARD_SECRETS
        if isinstance(src, RandomKey):
            algorithm = KeyAlgorithm(src.algorithm)
            if algorithm is KeyAlgorithm.EC_P256:
                raise HsmError(op.value, "EC key pairs are generated on the card")
            raw = rng.random_bytes(ALGORITHM_KEY_LENGTH[algorithm])
            return (adjust_des_parity(raw) if algorithm.is_tdes else raw), algorithm
        if isinstance(src, DerivedKey):
            km = key(src.master, _DERIVING)
            if km.handle.usage is KeyUsage.EMV_IMK and src.scheme is not KdScheme.EMV_3DES:
                raise KeyUsageError(op.value, "an EMV_IMK derives card keys by EMV Option A only")
            raw = _derive_kd(op, km, src.diversifier, src.scheme)
            if km.handle.algorithm.is_aes:
                algorithm = KeyAlgorithm.AES_128 if len(raw) == 16 else KeyAlgorithm.AES_256
            else:
                algorithm = KeyAlgorithm.TDES_2KEY
            return raw, algorithm
        kek = key(src.kek, _u(KeyUsage.KEK))
        if isinstance(src.wrapped, str):
            header, raw = tr31.unwrap(kek.sym, src.wrapped, kbpk_variant=kek.variant_source())
            algorithm = _card_key_algorithm(op, header.algorithm, len(raw))
        else:
            wrapped = bytes(src.wrapped)
            if len(wrapped) not in (16, 24, 32) or len(wrapped) % kek.sym.block_size:
                raise HsmError(op.value, "a key cryptogram is 16, 24 or 32 bytes")
            raw = kek.sym.decrypt_ecb(wrapped)
            family = "A" if kek.handle.algorithm.is_aes else "T"
            algorithm = _card_key_algorithm(op, family, len(raw))
        keyblocks.check_strength(op.value, kek.handle, algorithm)
        return raw, algorithm

    def generate_cvvs(self, requests: Sequence[CvvRequest]) -> list[str]:
        op = Operation.GENERATE_CVVS
        reqs = list(requests)
        malformed: HsmError | None = None
        order: list[tuple[KeyHandle, _Usages]] = []
        where: dict[tuple[str, _Usages], int] = {}
        try:
            if not all(isinstance(r, CvvRequest) for r in reqs):
                raise HsmError(op.value, "requests must be CvvRequest objects")
            order, where = self._batch_keys(op, ((r.cvk, _u(KeyUsage.CVK)) for r in reqs))
        except HsmError as e:
            malformed = e
        with self._call(op, *order, detail={"requests": str(len(reqs))}) as c:
            if malformed is not None:
                raise malformed
            out: list[str] = []
            cvk = _u(KeyUsage.CVK)
            for i, r in enumerate(reqs):
                k = c.keys[where[(r.cvk.label, cvk)]]
                try:
                    out.append(
                        cvv_recipe.cvv(k.des_half(0), k.sym, r.pan, r.expiry_yymm, r.service_code)
                    )
                except CardpersoError as e:
                    raise HsmError(op.value, f"request {i}: {e}") from None
            return out

    def encrypt_data(self, key: KeyHandle, plaintext: bytes, iv: bytes) -> bytes:
        with self._call(Operation.ENCRYPT_DATA, (key, _u(KeyUsage.TRANSPORT))) as c:
            cipher = c.keys[0].sym
            return cipher.encrypt_cbc(pad_iso9797(bytes(plaintext), 16, 2), _check_iv(iv))

    def decrypt_data(self, key: KeyHandle, ciphertext: bytes, iv: bytes) -> bytes:
        with self._call(Operation.DECRYPT_DATA, (key, _u(KeyUsage.TRANSPORT))) as c:
            return _decrypt_transport(c.keys[0], ciphertext, iv)

    # -- PINs -----------------------------------------------------------------------------

    def _pin(self, key: KeyMaterial, pin_block: bytes, pan: str | None, fmt: PinBlockFormat) -> str:
        return pinblock.decrypt_pin_block(key.sym, fmt, bytes(pin_block), pan)

    def _block(self, key: KeyMaterial, pin: str, pan: str | None, fmt: PinBlockFormat) -> bytes:
        return pinblock.encrypt_pin_block(key.sym, fmt, pin, pan, self._hsm._rng)

    def generate_pin(
        self, pin_key: KeyHandle, pan: str | None, fmt: PinBlockFormat, *, length: int = 4
    ) -> bytes:
        op = Operation.GENERATE_PIN
        with self._call(op, (pin_key, _PIN_KEY), detail=_fmt_detail(fmt)) as c:
            pin = pinblock.random_pin(self._hsm._rng, length)
            return self._block(c.keys[0], pin, pan, fmt)

    def ibm3624_pin(
        self,
        pdk: KeyHandle,
        pin_key: KeyHandle,
        pan: str | None,
        fmt: PinBlockFormat,
        validation_data: str,
        decimalization_table: str,
        *,
        pin_length: int = 4,
        offset: str | None = None,
        pad: str = "F",
    ) -> bytes:
        op = Operation.IBM3624_PIN
        keys = ((pdk, _PVK), (pin_key, _PIN_KEY))
        with self._call(op, *keys, detail=_fmt_detail(fmt)) as c:
            d, p = c.keys
            if offset is None:
                pin = ibm3624.natural_pin(
                    d.sym, validation_data, decimalization_table, pin_length, pad
                )
            else:
                if len(offset) != pin_length:
                    raise HsmError(op.value, "the offset must have pin_length digits")
                pin = ibm3624.pin_from_offset(
                    d.sym, validation_data, decimalization_table, offset, pad
                )
            return self._block(p, pin, pan, fmt)

    def ibm3624_offset(
        self,
        pdk: KeyHandle,
        pin_key: KeyHandle,
        pin_block: bytes,
        pan: str | None,
        fmt: PinBlockFormat,
        validation_data: str,
        decimalization_table: str,
        *,
        pad: str = "F",
    ) -> str:
        op = Operation.IBM3624_OFFSET
        keys = ((pdk, _PVK), (pin_key, _PIN_KEY))
        with self._call(op, *keys, detail=_fmt_detail(fmt)) as c:
            d, p = c.keys
            pin = self._pin(p, pin_block, pan, fmt)
            return ibm3624.offset_from_pin(d.sym, validation_data, decimalization_table, pin, pad)

    def verify_ibm3624(
        self,
        pdk: KeyHandle,
        pin_key: KeyHandle,
        pin_block: bytes,
        pan: str | None,
        fmt: PinBlockFormat,
        validation_data: str,
        decimalization_table: str,
        offset: str,
        *,
        pad: str = "F",
    ) -> bool:
        op = Operation.VERIFY_IBM3624
        keys = ((pdk, _PVK), (pin_key, _PIN_KEY))
        with self._call(op, *keys, detail=_fmt_detail(fmt)) as c:
            d, p = c.keys
            pin = self._pin(p, pin_block, pan, fmt)
            ok = ibm3624.verify_offset(
                d.sym, validation_data, decimalization_table, pin, offset, pad
            )
            c.detail["verified"] = str(ok).lower()
            return ok

    def pvv(
        self,
        pvk: KeyHandle,
        pin_key: KeyHandle,
        pin_block: bytes,
        pan: str,
        fmt: PinBlockFormat,
        pvki: str,
    ) -> str:
        keys = ((pvk, _PVK), (pin_key, _PIN_KEY))
        with self._call(Operation.PVV, *keys, detail=_fmt_detail(fmt)) as c:
            v, p = c.keys
            return pvv_recipe.pvv(v.sym, pan, pvki, self._pin(p, pin_block, pan, fmt))

    def verify_pvv(
        self,
        pvk: KeyHandle,
        pin_key: KeyHandle,
        pin_block: bytes,
        pan: str,
        fmt: PinBlockFormat,
        pvki: str,
        pvv: str,
    ) -> bool:
        keys = ((pvk, _PVK), (pin_key, _PIN_KEY))
        with self._call(Operation.VERIFY_PVV, *keys, detail=_fmt_detail(fmt)) as c:
            v, p = c.keys
            pin = self._pin(p, pin_block, pan, fmt)
            ok = pvv_recipe.verify_pvv(v.sym, pan, pvki, pin, pvv)
            c.detail["verified"] = str(ok).lower()
            return ok

    def translate_pin_block(
        self,
        src_key: KeyHandle,
        dst_key: KeyHandle,
        pin_block: bytes,
        pan: str | None,
        src_fmt: PinBlockFormat,
        dst_fmt: PinBlockFormat,
    ) -> bytes:
        op = Operation.TRANSLATE_PIN_BLOCK
        detail = {"from": str(int(src_fmt)), "to": str(int(dst_fmt))}
        with self._call(op, (src_key, _PIN_KEY), (dst_key, _PIN_KEY), detail=detail) as c:
            s, d = c.keys
            if int(dst_fmt) == PinBlockFormat.ISO_1 and int(src_fmt) != PinBlockFormat.ISO_1:
                # PCI PIN Security Requirements: never out of a PAN-bound format into format 1.
                raise HsmError(op.value, "a PAN-bound PIN block cannot become format 1")
            return self._block(d, self._pin(s, pin_block, pan, src_fmt), pan, dst_fmt)

    def print_pin_mailer(
        self,
        pin_key: KeyHandle,
        pin_block: bytes,
        pan: str | None,
        fmt: PinBlockFormat,
        renderer: PinMailerRenderer,
    ) -> bytes:
        op = Operation.PRINT_PIN_MAILER
        with self._call(op, (pin_key, _PIN_KEY), detail=_fmt_detail(fmt)) as c:
            pin = SecretStr(self._pin(c.keys[0], pin_block, pan, fmt))
            document: object = None
            try:
                document = renderer(pin)
            except Exception:
                # Its message or traceback could quote the PIN: report only the fact,
                # raised outside the handler so the renderer's error is not even chained.
                document = _RENDER_FAILED
            if document is _RENDER_FAILED:
                raise HsmError(op.value, "the PIN mailer renderer failed")
            if not isinstance(document, bytes):
                raise HsmError(op.value, "the PIN mailer renderer must return bytes")
            c.detail["document_bytes"] = str(len(document))
            return document

    # -- card verification values and MACs ----------------------------------------------------

    def generate_cvv(self, cvk: KeyHandle, pan: str, expiry_yymm: str, service_code: str) -> str:
        op = Operation.GENERATE_CVV
        with self._call(op, (cvk, _u(KeyUsage.CVK)), detail={"service_code": "given"}) as c:
            k = c.keys[0]
            return cvv_recipe.cvv(k.des_half(0), k.sym, pan, expiry_yymm, service_code)

    def verify_cvv(
        self, cvk: KeyHandle, pan: str, expiry_yymm: str, service_code: str, value: str
    ) -> bool:
        with self._call(Operation.VERIFY_CVV, (cvk, _u(KeyUsage.CVK))) as c:
            k = c.keys[0]
            ok = cvv_recipe.verify_cvv(k.des_half(0), k.sym, pan, expiry_yymm, service_code, value)
            c.detail["verified"] = str(ok).lower()
            return ok

    def _mac(self, op: Operation, key: KeyMaterial, data: bytes, algorithm: MacAlgorithm) -> bytes:
        algorithm = MacAlgorithm(algorithm)
        if algorithm is MacAlgorithm.CMAC:
            return cmac(key.sym, bytes(data))
        if key.handle.algorithm is not KeyAlgorithm.TDES_2KEY:
            raise KeyUsageError(op.value, "the retail MAC needs a TDES-2KEY key")
        return mac_alg3(key.des_half(0), key.des_half(1), bytes(data), 2)

    def generate_mac(
        self,
        key: KeyHandle,
        data: bytes,
        *,
        algorithm: MacAlgorithm = MacAlgorithm.CMAC,
        length: int = 8,
    ) -> bytes:
        op = Operation.GENERATE_MAC
        with self._call(op, (key, _u(KeyUsage.MAC)), detail={"algorithm": str(algorithm)}) as c:
            full = self._mac(op, c.keys[0], data, algorithm)
            if not 4 <= length <= len(full):
                raise HsmError(op.value, f"MAC length must be 4 to {len(full)} bytes")
            return full[:length]

    def verify_mac(
        self,
        key: KeyHandle,
        data: bytes,
        mac: bytes,
        *,
        algorithm: MacAlgorithm = MacAlgorithm.CMAC,
    ) -> bool:
        op = Operation.VERIFY_MAC
        with self._call(op, (key, _u(KeyUsage.MAC)), detail={"algorithm": str(algorithm)}) as c:
            full = self._mac(op, c.keys[0], data, algorithm)
            if not 4 <= len(mac) <= len(full):
                raise HsmError(op.value, f"MAC length must be 4 to {len(full)} bytes")
            ok = verify_mac(full[: len(mac)], bytes(mac))
            c.detail["verified"] = str(ok).lower()
            return ok


_PIN_KEY = _u(KeyUsage.PIN_ENCRYPTION)
GENERATE_PIN_COMMAND = b"\x80\xda"  # the card OS's GENERATE PIN (docs/card-os.md §2.3)
_DERIVING = _u(KeyUsage.KD_MASTER, KeyUsage.EMV_IMK)  # masters of DerivedKey card keys
_RENDER_FAILED = object()
_PVK = _u(KeyUsage.PIN_VERIFICATION)


def _fmt_detail(fmt: PinBlockFormat) -> dict[str, str]:
    return {"format": str(int(fmt))}


def _point_id(point: bytes) -> str:
    """A public point's audit name: SHA-256 of it, 6 hex digits (as an EC key's KCV)."""
    return hashlib.sha256(point).hexdigest()[:6].upper()


def _serial_detail(serial: bytes) -> dict[str, str]:
    return {"serial": bytes(serial).hex().upper()[:128]}


def _kd_scheme(
    op: Operation, km: KeyMaterial, serial: bytes, scheme: KdScheme | None
) -> tuple[KdScheme, bytes]:
    """The KD scheme for this KM (checked against it) and the checked serial."""
    algorithm = km.handle.algorithm
    if scheme is None:
        scheme = KdScheme.AES_SP800_108 if algorithm.is_aes else KdScheme.EMV_3DES
    scheme = KdScheme(scheme)
    serial = bytes(serial)
    if scheme is KdScheme.AES_SP800_108:
        if not algorithm.is_aes:
            raise KeyUsageError(op.value, f"scheme {scheme.value} needs an AES master key")
        if not 1 <= len(serial) <= 64:
            raise HsmError(op.value, "the chip serial must be 1 to 64 bytes")
        return scheme, serial
    if not algorithm.is_tdes:
        raise KeyUsageError(op.value, f"scheme {scheme.value} needs a TDES master key")
    if len(serial) != 8:
        raise HsmError(op.value, "scheme emv-3des needs an 8-byte chip serial")
    return scheme, serial


def _derive_kd(op: Operation, km: KeyMaterial, serial: bytes, scheme: KdScheme | None) -> bytes:
    """KD in clear from KM and the chip serial (see :class:`~cardperso.hsm.api.KdScheme`),
    for the two calls that hand it on: ``kd_for_initialization`` and ``card_secrets``."""
    scheme, serial = _kd_scheme(op, km, serial, scheme)
    if scheme is KdScheme.AES_SP800_108:
        n = ALGORITHM_KEY_LENGTH[km.handle.algorithm]
        return sp800_108_counter_cmac(km.sym, KD_LABEL, serial, n)
    # EMV Book 2 A1.4.1 steps 2-3 with Y = the serial block. payments.emv_keys runs the
    # same steps but takes Y as PAN digits, which a hex chip serial is not.
    inverted = bytes(a ^ b for a, b in zip(serial, _FF8, strict=True))
    return adjust_des_parity(km.sym.encrypt_ecb(serial + inverted))


def _check_challenge(op: Operation, challenge: bytes) -> bytes:
    challenge = bytes(challenge)
    if not 1 <= len(challenge) <= MAX_CHALLENGE:
        raise HsmError(op.value, f"the challenge must be 1 to {MAX_CHALLENGE} bytes")
    return challenge


def _internal_auth(kd: BlockCipher, challenge: bytes) -> bytes:
    """The card's INTERNAL AUTHENTICATE answer: CMAC_KD(88 || challenge), one block.

    The INS byte 88 in front keeps this apart from every other use of KD (the
    EXTERNAL AUTHENTICATE cryptogram E_KD(challenge), the SM key derivation).
    """
    return cmac(kd, INTERNAL_AUTH_PREFIX + challenge)


def _check_iv(iv: bytes) -> bytes:
    if len(iv) != 16:
        raise CipherError("the IV must be 16 bytes")
    return bytes(iv)


def _decrypt_transport(key: KeyMaterial, ciphertext: bytes, iv: bytes) -> bytes:
    """AES-CBC decryption and strict method-2 unpadding under a TRANSPORT key.

    A padding failure is reported (callers must check the issuer file's MAC first,
    so a padding oracle on unauthenticated data never arises).
    """
    ciphertext = bytes(ciphertext)
    if not ciphertext or len(ciphertext) % 16:
        raise CipherError("the ciphertext must be a positive multiple of 16 bytes")
    return unpad_m2(key.sym.decrypt_cbc(ciphertext, _check_iv(iv)), 16)


def _seal(enc: BlockCipher, mac: BlockCipher, plain: bytes) -> SealedData:
    cryptogram = enc.encrypt_cbc(pad_iso9797(plain, enc.block_size, 2))
    return SealedData(cryptogram, cmac(mac, cryptogram)[:SEALED_MAC_LENGTH])


_CONTEXT = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,127}")
SECRET_ENC_LABEL = b"cardperso card secret ENC"
SECRET_MAC_LABEL = b"cardperso card secret MAC"
SECRET_TAG_LENGTH = 16


def _context(op: Operation, context: str) -> str:
    if not isinstance(context, str) or not _CONTEXT.fullmatch(context):
        raise HsmError(op.value, "a request context is 1-128 printable ASCII characters")
    return context


def _reason(e: HsmError) -> str:
    """The message of an HSM error without its ``HSM <operation>: `` prefix."""
    text = str(e)
    prefix = f"HSM {e.operation}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _request_keys(r: CardSecretRequest) -> list[tuple[KeyHandle, _Usages]]:
    """Every key a card-secret request names, with the usage each place needs."""
    _context(Operation.CARD_SECRETS, r.context)
    src = r.source
    out: list[tuple[KeyHandle, _Usages]] = []
    if isinstance(src, IssuerPin):
        out.append((src.key, _PIN_KEY))
    elif isinstance(src, DerivedPin):
        out.append((src.pdk, _PVK))
    elif isinstance(src, DerivedKey):
        out.append((src.master, _DERIVING))
    elif isinstance(src, WrappedKey):
        out.append((src.kek, _u(KeyUsage.KEK)))
    elif not isinstance(src, RandomPin | RandomKey):
        raise HsmError(Operation.CARD_SECRETS.value, "unknown secret source")
    out.extend((cp.key, _PIN_KEY) for cp in r.copies)
    if r.pvv is not None:
        out.append((r.pvv.pvk, _PVK))
    if r.export_under is not None:
        out.append((r.export_under, _u(KeyUsage.ISSUER_KEK)))
    return out


def _card_key_algorithm(op: Operation, family: str, length: int) -> KeyAlgorithm:
    """The algorithm of an unwrapped card key from its family (TR-31 A/T) and length."""
    found = {
        ("A", 16): KeyAlgorithm.AES_128,
        ("A", 32): KeyAlgorithm.AES_256,
        ("T", 16): KeyAlgorithm.TDES_2KEY,
        ("T", 24): KeyAlgorithm.TDES_3KEY,
    }.get((family, length))
    if found is None:
        raise HsmError(op.value, "the wrapped key is not an AES-128/256 or TDES key")
    return found


def _parse_format2(op: Operation, block: bytes) -> str:
    """The PIN in a clear ISO 9564-1 format-2 block; one message for any fault (no oracle)."""
    text = bytes(block).hex().upper()
    n = int(text[1], 16) if len(text) == 16 else 0
    pin = text[2 : 2 + n]
    if text[:1] != "2" or not 4 <= n <= 12 or not pin.isdigit() or set(text[2 + n :]) - {"F"}:
        raise HsmError(op.value, "the card's answer is not a PIN block")
    return pin


def _format2(pin: str) -> bytes:
    """ISO 9564-1 format-2 PIN block (control 2, length, PIN, fill F): the card's form."""
    return bytes.fromhex(f"2{len(pin):X}{pin}".ljust(16, "F"))


def _secret_tag(tag: Callable[[bytes], bytes], header: bytes, iv: bytes, ct: bytes) -> bytes:
    return tag(header + iv + ct)[:SECRET_TAG_LENGTH]


def _seal_secret(key: KeyMaterial, header: bytes, plain: bytes, iv: bytes) -> bytes:
    """Encrypt-then-MAC: CBC_K_ENC(iv, plain padded by method 2) || HMAC-SHA256_K_MAC(header
    || iv || that ciphertext), cut to 16 bytes. The MAC binds the command header, so the
    cryptogram opens only for the command it was made for, and it is checked before any
    decryption (no padding oracle)."""
    enc, k_mac = key.secret_pair()
    ct = enc.encrypt_cbc(pad_iso9797(plain, 16, 2), iv)
    return ct + _secret_tag(k_mac, header, iv, ct)


def _open_secret(
    op: Operation, key: KeyMaterial, header: bytes, cryptogram: bytes, iv: bytes
) -> bytes:
    """Inverse of :func:`_seal_secret`; one message for every failure (no oracle)."""
    enc, k_mac = key.secret_pair()
    n = len(cryptogram) - SECRET_TAG_LENGTH
    ok = len(iv) == 16 and n >= 16 and n % 16 == 0
    if ok:
        ct, tag = cryptogram[:n], cryptogram[n:]
        ok = verify_mac(_secret_tag(k_mac, header, iv, ct), tag)
    if not ok:
        raise HsmError(op.value, "the card secret does not verify for this command and key")
    return unpad_m2(enc.decrypt_cbc(cryptogram[:n], iv), 16)


SM_ENC_LABEL = b"cardperso SM ENC"
SM_MAC_LABEL = b"cardperso SM MAC"
_ECDH_SALT = AES(bytes(16))  # SP 800-56C r2 §5.1: a salt of zeros, the length of the key


@dataclass(slots=True, repr=False)
class _KeyedChannel(securemsg.SmChannel):
    """A :class:`~cardperso.securemsg.SmChannel` whose session keys are backend keys
    (ciphers that run by handle) instead of bytes: the wire format and the counter
    are the card OS's own, only the two key lookups are replaced."""

    enc_key: BlockCipher | None = None
    mac_keys: tuple[BlockCipher, ...] = ()

    def _cipher(self) -> BlockCipher:
        assert self.enc_key is not None
        return self.enc_key

    def _session_mac(self, data: bytes) -> bytes:
        return self.session_mac_of(data)

    def session_mac_of(self, data: bytes) -> bytes:
        """:func:`cardperso.securemsg.session_mac` under this channel's SK.MAC."""
        if self.family == "AES":
            return cmac(self.mac_keys[0], pad_iso9797(data, 16, 2))[:8]
        return mac_alg3(self.mac_keys[0], self.mac_keys[1], data, 2)[:8]
