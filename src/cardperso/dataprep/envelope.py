"""The encrypted issuer envelope: an issuer file encrypted and MACed under HSM keys.

Layout (binary after the first line)::

    CPENV1\\n                                          magic line
    {"format": "cardperso-envelope/1", ...}\\n        header (one line of JSON)
    [4-byte length n][n bytes]  ...                   body segments
    [4-byte 0]                                        end of the body
    [16-byte MAC]

The header names the issuer, batch id, record count, profile id and version (the
same values as the issuer file inside), the labels of the TRANSPORT key the body
is encrypted under and of the MAC key, and the IV. The body is the issuer file
(CSV or JSON Lines, as :mod:`.issuer_file` reads it) cut into segments of at
most :data:`SEGMENT` bytes; each segment is AES-CBC under the transport key with
ISO/IEC 9797-1 padding method 2 (the HSM's ``encrypt_data``), the first with the
header's IV and each next one with the last ciphertext block of the one before
(CBC chaining, so every segment can be decrypted on its own). The MAC is the
16-byte AES-CMAC (HSM ``generate_mac``) under the MAC key of ``"cardperso-envelope/1
MAC" || SHA-256(everything before the MAC)``: hash-then-MAC, so the MAC key never
has to see the whole file at once.

:func:`open_envelope` checks the MAC first - a file with a bad MAC is refused with
an error naming the file, before a single byte is decrypted (no padding oracle on
unauthenticated data) - and then returns a stream that decrypts segment by
segment inside the HSM as the streaming reader asks for lines, so memory stays
bounded. :func:`write_envelope` is the issuer's side (tests, the generator, demos).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cardperso.errors import CardpersoError, InputError
from cardperso.hsm import HsmSession, KeyHandle, KeyNotFoundError, MacAlgorithm

__all__ = [
    "ENVELOPE_FORMAT",
    "ENVELOPE_MAGIC",
    "SEGMENT",
    "Envelope",
    "EnvelopeHeader",
    "open_envelope",
    "write_envelope",
]

ENVELOPE_MAGIC = b"CPENV1\n"
ENVELOPE_FORMAT = "cardperso-envelope/1"
SEGMENT = 1 << 16
"""Largest plaintext segment (64 KiB): one HSM call per segment either way."""
MAC_LENGTH = 16
_MAC_LABEL = ENVELOPE_FORMAT.encode() + b" MAC"
_MAX_HEADER = 4096
_TOKEN = re.compile(r"[A-Za-z0-9._/\-]{1,64}")
_KEYS = (
    "format",
    "issuer",
    "batch_id",
    "profile",
    "profile_version",
    "record_count",
    "transport_key",
    "mac_key",
    "iv",
)


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    """The clear header of an envelope."""

    issuer: str
    batch_id: str
    profile: str
    profile_version: int
    record_count: int
    transport_key: str
    mac_key: str
    iv: bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": ENVELOPE_FORMAT,
            "issuer": self.issuer,
            "batch_id": self.batch_id,
            "profile": self.profile,
            "profile_version": self.profile_version,
            "record_count": self.record_count,
            "transport_key": self.transport_key,
            "mac_key": self.mac_key,
            "iv": self.iv.hex().upper(),
        }

    def line(self) -> bytes:
        return json.dumps(self.as_dict(), separators=(", ", ": ")).encode("ascii") + b"\n"


def _header(raw: bytes, name: str) -> EnvelopeHeader:
    def bad(msg: str, field: str | None = None) -> InputError:
        return InputError(msg, file=name, line=2, field=field)

    try:
        d = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad("the envelope header is not valid JSON") from None
    if not isinstance(d, dict):
        raise bad("the envelope header must be a JSON object")
    for key in d:
        if key not in _KEYS:
            raise bad("unknown envelope header field", key)
    for key in _KEYS:
        if key not in d:
            raise bad("envelope header field missing", key)
    if d["format"] != ENVELOPE_FORMAT:
        raise bad(f"unsupported envelope format (expected {ENVELOPE_FORMAT})", "format")
    for key in ("issuer", "batch_id", "profile", "transport_key", "mac_key"):
        if not isinstance(d[key], str) or not _TOKEN.fullmatch(d[key]):
            raise bad("must be 1 to 64 characters of A-Z a-z 0-9 . _ / -", key)
    for key in ("profile_version", "record_count"):
        v = d[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise bad("must be a whole number", key)
    iv = d["iv"]
    if not isinstance(iv, str) or not re.fullmatch(r"[0-9A-Fa-f]{32}", iv):
        raise bad("must be 16 bytes in hex", "iv")
    return EnvelopeHeader(
        d["issuer"],
        d["batch_id"],
        d["profile"],
        d["profile_version"],
        d["record_count"],
        d["transport_key"],
        d["mac_key"],
        bytes.fromhex(iv),
    )


def _segments(fh: IO[bytes], name: str) -> Iterator[tuple[bytes, bytes]]:
    """(length field, segment) pairs up to and including the zero-length end marker."""
    while True:
        head = fh.read(4)
        if len(head) != 4:
            raise InputError("the envelope ends before its end marker", file=name, field="body")
        n = int.from_bytes(head, "big")
        if n > SEGMENT + 16 or n % 16:
            raise InputError("the envelope body is malformed", file=name, field="body")
        data = fh.read(n)
        if len(data) != n:
            raise InputError("the envelope ends inside a segment", file=name, field="body")
        yield head, data
        if n == 0:
            return


def _mac_input(digest: bytes) -> bytes:
    return _MAC_LABEL + digest


@dataclass
class Envelope:
    """An opened envelope: its header and a stream of the decrypted issuer file."""

    header: EnvelopeHeader
    stream: IO[bytes]


class _Decrypting(io.RawIOBase):
    """The decrypted body, segment by segment, as a readable stream."""

    def __init__(
        self, path: Path, start: int, session: HsmSession, key: KeyHandle, iv: bytes, name: str
    ) -> None:
        super().__init__()
        self._fh = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._fh.seek(start)
        self._segments = _segments(self._fh, name)
        self._session, self._key, self._iv = session, key, iv
        self._name = name
        self._buf = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf and not self._done:
            _, data = next(self._segments)
            if not data:
                self._done = True
                break
            try:
                self._buf = self._session.decrypt_data(self._key, data, self._iv)
            except CardpersoError as e:
                raise InputError(
                    f"the envelope body does not decrypt ({e})", file=self._name, field="body"
                ) from None
            self._iv = data[-16:]
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def open_envelope(path: str | Path, session: HsmSession, *, name: str | None = None) -> Envelope:
    """Verify an envelope's MAC, then return its header and the decrypting stream.

    ``session`` is a dataprep session (it may decrypt issuer data). Raises
    :class:`~cardperso.errors.InputError` naming the file for anything wrong,
    ``bad MAC`` first of all.
    """
    path = Path(path)
    name = name or path.name
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        magic = fh.read(len(ENVELOPE_MAGIC))
        if magic != ENVELOPE_MAGIC:
            raise InputError("not a cardperso envelope", file=name, line=1)
        raw = fh.readline(_MAX_HEADER)
        if not raw.endswith(b"\n"):
            raise InputError("the envelope header line is too long", file=name, line=2)
        header = _header(raw, name)
        start = fh.tell()
        sha.update(magic + raw)
        for head, data in _segments(fh, name):
            sha.update(head + data)
        mac = fh.read(MAC_LENGTH + 1)
    if len(mac) != MAC_LENGTH:
        raise InputError("the envelope has no MAC, or data after it", file=name, field="mac")
    try:
        mac_key = session.get_key(header.mac_key)
        transport = session.get_key(header.transport_key)
    except KeyNotFoundError as e:
        raise InputError(
            f"the envelope names a key this HSM does not hold ({e.operation})", file=name, line=2
        ) from None
    if not session.verify_mac(mac_key, _mac_input(sha.digest()), mac):
        raise InputError(
            "bad MAC: the envelope is not what the issuer sent, or not under this MAC key",
            file=name,
            field="mac",
        )
    stream = io.BufferedReader(_Decrypting(path, start, session, transport, header.iv, name))
    return Envelope(header, stream)


def write_envelope(
    plain: str | Path | IO[bytes],
    out: str | Path,
    session: HsmSession,
    header: EnvelopeHeader,
    *,
    segment: int = SEGMENT,
) -> None:
    """Encrypt and MAC an issuer file into an envelope (the issuer's side)."""
    if not 32 <= segment <= SEGMENT:
        raise ValueError(f"segment must be 32 to {SEGMENT} bytes")
    transport = session.get_key(header.transport_key)
    mac_key = session.get_key(header.mac_key)
    sha = hashlib.sha256()
    src: IO[bytes] = open(plain, "rb") if isinstance(plain, str | Path) else plain  # noqa: SIM115
    try:
        with open(out, "wb") as fh:

            def put(data: bytes) -> None:
                fh.write(data)
                sha.update(data)

            put(ENVELOPE_MAGIC + header.line())
            iv = header.iv
            # A segment pads to a whole number of blocks plus one: keep it within SEGMENT.
            size = segment - 16
            while chunk := src.read(size):
                ct = session.encrypt_data(transport, chunk, iv)
                put(len(ct).to_bytes(4, "big") + ct)
                iv = ct[-16:]
            put(bytes(4))
            fh.write(
                session.generate_mac(
                    mac_key, _mac_input(sha.digest()), algorithm=MacAlgorithm.CMAC, length=16
                )
            )
    finally:
        if isinstance(plain, str | Path):
            src.close()
