"""One SoftHSM2 token per test process, for the PKCS#11 backend's contract runs.

The token lives in a temporary directory made on first use; ``SOFTHSM2_CONF`` is set
before the PKCS#11 library loads (it is read once per process, so every pkcs11 test
in a process shares this token). Each harness starts from an empty token: the
objects of the previous test are wiped. Without SoftHSM2 the pkcs11 cases are
skipped, or fail when ``CARDPERSO_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from cardperso.crypto.secret import SecretStr
from cardperso.hsm.pkcs11 import Pkcs11Hsm
from cardperso.hsm.softhsm import SoftHsmToken, SoftHsmUnavailable, init_token, wipe_token

from .support import Harness, TickClock

REQUIRE_ALL_ENV = "CARDPERSO_REQUIRE_ALL"
TOKEN_LABEL = "cardperso-test"

_token: SoftHsmToken | None = None
_error: str | None = None


def test_token() -> SoftHsmToken:
    """This process's token (made once), or skip/fail when SoftHSM2 is unavailable."""
    global _token, _error
    if _token is None and _error is None:
        directory = Path(tempfile.mkdtemp(prefix="cardperso-softhsm-"))
        atexit.register(shutil.rmtree, directory, True)
        try:
            _token = init_token(directory, label=TOKEN_LABEL, pin=SecretStr("test-user-pin"))
        except SoftHsmUnavailable as exc:
            _error = str(exc)
    if _token is None:
        if os.environ.get(REQUIRE_ALL_ENV) == "1":
            pytest.fail(f"{REQUIRE_ALL_ENV}=1 but SoftHSM2 is unavailable: {_error}")
        pytest.skip(f"SoftHSM2 unavailable: {_error}")
    return _token


test_token.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def make_pkcs11(tmp_path: Path) -> Harness:
    """A Pkcs11Hsm on the (emptied) test token, with a fresh audit log in ``tmp_path``."""
    token = test_token()
    wipe_token(token)
    hsm = Pkcs11Hsm.create(
        token.location, token.pin, tmp_path / "token.audit.jsonl", clock=TickClock()
    )
    return Harness("pkcs11", hsm, None, hsm.audit_path)
