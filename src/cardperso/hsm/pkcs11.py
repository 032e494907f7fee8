"""The PKCS#11 backend: the same recipes as the soft HSM, with the keys in a token.

Every long-term key (ceremony results, generated keys, imported key blocks, EC
private keys) is a token object, ``CKA_SENSITIVE`` true and ``CKA_EXTRACTABLE``
false (true only for keys marked *exportable*, which TR-31 export must wrap), found
by its ``CKA_LABEL``; this process holds object handles, cached by label. The
handle's public fields (usage, algorithm, version, exportability) ride in
``CKA_ID``; the KCV is recomputed by the token when the backend opens.

The recipes are :mod:`cardperso.hsm.engine`'s, run over ciphers whose block
operations are token calls (``C_Encrypt`` with ``CKM_AES_ECB``/``CBC``,
``CKM_DES3_ECB``/``CBC``, ``C_Sign`` with ``CKM_AES_CMAC``/``CKM_DES3_CMAC``).
Derived keys are made *inside* the token as session objects and destroyed when the
call (or the card channel) ends:

* KD by EMV Option A: ``CKM_DES3_ECB_ENCRYPT_DATA`` (parameter packed by hand);
* the SP 800-108 CMAC KDF (KD for AES, K_ENC/K_MAC, SM session keys, the
  CARD_SECRET keys): the token has no KDF mechanism, so the host computes, by
  handle, the last CMAC input block X_i of each round (:func:`cardperso.crypto.mac.
  cmac_final_inputs`) and the token derives ``E_K(X_1 || X_2 ..)`` =
  the KDF output with ``CKM_AES_ECB_ENCRYPT_DATA`` / ``CKM_DES3_ECB_ENCRYPT_DATA``.
  The host sees L = E_K(0) and CBC chaining values, never the derived key.

Values that do pass this process's memory, each kept as short as the recipe allows
and listed in docs/pkcs11.md: the ECDH shared secret Z (the SP 800-56C extraction
MACs it as data under a public salt), the EMV ICC master and session keys, TR-31
binding keys and the key a block carries, PINs inside PIN-block recipes, and the
card keys that ``card_secrets``/``kd_for_initialization`` hand on by contract.

python-pkcs11 sessions are not thread-safe: one PKCS#11 session serves the whole
backend and a lock serializes the token calls.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import hmac
import secrets
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.constants import DEFAULT

from cardperso.crypto.ciphers import BlockCipher, CipherError
from cardperso.crypto.kdf import sp800_108_fixed_inputs
from cardperso.crypto.mac import cmac_final_inputs
from cardperso.crypto.parity import adjust_des_parity
from cardperso.crypto.rand import RandomSource
from cardperso.crypto.secret import SecretBytes, SecretStr
from cardperso.errors import HsmError
from cardperso.hsm.api import ALGORITHM_KEY_LENGTH, KeyAlgorithm, KeyHandle, KeyUsage
from cardperso.hsm.audit import AuditChainError, AuditLog, Clock
from cardperso.hsm.engine import SECRET_ENC_LABEL, SECRET_MAC_LABEL, RecipeHsm
from cardperso.hsm.keystore import KeystoreError
from cardperso.hsm.material import EcPrivate, KeyMaterial, Scratch, dispose
from cardperso.hsm.roles import Role
from cardperso.payments.tr31 import VariantSource

__all__ = [
    "DEFAULT_MODULE",
    "Pkcs11Hsm",
    "Pkcs11Location",
    "TokenError",
    "library",
    "open_session",
    "parse_pkcs11_url",
]

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
_P256_PARAMS = bytes.fromhex("06082A8648CE3D030107")  # DER OID 1.2.840.10045.3.1.7
_META = "cardperso1"
_COMPANION = "#"  # never in a key label (api label rule), so companions cannot collide


class TokenError(HsmError):
    """The token refused or failed a call (the PKCS#11 return code's name, never data)."""


class Pkcs11Location(NamedTuple):
    """Where a token is: the PKCS#11 module and the token label."""

    module: str
    token: str


def parse_pkcs11_url(url: str) -> Pkcs11Location:
    """``pkcs11:/path/to/module.so?token=LABEL`` (or RFC 7512 ``pkcs11:token=LABEL``
    with ``?module-path=...``) as (module, token label).

    >>> parse_pkcs11_url("pkcs11:/usr/lib/softhsm/libsofthsm2.so?token=bureau")
    Pkcs11Location(module='/usr/lib/softhsm/libsofthsm2.so', token='bureau')
    >>> parse_pkcs11_url("pkcs11:token=bureau?module-path=/opt/hsm/lib.so")
    Pkcs11Location(module='/opt/hsm/lib.so', token='bureau')
    """
    if not isinstance(url, str) or not url.startswith("pkcs11:"):
        raise HsmError("open_keystore", "a PKCS#11 URL starts with pkcs11:")
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    path_attrs = dict(
        unquote(a).split("=", 1) for a in parts.path.split(";") if "=" in a and "/" not in a
    )
    module = query.get("module-path") or (parts.path if parts.path.startswith("/") else "")
    token = query.get("token") or path_attrs.get("token", "")
    if not module:
        module = DEFAULT_MODULE
    if not token:
        raise HsmError("open_keystore", "the PKCS#11 URL names no token (token=LABEL)")
    return Pkcs11Location(unquote(module), unquote(token))


# -- the token connection ----------------------------------------------------------------

_LIBS: dict[str, Any] = {}
_LIBS_LOCK = threading.Lock()


def library(module: str) -> Any:
    """The loaded PKCS#11 module (once per process: C_Initialize runs once)."""
    with _LIBS_LOCK:
        lib = _LIBS.get(module)
        if lib is None:
            lib = _LIBS[module] = pkcs11.lib(module)
        return lib


_LOGINS: dict[tuple[str, str], bytes] = {}  # (module, token) -> salted digest of the PIN
_LOGIN_SALT = secrets.token_bytes(32)  # per process: the digests never leave it


def _pin_digest(location: Pkcs11Location, pin: SecretStr) -> bytes:
    return hashlib.sha256(
        _LOGIN_SALT + repr(tuple(location)).encode() + pin.reveal().encode()
    ).digest()


def open_session(location: Pkcs11Location, pin: SecretStr) -> Any:
    """A logged-in read-write PKCS#11 session on the token ``location`` names.

    Login is per process in PKCS#11: while any session of this process is logged
    in, C_Login answers "already logged in" without looking at the PIN. A second
    session is then opened only for the PIN that logged the first one in.
    """
    lib = library(location.module)
    token = lib.get_token(token_label=location.token)
    digest = _pin_digest(location, pin)
    with _LIBS_LOCK:
        try:
            session = token.open(user_pin=pin.reveal(), rw=True)
        except pkcs11.UserAlreadyLoggedIn:
            known = _LOGINS.get((location.module, location.token))
            if known is None or not hmac.compare_digest(known, digest):
                raise pkcs11.PinIncorrect from None
            return token.open(rw=True)
        _LOGINS[(location.module, location.token)] = digest
        return session


class _Token:
    """One logged-in PKCS#11 session and the lock that serializes its calls."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.lock = threading.Lock()

    @contextmanager
    def call(self) -> Iterator[None]:
        """Serialize one token call and name a refusal by its return code only."""
        with self.lock:
            try:
                yield
            except pkcs11.PKCS11Error as e:
                raise TokenError(
                    "token", f"the token refused the call ({type(e).__name__})"
                ) from None

    def random(self, n: int) -> bytes:
        with self.call():
            return bytes(self.session.generate_random(8 * n)) if n else b""


class _TokenRandom:
    """The token's random generator (C_GenerateRandom) as a RandomSource."""

    def __init__(self, token: _Token) -> None:
        self._token = token

    def random_bytes(self, n: int) -> bytes:
        return self._token.random(n)

    def __repr__(self) -> str:
        return "TokenRandom()"


_SECRET_TEMPLATE = {
    Attribute.SENSITIVE: True,
    Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True,
    Attribute.SIGN: True,
    Attribute.VERIFY: True,
    Attribute.DERIVE: True,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
}

# family -> (key type for the object, ECB, CBC, CMAC, block size)
_MECHANISMS = {
    "AES": (KeyType.AES, Mechanism.AES_ECB, Mechanism.AES_CBC, Mechanism.AES_CMAC, 16),
    "TDES": (KeyType.DES3, Mechanism.DES3_ECB, Mechanism.DES3_CBC, Mechanism.DES3_CMAC, 8),
    "DES": (KeyType.DES3, Mechanism.DES3_ECB, Mechanism.DES3_CBC, Mechanism.DES3_CMAC, 8),
}


class _TokenCipher:
    """A :class:`~cardperso.crypto.ciphers.BlockCipher` whose key is a token object.

    ``DES`` keys are DES3 objects K||K||K (the same permutation as single DES;
    python-pkcs11 has no single-DES key type)."""

    __slots__ = (
        "_cbc",
        "_cmac",
        "_ecb",
        "_l",
        "_token",
        "algorithm",
        "block_size",
        "key",
        "key_length",
    )

    def __init__(self, token: _Token, key: Any, family: str, key_length: int) -> None:
        _, self._ecb, self._cbc, self._cmac, self.block_size = _MECHANISMS[family]
        self._token, self.key = token, key
        self.algorithm, self.key_length = family, key_length
        self._l: bytes | None = None

    def __repr__(self) -> str:
        return f"<token {self.algorithm} key>"

    def _check(self, data: bytes, iv: bytes | None = None) -> bytes:
        if len(data) % self.block_size:
            raise CipherError(
                f"{self.algorithm}: data length {len(data)} is not a multiple of {self.block_size}"
            )
        if iv is not None and len(iv) != self.block_size:
            raise CipherError(f"{self.algorithm}: IV must be {self.block_size} bytes")
        return bytes(iv) if iv is not None else bytes(self.block_size)

    def encrypt_ecb(self, data: bytes) -> bytes:
        self._check(data)
        if not data:
            return b""
        with self._token.call():
            return bytes(self.key.encrypt(bytes(data), mechanism=self._ecb))

    def decrypt_ecb(self, data: bytes) -> bytes:
        self._check(data)
        if not data:
            return b""
        with self._token.call():
            return bytes(self.key.decrypt(bytes(data), mechanism=self._ecb))

    def encrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes:
        v = self._check(data, iv)
        if not data:
            return b""
        with self._token.call():
            return bytes(self.key.encrypt(bytes(data), mechanism=self._cbc, mechanism_param=v))

    def decrypt_cbc(self, data: bytes, iv: bytes | None = None) -> bytes:
        v = self._check(data, iv)
        if not data:
            return b""
        with self._token.call():
            return bytes(self.key.decrypt(bytes(data), mechanism=self._cbc, mechanism_param=v))

    def native_cmac(self, data: bytes) -> bytes:
        """CMAC by the token's own mechanism (picked up by :func:`cardperso.crypto.mac.cmac`)."""
        with self._token.call():
            return bytes(self.key.sign(bytes(data), mechanism=self._cmac))

    def subkey_base(self) -> bytes:
        """L = E_K(0^b), the CMAC subkey source (kept: it is fixed for the key)."""
        if self._l is None:
            self._l = self.encrypt_ecb(bytes(self.block_size))
        return self._l

    def destroy(self) -> None:
        with self._token.call():
            self.key.destroy()


def _validate_point(point: bytes) -> bytes:
    point = bytes(point)
    if len(point) != 65 or point[0] != 0x04:
        raise CipherError("P-256 public key must be a 65-byte uncompressed point (04||X||Y)")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise CipherError("P-256 public key is not a point on the curve") from None
    return point


def _ec_point(public_key: Any) -> bytes:
    """The uncompressed point of a token public key (CKA_EC_POINT is a DER OCTET STRING)."""
    raw = bytes(public_key[Attribute.EC_POINT])
    return raw[2:] if len(raw) == 67 and raw[:2] == b"\x04\x41" else raw


class _TokenEc(EcPrivate):
    """A P-256 private key object; ECDH1_DERIVE by handle."""

    def __init__(self, token: _Token, private: Any, public: bytes, public_obj: Any = None) -> None:
        self._token, self._private, self._public = token, private, public
        self._public_obj = public_obj

    @property
    def public(self) -> bytes:
        return self._public

    def agree(self, peer: bytes) -> SecretBytes:
        # Z leaves the token: SP 800-56C's extraction step MACs it as data (docs/pkcs11.md).
        peer = _validate_point(peer)
        with self._token.call():
            z = self._private.derive_key(
                KeyType.GENERIC_SECRET,
                256,
                mechanism=Mechanism.ECDH1_DERIVE,
                mechanism_param=(pkcs11.KDF.NULL, None, peer),
                store=False,
                template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
            )
            try:
                return SecretBytes(bytes(z[Attribute.VALUE]))
            finally:
                z.destroy()

    def destroy(self) -> None:
        with self._token.call():
            self._private.destroy()
            if self._public_obj is not None:
                self._public_obj.destroy()


@dataclass(eq=False)
class _TokenKey(KeyMaterial):
    """A key in the token: the handle, its objects, and the ciphers over them."""

    handle: KeyHandle
    token: _Token
    cipher: _TokenCipher | None = None
    private: _TokenEc | None = None
    halves: tuple[_TokenCipher, _TokenCipher] | None = None
    variants: dict[int, _TokenCipher] = field(default_factory=dict)
    objects: list[Any] = field(default_factory=list)  # every token object of this key
    derived: Scratch = field(default_factory=list)  # session objects made from it
    pair: tuple[BlockCipher, Callable[[bytes], bytes]] | None = None
    hsm: Pkcs11Hsm | None = None

    @property
    def sym(self) -> BlockCipher:
        assert self.cipher is not None  # usage tables admit only symmetric keys here
        return self.cipher

    def des_half(self, index: int) -> BlockCipher:
        if self.halves is None:
            raise TokenError("token", f"key {self.handle.label!r} has no single-DES halves")
        return self.halves[index]

    def variant_source(self) -> VariantSource | None:
        if not self.variants:
            return None
        variants = self.variants

        def variant(mask: int) -> BlockCipher:
            if mask not in variants:
                raise TokenError("token", "no such key block variant of this KEK")
            return variants[mask]

        return variant

    def export_value(self) -> SecretBytes:
        """The value of an exportable key: C_WrapKey (CKM_AES_KEY_WRAP, RFC 3394) under a
        one-time session key, unwrapped here to build the TR-31 block (docs/pkcs11.md)."""
        assert self.cipher is not None and self.hsm is not None
        if not self.handle.exportable:
            raise TokenError("export_key_block", f"key {self.handle.label!r} is not exportable")
        token = self.token
        kek = SecretBytes(token.random(16))
        with token.call():
            wrapper = token.session.create_object(
                {
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.AES,
                    Attribute.TOKEN: False,
                    Attribute.VALUE: kek.reveal(),
                    Attribute.WRAP: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                }
            )
            try:
                wrapped = bytes(wrapper.wrap_key(self.cipher.key, mechanism=Mechanism.AES_KEY_WRAP))
            finally:
                wrapper.destroy()
        return SecretBytes(aes_key_unwrap(kek.reveal(), wrapped))

    @property
    def ec(self) -> EcPrivate:
        assert self.private is not None  # usage tables admit only EC keys here
        return self.private

    def secret_pair(self) -> tuple[BlockCipher, Callable[[bytes], bytes]]:
        """K_ENC (AES) and K_MAC (a 32-byte generic secret for CKM_SHA256_HMAC), both
        derived inside the token once, kept as session objects for the key's life."""
        if self.pair is None:
            assert self.hsm is not None
            n = ALGORITHM_KEY_LENGTH[self.handle.algorithm]
            enc = self.hsm._kdf_key(self.sym, SECRET_ENC_LABEL, b"", n, self.derived)
            mac = self.hsm._kdf_object(
                self.sym, SECRET_MAC_LABEL, b"", 32, KeyType.GENERIC_SECRET, self.derived
            )
            token = self.token

            def tag(data: bytes) -> bytes:
                with token.call():
                    return bytes(mac.sign(bytes(data), mechanism=Mechanism.SHA256_HMAC))

            self.pair = (enc, tag)
        return self.pair

    def destroy(self) -> None:
        """Destroy a volatile key (a session object)."""
        dispose(self.derived)
        if self.cipher is not None:
            self.cipher.destroy()


def _meta(handle: KeyHandle, role: str) -> bytes:
    flag = "E" if handle.exportable else "N"
    fields = (_META, handle.usage.value, handle.algorithm.value, handle.version, flag, role)
    return ";".join(fields).encode()


def _parse_meta(raw: bytes) -> tuple[KeyUsage, KeyAlgorithm, str, bool, str] | None:
    try:
        tag, usage, algorithm, version, flag, role = bytes(raw).decode("ascii").split(";")
        if tag != _META:
            return None
        return KeyUsage(usage), KeyAlgorithm(algorithm), version, flag == "E", role
    except (UnicodeDecodeError, ValueError):
        return None


def _needs_halves(algorithm: KeyAlgorithm, usage: KeyUsage) -> bool:
    """CVKs (CVK-A for the CVV) and TDES-2KEY MAC keys (retail MAC) need DES K1 and K2."""
    return algorithm is KeyAlgorithm.TDES_2KEY and usage in (KeyUsage.CVK, KeyUsage.MAC)


def _needs_variants(algorithm: KeyAlgorithm, usage: KeyUsage) -> bool:
    """TDES KEKs read TR-31 versions A and C, bound by KBPK xor 45.. and xor 4D.."""
    return algorithm.is_tdes and usage is KeyUsage.KEK


_VARIANT_MASKS = (0x45, 0x4D)


class Pkcs11Hsm(RecipeHsm):
    """A security module reached through a PKCS#11 library (SoftHSM2, or any HSM).

    Open with :meth:`create` (a fresh audit log) or :meth:`open` (continue one).
    The audit log is the same hash-chained file as the soft HSM's (a token keeps
    no audit of its own). The user PIN logs one session in for the backend's life.
    """

    def __init__(
        self,
        location: Pkcs11Location,
        token: _Token,
        audit: AuditLog,
        rng: RandomSource | None,
    ) -> None:
        super().__init__(audit, rng or _TokenRandom(token))
        self._location = location
        self._token = token
        self._keys: dict[str, _TokenKey] = {}
        self._load()

    def __repr__(self) -> str:
        return f"Pkcs11Hsm({self._location.token!r}, {len(self._keys)} keys)"

    @property
    def location(self) -> Pkcs11Location:
        return self._location

    # -- opening -------------------------------------------------------------------------

    @staticmethod
    def _login(location: Pkcs11Location, pin: SecretStr) -> _Token:
        try:
            return _Token(open_session(location, pin))
        except pkcs11.PinIncorrect:
            raise KeystoreError("open_keystore", "cannot log in to the token: wrong PIN") from None
        except (pkcs11.PKCS11Error, RuntimeError, OSError) as e:
            raise KeystoreError(
                "open_keystore", f"cannot open token {location.token!r} ({type(e).__name__})"
            ) from None

    @classmethod
    def create(
        cls,
        location: Pkcs11Location | str,
        pin: SecretStr,
        audit_path: Path | str,
        *,
        operator: str = "security officer",
        rng: RandomSource | None = None,
        clock: Clock | None = None,
        audit_sync: bool = False,
    ) -> Pkcs11Hsm:
        """Start using an initialized token with a new audit log."""
        loc = parse_pkcs11_url(location) if isinstance(location, str) else location
        apath = Path(audit_path)
        if apath.exists():
            raise KeystoreError("create_keystore", f"{apath} already exists")
        token = cls._login(loc, pin)
        audit = AuditLog(apath, clock=clock, sync=audit_sync)
        audit.append("create_keystore", Role.SECURITY_OFFICER.value, operator, [], "ok")
        return cls(loc, token, audit, rng)

    @classmethod
    def open(
        cls,
        location: Pkcs11Location | str,
        pin: SecretStr,
        audit_path: Path | str,
        *,
        operator: str = "unknown",
        rng: RandomSource | None = None,
        clock: Clock | None = None,
        audit_sync: bool = False,
    ) -> Pkcs11Hsm:
        """Open a token in use; the attempt is audited, failed or not."""
        loc = parse_pkcs11_url(location) if isinstance(location, str) else location
        apath = Path(audit_path)
        if not apath.exists():
            raise AuditChainError("open_keystore", f"the audit log {apath} is missing")
        audit = AuditLog(apath, clock=clock, sync=audit_sync)
        try:
            token = cls._login(loc, pin)
        except KeystoreError as e:
            audit.append("open_keystore", "-", operator, [], type(e).__name__)
            audit.close()
            raise
        audit.append("open_keystore", "-", operator, [], "ok")
        return cls(loc, token, audit, rng)

    def close(self) -> None:
        """Close the audit log and the PKCS#11 session (its session objects go with it)."""
        with self._lock:
            if self._closed:
                return
            super().close()
            with self._token.lock, contextlib.suppress(pkcs11.PKCS11Error):
                self._token.session.close()

    def _load(self) -> None:
        """Read every cardperso key object once: labels, metadata, companions."""
        token = self._token
        found: dict[str, dict[str, Any]] = {}
        metas: dict[str, tuple[KeyUsage, KeyAlgorithm, str, bool]] = {}
        with token.call():
            for cls_ in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for obj in token.session.get_objects(
                    {Attribute.CLASS: cls_, Attribute.TOKEN: True}
                ):
                    meta = _parse_meta(obj[Attribute.ID])
                    if meta is None:
                        continue
                    usage, algorithm, version, exportable, role = meta
                    label = str(obj[Attribute.LABEL]).split(_COMPANION)[0]
                    found.setdefault(label, {})[role] = obj
                    if role == "key":
                        metas[label] = (usage, algorithm, version, exportable)
        for label, (usage, algorithm, version, exportable) in metas.items():
            objects = found[label]
            placeholder = KeyHandle(label, algorithm, usage, "", version, exportable)
            key = self._key_from(placeholder, objects)
            key.handle = KeyHandle(label, algorithm, usage, self._kcv(key), version, exportable)
            self._keys[label] = key

    def _kcv(self, key: _TokenKey) -> str:
        if key.private is not None:
            return hashlib.sha256(key.private.public).hexdigest()[:6].upper()
        return self._kcv_of(key.handle.algorithm, key.sym)

    def _key_from(self, handle: KeyHandle, objects: dict[str, Any]) -> _TokenKey:
        token, alg = self._token, handle.algorithm
        key = _TokenKey(handle, token, hsm=self, objects=list(objects.values()))
        if alg is KeyAlgorithm.EC_P256:
            pub = objects.get("pub")
            point = _ec_point(pub) if pub is not None else b""
            key.private = _TokenEc(token, objects["key"], point)
            return key
        family = "AES" if alg.is_aes else "TDES"
        key.cipher = _TokenCipher(token, objects["key"], family, ALGORITHM_KEY_LENGTH[alg])
        if "k1" in objects and "k2" in objects:
            key.halves = (
                _TokenCipher(token, objects["k1"], "DES", 8),
                _TokenCipher(token, objects["k2"], "DES", 8),
            )
        for mask in _VARIANT_MASKS:
            if f"v{mask:02x}" in objects:
                length = ALGORITHM_KEY_LENGTH[alg]
                key.variants[mask] = _TokenCipher(token, objects[f"v{mask:02x}"], "TDES", length)
        return key

    # -- the key store -------------------------------------------------------------------

    def _get(self, label: str) -> _TokenKey | None:
        with self._lock:
            return self._keys.get(label)

    def _handles(self) -> list[KeyHandle]:
        with self._lock:
            return [self._keys[label].handle for label in sorted(self._keys)]

    def _template(self, handle: KeyHandle, role: str, label: str) -> dict[Any, Any]:
        return {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.LABEL: label,
            Attribute.ID: _meta(handle, role),
            Attribute.EXTRACTABLE: bool(handle.exportable) and role == "key",
            **_SECRET_TEMPLATE,
        }

    def _store(self, operation: str, handle: KeyHandle, value: SecretBytes) -> _TokenKey:
        """Create the key object (and its companions) from a value entered in clear."""
        alg, raw = handle.algorithm, value.reveal()
        if alg is KeyAlgorithm.EC_P256:
            raise TokenError(operation, "EC keys are generated inside the token")
        values = {"key": raw}
        if _needs_halves(alg, handle.usage):
            values["k1"], values["k2"] = raw[:8] * 3, raw[8:16] * 3
        if _needs_variants(alg, handle.usage):
            for mask in _VARIANT_MASKS:
                values[f"v{mask:02x}"] = bytes(b ^ mask for b in raw)
        with self._lock:
            if handle.label in self._keys:
                raise HsmError(operation, f"a key labelled {handle.label!r} already exists")
            objects: dict[str, Any] = {}
            try:
                with self._token.call():
                    for role, v in values.items():
                        label = handle.label if role == "key" else f"{handle.label}#{role}"
                        template = self._template(handle, role, label)
                        template[Attribute.KEY_TYPE] = _key_type(alg, role, len(v))
                        template[Attribute.VALUE] = v
                        objects[role] = self._token.session.create_object(template)
            except BaseException:
                self._destroy_objects(list(objects.values()))
                raise
            key = self._key_from(handle, objects)
            self._keys[handle.label] = key
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
        """Generate inside the token (C_GenerateKey / C_GenerateKeyPair), except TDES keys
        that need companion objects (DES halves, KEK variants): those take their value
        from the random source and pass this process's memory once (docs/pkcs11.md)."""
        handle = KeyHandle(label, algorithm, usage, "", version, exportable)
        if _needs_halves(algorithm, usage) or _needs_variants(algorithm, usage):
            raw = adjust_des_parity(self._rng.random_bytes(ALGORITHM_KEY_LENGTH[algorithm]))
            key = self._store(operation, handle, SecretBytes(raw))
        else:
            with self._lock:
                if label in self._keys:
                    raise HsmError(operation, f"a key labelled {label!r} already exists")
                key = self._key_from(handle, self._generate_objects(handle))
                self._keys[label] = key
        key.handle = KeyHandle(label, algorithm, usage, self._kcv(key), version, exportable)
        return key.handle

    def _generate_objects(self, handle: KeyHandle) -> dict[str, Any]:
        session, alg = self._token.session, handle.algorithm
        with self._token.call():
            if alg is KeyAlgorithm.EC_P256:
                public, private = session.generate_keypair(
                    KeyType.EC,
                    None,
                    store=True,
                    public_template={
                        Attribute.EC_PARAMS: _P256_PARAMS,
                        Attribute.LABEL: f"{handle.label}#pub",
                        Attribute.ID: _meta(handle, "pub"),
                        Attribute.TOKEN: True,
                    },
                    private_template={
                        Attribute.LABEL: handle.label,
                        Attribute.ID: _meta(handle, "key"),
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.DERIVE: True,
                        Attribute.SIGN: False,
                    },
                )
                return {"key": private, "pub": public}
            kt = (
                KeyType.AES
                if alg.is_aes
                else (KeyType.DES2 if alg is KeyAlgorithm.TDES_2KEY else KeyType.DES3)
            )
            template = self._template(handle, "key", handle.label)
            if alg.is_tdes:
                template[Attribute.VALUE_LEN] = DEFAULT
            key = session.generate_key(
                kt, ALGORITHM_KEY_LENGTH[alg] * 8, store=True, template=template
            )
            return {"key": key}

    def _destroy_objects(self, objects: list[Any]) -> None:
        with self._token.call():
            for obj in objects:
                obj.destroy()

    def _remove(self, label: str) -> None:
        with self._lock:
            key = self._keys.pop(label)
            dispose(key.derived)
            self._destroy_objects(key.objects)

    # -- key factories: session objects inside the token ----------------------------------

    def _session_template(self) -> dict[Any, Any]:
        return {Attribute.TOKEN: False, Attribute.EXTRACTABLE: False, **_SECRET_TEMPLATE}

    def _make(self, family: str, value: bytes, scratch: Scratch) -> BlockCipher:
        """A key the recipe holds in clear, as a session object at once."""
        raw = bytes(value) * 3 if family == "DES" else bytes(value)
        template = {
            Attribute.CLASS: ObjectClass.SECRET_KEY,
            Attribute.KEY_TYPE: _key_type(
                KeyAlgorithm.AES_128 if family == "AES" else KeyAlgorithm.TDES_2KEY, "key", len(raw)
            ),
            Attribute.VALUE: raw,
            **self._session_template(),
        }
        with self._token.call():
            obj = self._token.session.create_object(template)
        cipher = _TokenCipher(self._token, obj, family, len(value))
        scratch.append(cipher)
        return cipher

    def _token_cipher(self, base: BlockCipher) -> _TokenCipher:
        if not isinstance(base, _TokenCipher):  # pragma: no cover - every key here is one
            raise TokenError("token", "a derivation needs a token key")
        return base

    def _derive_object(self, base: _TokenCipher, data: bytes, key_type: Any) -> Any:
        """E_base(data) as a new session object, by *_ECB_ENCRYPT_DATA."""
        template: dict[Any, Any] = dict(self._session_template())
        if base.algorithm == "AES":
            mechanism, param, keep = Mechanism.AES_ECB_ENCRYPT_DATA, bytes(data), None
        else:
            # python-pkcs11 packs CK_KEY_DERIVATION_STRING_DATA only for the AES mechanism;
            # pack {pData, ulLen} by hand, keep the buffer alive over the call, and leave
            # CKA_VALUE_LEN out (SoftHSM refuses it for DES keys).
            mechanism = Mechanism.DES3_ECB_ENCRYPT_DATA
            keep = ctypes.create_string_buffer(bytes(data), len(data))
            param = struct.pack("PL", ctypes.addressof(keep), len(data))
            template[Attribute.VALUE_LEN] = DEFAULT
        if key_type is KeyType.GENERIC_SECRET:
            template.update({Attribute.ENCRYPT: False, Attribute.DECRYPT: False})
        with self._token.call():
            obj = base.key.derive_key(
                key_type,
                8 * len(data),
                mechanism=mechanism,
                mechanism_param=param,
                store=False,
                template=template,
            )
        del keep
        return obj

    def _derive_ecb(self, base: BlockCipher, data: bytes, scratch: Scratch) -> BlockCipher:
        return self._derived(self._token_cipher(base), bytes(data), base.algorithm, scratch)

    def _derived(
        self, base: _TokenCipher, data: bytes, family: str, scratch: Scratch
    ) -> _TokenCipher:
        alg = KeyAlgorithm.AES_128 if base.algorithm == "AES" else KeyAlgorithm.TDES_2KEY
        obj = self._derive_object(base, data, _key_type(alg, "key", len(data)))
        cipher = _TokenCipher(self._token, obj, family, 8 if family == "DES" else len(data))
        scratch.append(cipher)
        return cipher

    def _kdf_inputs(self, base: _TokenCipher, label: bytes, context: bytes, length: int) -> bytes:
        """X_1 || X_2 .. with E_base(X_i) = the i-th block of the SP 800-108 output."""
        messages = sp800_108_fixed_inputs(base.block_size, label, context, length)
        return cmac_final_inputs(base, messages, base.subkey_base())

    def _kdf_key(
        self, base: BlockCipher, label: bytes, context: bytes, length: int, scratch: Scratch
    ) -> BlockCipher:
        b = self._token_cipher(base)
        if length % b.block_size:  # pragma: no cover - every KDF here is whole blocks
            raise TokenError("token", "a derived key is a whole number of blocks")
        return self._derived(b, self._kdf_inputs(b, label, context, length), b.algorithm, scratch)

    def _kdf_object(
        self,
        base: BlockCipher,
        label: bytes,
        context: bytes,
        length: int,
        key_type: Any,
        scratch: Scratch,
    ) -> Any:
        """The KDF output as a session object of ``key_type`` (e.g. an HMAC key)."""
        b = self._token_cipher(base)
        obj = self._derive_object(b, self._kdf_inputs(b, label, context, length), key_type)
        scratch.append(_Destroyer(self._token, obj))
        return obj

    def _kdf_des_halves(
        self, base: BlockCipher, label: bytes, context: bytes, scratch: Scratch
    ) -> tuple[BlockCipher, BlockCipher]:
        b = self._token_cipher(base)
        x = self._kdf_inputs(b, label, context, 16)
        # ECB over X||X||X gives K||K||K: single DES under each half, made in the token.
        return (
            self._derived(b, x[:8] * 3, "DES", scratch),
            self._derived(b, x[8:16] * 3, "DES", scratch),
        )

    def _ec_generate(self, scratch: Scratch) -> EcPrivate:
        with self._token.call():
            public, private = self._token.session.generate_keypair(
                KeyType.EC,
                None,
                store=False,
                public_template={Attribute.EC_PARAMS: _P256_PARAMS, Attribute.TOKEN: False},
                private_template={
                    Attribute.TOKEN: False,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.DERIVE: True,
                },
            )
            point = _ec_point(public)
        key = _TokenEc(self._token, private, point, public)
        scratch.append(key)
        return key

    def _volatile_key(self, handle: KeyHandle, cipher: BlockCipher) -> KeyMaterial:
        return _TokenKey(handle, self._token, cipher=self._token_cipher(cipher), hsm=self)

    # -- for tests and operators ----------------------------------------------------------

    def object_count(self, *, session_objects: bool = True) -> int:
        """How many key objects the token holds (with this session's session objects)."""
        with self._token.call():
            n = 0
            for cls_ in (ObjectClass.SECRET_KEY, ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                template: dict[Any, Any] = {Attribute.CLASS: cls_}
                if not session_objects:
                    template[Attribute.TOKEN] = True
                n += sum(1 for _ in self._token.session.get_objects(template))
            return n


class _Destroyer:
    """A token object on a scratch list."""

    def __init__(self, token: _Token, obj: Any) -> None:
        self._token, self._obj = token, obj

    def destroy(self) -> None:
        with self._token.call():
            self._obj.destroy()


def _key_type(algorithm: KeyAlgorithm, role: str, length: int) -> Any:
    if algorithm.is_aes and role == "key":
        return KeyType.AES
    return KeyType.DES2 if length == 16 else KeyType.DES3
