"""Load the published known-answer vectors kept as data in tests/vectors/crypto_*.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors"


def load(name: str) -> dict[str, Any]:
    """Parse ``tests/vectors/<name>.json``; every vector in it names its source."""
    with (VECTOR_DIR / f"{name}.json").open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def assert_no_secret(message: str, secret: bytes) -> None:
    """A key must never show up in an error message, in any common spelling."""
    if not secret:
        return
    lowered = message.lower()
    assert secret.hex() not in lowered
    assert repr(secret) not in message
    if len(secret) >= 4:
        assert secret.hex()[:8] not in lowered
