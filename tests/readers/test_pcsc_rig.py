"""What only the PC/SC path has: the private pcscd rig, readers found by name, waiting
for insertion and removal, T=0's refusal of extended APDUs, and a pulled card that does
not wedge its reader for the next card (skipped without pcscd/vpcd, failing when
``CARDPERSO_REQUIRE_ALL=1``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from cardperso.errors import ReaderError
from cardperso.readers import cos, exchange
from cardperso.readers.pcsc import PcscReader, card_state, pcsc_readers, wait_for_card
from cardperso.readers.pcscd import PcscdRig
from cardperso.readers.virtual import virtual_reader
from cardperso.readers.vpcd import VpcdSlot

from .pcsc_rig import shared_rig, take_slots

pytestmark = pytest.mark.realcomponent

LIST = "from cardperso.readers.pcsc import pcsc_readers\nprint('\\n'.join(pcsc_readers()))\n"


def test_readers_carry_the_names_the_rig_gave_them() -> None:
    rig = shared_rig()
    assert sorted(pcsc_readers()) == sorted(s.reader for s in rig.slots)
    assert rig.socket_path.is_socket() and str(rig.socket_path) != "/run/pcscd/pcscd.comm"


def test_a_second_rig_is_independent_and_stops_by_its_pid() -> None:
    first = shared_rig()
    with PcscdRig(2, label="cardperso-second") as second:
        pid = second.pid
        assert pid is not None and pid != first.pid
        out = subprocess.run(
            [sys.executable, "-c", LIST], env=second.env, capture_output=True, text=True,
            timeout=30, check=True,
        )  # fmt: skip
        assert sorted(out.stdout.splitlines()) == sorted(s.reader for s in second.slots)
        assert not any(s.reader in out.stdout for s in first.slots)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert second.dir is None
    assert sorted(pcsc_readers()) == sorted(s.reader for s in first.slots)  # untouched


def test_waiting_for_a_card_and_for_its_removal() -> None:
    (rig_slot,) = take_slots(1)
    name = rig_slot.reader
    assert card_state(name) == (False, b"")
    with pytest.raises(ReaderError, match="timed out"):
        wait_for_card(name, timeout=0.5)
    card = virtual_reader("wait", serial=b"WAITCARD")
    slot = VpcdSlot(rig_slot.port, name=name)
    t0 = time.monotonic()
    slot.insert(card, card.card.atr)
    assert wait_for_card(name, timeout=3.0) == card.card.atr
    seen = time.monotonic() - t0
    assert seen < 1.5  # pcscd polls every 0.4 s
    slot.remove()
    assert wait_for_card(name, present=False, timeout=3.0) == b""
    with pytest.raises(ReaderError):
        PcscReader(name).reset()


def test_t0_refuses_extended_apdus_by_name() -> None:
    (rig_slot,) = take_slots(1)
    card = virtual_reader("t0", serial=b"T0T0T0T0", protocol=0)
    slot = VpcdSlot(rig_slot.port, name=rig_slot.reader)
    slot.change(card, card.card.atr, rig_slot.reader)
    try:
        with PcscReader(rig_slot.reader, protocol=0) as reader:
            reader.reset()
            assert reader.protocol == 0
            with pytest.raises(ReaderError, match=r"extended-length APDU under T=0") as err:
                reader.transmit(bytes.fromhex("00B00000000258"))
            assert rig_slot.reader in str(err.value)
            assert exchange(reader, cos.get_data(0xDF01)).sw == 0x9000  # still usable
    finally:
        slot.remove()


def test_a_pulled_card_does_not_wedge_the_reader_for_the_next_card() -> None:
    (rig_slot,) = take_slots(1)
    name = rig_slot.reader
    slot = VpcdSlot(rig_slot.port, name=name)
    for round_ in range(2):
        card = virtual_reader(f"pull/{round_}", serial=b"PULL" + bytes([0, 0, 0, round_]))
        slot.change(card, card.card.atr, name)  # after a pull: waits one poll more
        reader = PcscReader(name)
        reader.reset()
        serial = exchange(reader, cos.get_data(0xDF01)).data
        assert serial.endswith(bytes([round_]))
        slot.pull_after(1)
        with pytest.raises(ReaderError, match=name):
            reader.transmit(cos.select_mf())  # the host talks to a card already gone
        assert slot.pulled_at is not None
        reader.close()
    slot.remove()


def test_an_apdu_round_trip_through_pcscd_takes_well_under_a_delayed_ack() -> None:
    """Without TCP_QUICKACK on the card side each APDU waits ~44 ms for a delayed ACK;
    with it a round trip through pcscd takes a fraction of a millisecond."""
    (rig_slot,) = take_slots(1)
    card = virtual_reader("quick", serial=b"QUICKACK")
    slot = VpcdSlot(rig_slot.port, name=rig_slot.reader)
    slot.change(card, card.card.atr, rig_slot.reader)
    try:
        with PcscReader(rig_slot.reader) as reader:
            reader.reset()
            t0 = reader.elapsed
            for _ in range(50):
                assert reader.transmit(cos.get_data(0xDF01))[-2:] == b"\x90\x00"
            per_apdu = (reader.elapsed - t0) / 50
        assert per_apdu < 0.010, f"{per_apdu * 1e3:.1f} ms per APDU"
    finally:
        slot.remove()
