"""Shared helpers for the HSM tests: a backend harness, vectors, and the leak watch.

The harness loads *known* clear keys into any backend the way a bureau would (a
two-custodian ceremony), so the same known-answer and contract tests run on every
backend. Every clear key and PIN a test puts in is registered with the leak watch;
``conftest.py`` checks the text of every exception raised in these tests against
it, and ``test_secret_leak.py`` checks the keystore and audit files too.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretBytes
from cardperso.hsm import Hsm, HsmSession, KeyAlgorithm, KeyHandle, KeyUsage, Role
from cardperso.hsm.ceremony import key_check_value

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors"
H = bytes.fromhex

WATCHED_KEYS: set[bytes] = set()
WATCHED_PINS: set[str] = set()


def watch_key(value: bytes) -> bytes:
    WATCHED_KEYS.add(bytes(value))
    return value


def watch_pin(pin: str) -> str:
    WATCHED_PINS.add(pin)
    return pin


def key_spellings(value: bytes) -> list[str]:
    """How a key could show up in text: hex either case, and its first 8 hex digits."""
    return [value.hex(), value.hex().upper(), value.hex()[:16], value.hex().upper()[:16]]


def leaks_in_text(
    text: str, keys: set[bytes] | None = None, pins: set[str] | None = None
) -> list[str]:
    """Names of the watched secrets that appear in ``text`` (never the secrets themselves)."""
    found = []
    for key in WATCHED_KEYS if keys is None else keys:
        if len(key) >= 8 and any(s in text for s in key_spellings(key)):
            found.append(f"a {len(key)}-byte key")
    for pin in WATCHED_PINS if pins is None else pins:
        if pin in text:
            found.append(f"a PIN of {len(pin)} digits")
    return found


def leaks_in_bytes(blob: bytes, keys: set[bytes], pins: set[str]) -> list[str]:
    found = []
    for key in keys:
        if key in blob or any(s.encode() in blob for s in key_spellings(key)):
            found.append(f"a {len(key)}-byte key")
    for pin in pins:
        if pin.encode() in blob:
            found.append(f"a PIN of {len(pin)} digits")
    return found


def load_vectors(name: str, section: str = "vectors") -> list[dict[str, Any]]:
    data = json.loads((VECTOR_DIR / f"{name}.json").read_text(encoding="utf-8"))
    vectors: list[dict[str, Any]] = data[section]
    return vectors


def vid(v: dict[str, Any]) -> str:
    """pytest id of a vector: its id or name."""
    return str(v.get("id") or v.get("name"))


class TickClock:
    """A wall clock that moves one second per reading (repeatable timestamps)."""

    def __init__(self, start: datetime = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=1)
            return self._now


@dataclass
class Harness:
    """One backend under test, with helpers to load known keys and open sessions."""

    backend: str
    hsm: Hsm
    keystore: Path | None = None
    audit: Path | None = None
    rng: SeededRandom = field(default_factory=lambda: SeededRandom("test components"))
    _sessions: dict[Role, HsmSession] = field(default_factory=dict)

    def session(self, role: Role) -> HsmSession:
        if role not in self._sessions:
            self._sessions[role] = self.hsm.session(role, f"test-{role.value}")
        return self._sessions[role]

    @property
    def officer(self) -> HsmSession:
        return self.session(Role.SECURITY_OFFICER)

    def load(
        self,
        label: str,
        algorithm: KeyAlgorithm,
        usage: KeyUsage,
        clear: bytes,
        *,
        exportable: bool = False,
    ) -> KeyHandle:
        """Enter a known key as two custodians' components (dual control)."""
        watch_key(clear)
        first = self.rng.random_bytes(len(clear))
        second = bytes(a ^ b for a, b in zip(clear, first, strict=True))
        ceremony = self.officer.begin_ceremony(label, algorithm, usage, exportable=exportable)
        for name, part in (("alice", first), ("bob", second)):
            ceremony.add_component(name, SecretBytes(part), key_check_value(algorithm, part))
        return ceremony.complete()

    def new(
        self, label: str, algorithm: KeyAlgorithm, usage: KeyUsage, *, exportable: bool = False
    ) -> KeyHandle:
        return self.officer.generate_key(label, algorithm, usage, exportable=exportable)

    def close(self) -> None:
        for s in self._sessions.values():
            s.close()
        self.hsm.close()


