"""``cardperso card serve --own-pcscd 2``: two simulated blank cards in the readers of
a private pcscd, reachable by an outside PC/SC program until SIGTERM, after which the
cards are out and pcscd is gone (skipped without pcscd/vpcd/opensc, failing when
``CARDPERSO_REQUIRE_ALL=1``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from readers.pcsc_rig import opensc_tool, shared_rig

pytestmark = pytest.mark.realcomponent


def test_card_serve_with_its_own_pcscd_until_sigterm() -> None:
    tool = opensc_tool()
    shared_rig()  # skips (or fails) here when pcscd/vpcd are missing
    proc = subprocess.Popen(
        [sys.executable, "-m", "cardperso.cli", "card", "serve", "--own-pcscd", "2",
         "--seed", "serve-test"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("serving"):
                break
        text = "".join(lines)
        found = re.search(r"pcscd pid (\d+); clients set PCSCLITE_CSOCK_NAME=(\S+)", text)
        assert found, text
        pid, sock = int(found[1]), found[2]
        serials = re.findall(r"card ([0-9A-F]{16})", text)
        assert len(serials) == 2
        env = {**os.environ, "PCSCLITE_CSOCK_NAME": sock}
        for _ in range(20):
            listing = subprocess.run(
                [tool, "-l"], env=env, capture_output=True, text=True, timeout=30, check=True
            ).stdout
            if listing.count(" Yes ") == 2:
                break
            time.sleep(0.2)
        assert listing.count(" Yes ") == 2, listing
        got = subprocess.run(
            [tool, "-r", "0", "-s", "00CADF0100"], env=env, capture_output=True, text=True,
            timeout=30, check=True,
        ).stdout  # fmt: skip
        chip = "".join(got.split("\n", 2)[2][:48].split())[6:22]
        assert chip in serials, got
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert out.rstrip().endswith("stopped")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not os.path.exists(sock)
