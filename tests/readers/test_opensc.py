"""An outside PC/SC program talks to our simulated card: OpenSC's ``opensc-tool`` lists
the private pcscd's readers and reads a file back from a card personalized through
``PcscReader`` (skipped without pcscd/vpcd/opensc, failing when
``CARDPERSO_REQUIRE_ALL=1``)."""

from __future__ import annotations

import subprocess

import pytest

from cardperso.readers import cos
from cardperso.readers.pcsc import PcscReader
from cardperso.readers.virtual import virtual_reader
from cardperso.readers.vpcd import VpcdSlot

from .pcsc_rig import opensc_tool, shared_rig, take_slots

pytestmark = pytest.mark.realcomponent

CONTENT = b"cardperso: written through pcscd, read back by OpenSC."


def _index(listing: str, reader: str) -> str:
    """opensc-tool's number for ``reader`` in ``opensc-tool -l`` (its order is pcscd's)."""
    for line in listing.splitlines():
        if line.rstrip().endswith(reader):
            return line.split()[0]
    raise AssertionError(f"{reader!r} not listed:\n{listing}")


def test_opensc_lists_our_reader_and_reads_a_personalized_file() -> None:
    tool = opensc_tool()
    rig = shared_rig()
    (rig_slot,) = take_slots(1)
    card = virtual_reader("opensc", serial=b"OPENSC01")
    slot = VpcdSlot(rig_slot.port, name=rig_slot.reader)
    slot.change(card, card.card.atr, rig_slot.reader)
    try:
        with PcscReader(rig_slot.reader) as reader:  # personalize through pcscd
            reader.reset()
            for apdu in [
                cos.create_file(cos.fcp_df(0x3F00)),
                cos.create_file(cos.fcp_df(0x5000, name=b"CARDPERSO-TEST")),
                cos.create_file(cos.fcp_transparent(0x5001, len(CONTENT))),
                cos.update_binary(CONTENT),
            ]:
                assert reader.transmit(apdu) == b"\x90\x00"
        ours = slot.apdus

        listing = subprocess.run(
            [tool, "-l"], env=rig.env, capture_output=True, text=True, timeout=30, check=True
        ).stdout
        index = _index(listing, rig_slot.reader)
        run = subprocess.run(
            [
                tool, "-r", index,
                "-s", "00A4000C023F00",  # SELECT MF
                "-s", "00A4000C025000",  # SELECT DF 5000
                "-s", "00A4000C025001",  # SELECT EF 5001
                "-s", f"00B00000{len(CONTENT):02X}",  # READ BINARY
            ],
            env=rig.env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        dump = "".join(
            line[:48] for line in run.stdout.splitlines() if not line.startswith(("Send", "Rec"))
        )
        assert bytes.fromhex(dump) == CONTENT
        assert run.stdout.count("SW1=0x90, SW2=0x00") == 4
        assert slot.apdus >= ours + 4  # the commands reached our card (and OpenSC's probing)
    finally:
        slot.remove()