# -- a kit of keys of every usage, some with known clear values (for oracles) ----------------

SERIAL = bytes.fromhex("C0DE00000000A001")
PAN = "4444333322221111"
IV = bytes(range(16))
CLEAR = {
    "km-aes": H("2B7E151628AED2A6ABF7158809CF4F3C"),
    "km-aes256": H("603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4"),
    "km-tdes": H("0123456789ABCDEFFEDCBA9876543210"),
    "transport": H("000102030405060708090A0B0C0D0E0F"),
    "zpk": H("0123456789ABCDEF0123456789ABCDEF")[::-1],
    "zpk-aes": H("00112233445566778899AABBCCDDEEFF"),
    "pvk": H("0123456789ABCDEFFEDCBA9876543210")[::-1],
    "cvk": H("0123456789ABCDEFFEDCBA9876543210"),
    "mac-aes": H("F0E1D2C3B4A5968778695A4B3C2D1E0F"),
    "kek-aes": H("88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6"),
}


@dataclass
class Kit:
    """Handles of one key of every usage in one harness."""

    km_aes: KeyHandle
    km_aes256: KeyHandle
    km_tdes: KeyHandle
    imk: KeyHandle
    transport: KeyHandle
    zpk: KeyHandle
    zpk_aes: KeyHandle
    pvk: KeyHandle
    cvk: KeyHandle
    mac: KeyHandle
    mac_tdes: KeyHandle
    kek: KeyHandle
    kek_tdes: KeyHandle
    issuer_kek: KeyHandle
    ec: KeyHandle
    exportable: KeyHandle


def build_kit(h: Harness) -> Kit:
    A128, A256 = KeyAlgorithm.AES_128, KeyAlgorithm.AES_256
    T2 = KeyAlgorithm.TDES_2KEY
    U = KeyUsage
    return Kit(
        km_aes=h.load("km-aes", A128, U.KD_MASTER, CLEAR["km-aes"]),
        km_aes256=h.load("km-aes256", A256, U.KD_MASTER, CLEAR["km-aes256"]),
        km_tdes=h.load("km-tdes", T2, U.KD_MASTER, CLEAR["km-tdes"]),
        imk=h.load("imk", T2, U.EMV_IMK, CLEAR["km-tdes"]),
        transport=h.load("transport", A128, U.TRANSPORT, CLEAR["transport"]),
        zpk=h.load("zpk", T2, U.PIN_ENCRYPTION, CLEAR["zpk"]),
        zpk_aes=h.load("zpk-aes", A128, U.PIN_ENCRYPTION, CLEAR["zpk-aes"]),
        pvk=h.load("pvk", T2, U.PIN_VERIFICATION, CLEAR["pvk"]),
        cvk=h.load("cvk", T2, U.CVK, CLEAR["cvk"]),
        mac=h.load("mac-aes", A128, U.MAC, CLEAR["mac-aes"]),
        mac_tdes=h.new("mac-tdes", T2, U.MAC),
        kek=h.load("kek-aes", A256, U.KEK, CLEAR["kek-aes"]),
        kek_tdes=h.new("kek-tdes", T2, U.KEK),
        issuer_kek=h.new("issuer-kek", A256, U.ISSUER_KEK),
        ec=h.new("bureau-ec", KeyAlgorithm.EC_P256, U.KEY_AGREEMENT),
        exportable=h.new("export-me", A128, U.MAC, exportable=True),
    )
