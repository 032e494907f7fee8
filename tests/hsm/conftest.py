"""HSM test fixtures: the backend-parametrized harness and the exception leak check.

``hsm`` runs each contract test once per backend in ``BACKENDS``: the soft HSM
and the PKCS#11 backend on a SoftHSM2 token (``softhsm.py``; marked
``realcomponent``, skipped without SoftHSM2 unless ``CARDPERSO_REQUIRE_ALL=1``).
The autouse fixture records the text of every cardperso error and cipher error
constructed during a test and fails the test if any watched clear key or PIN
(support.WATCHED_*) appears in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cardperso.crypto.ciphers import CipherError
from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretStr
from cardperso.errors import CardpersoError
from cardperso.hsm import SoftHsm
from cardperso.hsm.softhsm import SoftHsmToken

from .support import Harness, TickClock, leaks_in_text

BACKENDS = [
    pytest.param("soft", id="soft"),
    pytest.param("pkcs11", id="pkcs11", marks=pytest.mark.realcomponent),
]
PASSPHRASE = SecretStr("test passphrase, not secret")
FAST_SCRYPT = 2**10  # tests only; production keystores use DEFAULT_SCRYPT_N


def make_soft(tmp_path: Path, seed: str = "hsm tests", **kw: Any) -> Harness:
    keystore = tmp_path / "keys.cpks"
    hsm = SoftHsm.create(
        keystore,
        PASSPHRASE,
        rng=SeededRandom(seed),
        clock=TickClock(),
        scrypt_n=FAST_SCRYPT,
        **kw,
    )
    return Harness("soft", hsm, keystore, hsm.audit_path)


def make_harness(backend: str, tmp_path: Path) -> Harness:
    if backend == "soft":
        return make_soft(tmp_path)
    if backend == "pkcs11":
        from .softhsm import make_pkcs11

        return make_pkcs11(tmp_path)
    pytest.skip(f"backend {backend} not available")  # pragma: no cover - future backends


@pytest.fixture(params=BACKENDS)
def hsm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    harness = make_harness(request.param, tmp_path)
    yield harness
    harness.close()


@pytest.fixture
def soft(tmp_path: Path) -> Iterator[Harness]:
    """The soft backend only (for its file formats)."""
    harness = make_soft(tmp_path)
    yield harness
    harness.close()


@pytest.fixture(autouse=True)
def raised_messages(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every error message constructed in this test; checked for secrets at the end."""
    messages: list[str] = []

    def recorder(cls: type[Exception]) -> Callable[..., None]:
        original = cls.__init__

        def init(self: Exception, *args: object, **kwargs: object) -> None:
            messages.append(" ".join(str(a) for a in args))
            original(self, *args, **kwargs)

        return init

    for cls in (CardpersoError, CipherError):
        monkeypatch.setattr(cls, "__init__", recorder(cls))
    yield messages
    leaks = [leak for m in messages for leak in leaks_in_text(m)]
    assert not leaks, f"an exception message carried a secret: {leaks}"


@pytest.fixture(scope="session")
def softhsm_token() -> SoftHsmToken:
    """This test process's SoftHSM2 token (made once in a temporary directory)."""
    from .softhsm import test_token

    return test_token()
