"""The soft HSM's keystore file: every key, encrypted at rest under a passphrase.

Layout::

    "CPKS" || header length (4 bytes, big-endian) || header (JSON, ASCII) || ciphertext

The header is public and holds the format version, the scrypt parameters and salt
(RFC 7914), the AES-GCM nonce and a write generation. The file key is
scrypt(passphrase, salt) (32 bytes); the body is AES-256-GCM over the JSON list of
keys, with the magic, length and header bytes as associated data, so a changed
header (a lowered scrypt cost, another salt) fails authentication like a changed
body does.

The 96-bit nonce is the 4-byte generation (one more on every write, kept in the
authenticated header) followed by 8 bytes from the injected random source: a
seeded test run stays repeatable, and a restarted writer with the same seed still
never reuses a nonce under the same key, because the generation moves on.

Writes are atomic: a temporary file (mode 0600) in the same directory, fsync, then
``os.replace`` and an fsync of the directory. A wrong passphrase and a damaged file
give the same :class:`KeystoreError`, with no detail.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from cardperso.crypto.rand import RandomSource
from cardperso.crypto.secret import SecretBytes, SecretStr
from cardperso.errors import HsmError
from cardperso.hsm.api import KeyAlgorithm, KeyHandle, KeyUsage

__all__ = [
    "DEFAULT_SCRYPT_N",
    "FORMAT_VERSION",
    "MIN_PASSPHRASE_LENGTH",
    "Keystore",
    "KeystoreError",
    "StoredKey",
]

MAGIC = b"CPKS"
FORMAT_VERSION = 1
DEFAULT_SCRYPT_N = 2**15
"""scrypt cost for new keystores (about 0.1 s and 32 MiB per open)."""
MIN_PASSPHRASE_LENGTH = 10
_SCRYPT_R = 8
_SCRYPT_P = 1
# Bounds on header parameters, so a doctored header cannot make an open take minutes.
_MAX_N, _MAX_R, _MAX_P = 2**20, 32, 16
_SALT_LEN = 16
_MAX_HEADER = 4096
_OPEN_FAILED = "cannot open the keystore: wrong passphrase or damaged file"


class KeystoreError(HsmError):
    """The keystore cannot be created, opened or written."""


@dataclass(frozen=True, slots=True)
class StoredKey:
    """One key as the keystore holds it: its handle and its value."""

    handle: KeyHandle
    value: SecretBytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _derive(passphrase: SecretStr, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.reveal().encode("utf-8"))


def _encode_keys(keys: Sequence[StoredKey]) -> bytes:
    items = [
        {
            "label": k.handle.label,
            "algorithm": k.handle.algorithm.value,
            "usage": k.handle.usage.value,
            "kcv": k.handle.kcv,
            "version": k.handle.version,
            "exportable": k.handle.exportable,
            "value": k.value.reveal().hex(),
        }
        for k in keys
    ]
    return json.dumps({"keys": items}, sort_keys=True, separators=(",", ":")).encode()


def _decode_keys(plain: bytes) -> list[StoredKey]:
    items = json.loads(plain)["keys"]
    return [
        StoredKey(
            KeyHandle(
                label=str(i["label"]),
                algorithm=KeyAlgorithm(i["algorithm"]),
                usage=KeyUsage(i["usage"]),
                kcv=str(i["kcv"]),
                version=str(i["version"]),
                exportable=bool(i["exportable"]),
            ),
            SecretBytes(bytes.fromhex(i["value"])),
        )
        for i in items
    ]


class Keystore:
    """An open keystore file: knows its file key and writes new contents atomically."""

    def __init__(
        self, path: Path, file_key: SecretBytes, kdf: dict[str, Any], generation: int
    ) -> None:
        self.path = path
        self._key = file_key
        self._kdf = kdf
        self._generation = generation

    def __repr__(self) -> str:
        return f"Keystore({str(self.path)!r})"

    @classmethod
    def create(
        cls,
        path: Path | str,
        passphrase: SecretStr,
        rng: RandomSource,
        *,
        scrypt_n: int = DEFAULT_SCRYPT_N,
    ) -> Keystore:
        """Create an empty keystore at ``path``; refuses to overwrite a file."""
        path = Path(path)
        if path.exists():
            raise KeystoreError("create_keystore", f"{path} already exists")
        if len(passphrase) < MIN_PASSPHRASE_LENGTH:
            raise KeystoreError(
                "create_keystore",
                f"the passphrase must be at least {MIN_PASSPHRASE_LENGTH} characters",
            )
        _check_params(scrypt_n, _SCRYPT_R, _SCRYPT_P, "create_keystore")
        salt = rng.random_bytes(_SALT_LEN)
        kdf = {"name": "scrypt", "n": scrypt_n, "r": _SCRYPT_R, "p": _SCRYPT_P, "salt": _b64(salt)}
        key = SecretBytes(_derive(passphrase, salt, scrypt_n, _SCRYPT_R, _SCRYPT_P))
        store = cls(path, key, kdf, 0)
        store.save([], rng)
        return store

    @classmethod
    def open(cls, path: Path | str, passphrase: SecretStr) -> tuple[Keystore, list[StoredKey]]:
        """Open ``path`` and return the keystore and its keys."""
        path = Path(path)
        try:
            blob = path.read_bytes()
        except OSError:
            raise KeystoreError("open_keystore", f"cannot read {path}") from None
        if blob[:4] != MAGIC:
            raise KeystoreError("open_keystore", f"{path} is not a cardperso keystore")
        try:
            size = int.from_bytes(blob[4:8], "big")
            if size > _MAX_HEADER:
                raise ValueError
            aad, body = blob[: 8 + size], blob[8 + size :]
            header = json.loads(aad[8:])
            if header["format"] != FORMAT_VERSION:
                raise KeystoreError(
                    "open_keystore", f"keystore format {header['format']} is not supported"
                )
            kdf = header["kdf"]
            n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
            _check_params(n, r, p, "open_keystore")
            if kdf["name"] != "scrypt" or header["cipher"] != "AES-256-GCM":
                raise ValueError
            salt, nonce = _unb64(kdf["salt"]), _unb64(header["nonce"])
            generation = int(header["generation"])
        except KeystoreError:
            raise
        except (ValueError, KeyError, TypeError):
            raise KeystoreError("open_keystore", _OPEN_FAILED) from None
        key = SecretBytes(_derive(passphrase, salt, n, r, p))
        try:
            plain = AESGCM(key.reveal()).decrypt(nonce, body, aad)
            keys = _decode_keys(plain)
        except (InvalidTag, ValueError, KeyError, TypeError):
            raise KeystoreError("open_keystore", _OPEN_FAILED) from None
        return cls(path, key, dict(kdf), generation), keys

    def save(self, keys: Sequence[StoredKey], rng: RandomSource) -> None:
        """Encrypt ``keys`` and replace the file atomically."""
        self._generation += 1
        nonce = self._generation.to_bytes(4, "big") + rng.random_bytes(8)
        header = json.dumps(
            {
                "format": FORMAT_VERSION,
                "kdf": self._kdf,
                "cipher": "AES-256-GCM",
                "nonce": _b64(nonce),
                "generation": self._generation,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode("ascii")
        aad = MAGIC + len(header).to_bytes(4, "big") + header
        blob = aad + AESGCM(self._key.reveal()).encrypt(nonce, _encode_keys(keys), aad)
        _atomic_write(self.path, blob)


def _check_params(n: int, r: int, p: int, operation: str) -> None:
    if n < 2 or n & (n - 1) or n > _MAX_N or not 1 <= r <= _MAX_R or not 1 <= p <= _MAX_P:
        raise KeystoreError(operation, "scrypt parameters are out of range")


def _atomic_write(path: Path, blob: bytes) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
