"""One private pcscd rig per test process, shared by every PC/SC test in it.

pcsc-lite's client library reads ``PCSCLITE_CSOCK_NAME`` once, at its first call, so
a process talks to one pcscd: each test process (each xdist worker) starts its own
rig (private socket, own ports; :class:`~cardperso.readers.pcscd.PcscdRig`) on first
use and stops it by its PID when the process exits. Tests take distinct slots with
:func:`take_slots`. Without pcscd or vpcd the tests are skipped, or fail when
``CARDPERSO_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import threading

import pytest

from cardperso.errors import ConfigError
from cardperso.readers.pcscd import MAX_READERS, PcscdRig, RigSlot, rig_available

REQUIRE_ALL_ENV = "CARDPERSO_REQUIRE_ALL"

_lock = threading.Lock()
_rig: PcscdRig | None = None
_next = 0


def unavailable(what: str) -> None:
    """Skip, or fail when every real component is required."""
    if os.environ.get(REQUIRE_ALL_ENV) == "1":
        pytest.fail(f"{REQUIRE_ALL_ENV}=1 but {what}")
    pytest.skip(what)


def shared_rig() -> PcscdRig:
    global _rig
    with _lock:
        if _rig is None:
            missing = rig_available()
            if missing:
                unavailable(f"pcscd/vpcd unavailable: {missing}")
            rig = PcscdRig(MAX_READERS, label=f"cardperso-test-{os.getpid()}")
            try:
                rig.start()
            except ConfigError as e:
                unavailable(f"pcscd rig did not start: {e}")
            rig.use_here()
            atexit.register(rig.stop)
            _rig = rig
        return _rig


def take_slots(n: int) -> list[RigSlot]:
    """``n`` slots no other test of this process has used."""
    global _next
    rig = shared_rig()
    with _lock:
        if _next + n > len(rig.slots):
            pytest.fail(f"the test rig has {len(rig.slots)} slots; {_next} are taken")
        out = rig.slots[_next : _next + n]
        _next += n
    return out


def opensc_tool() -> str:
    path = shutil.which("opensc-tool")
    if path is None:
        unavailable("opensc-tool (Debian package opensc) not installed")
    assert path is not None
    return path
