"""Shared fixtures for the card OS tests: powered blank cards in a virtual reader
(T=1 and T=0), a small initialized file tree, and host-side helpers (``send``,
PIN verification, key authentication, a secure-messaging channel).

Importing this module has no side effects: cards are made only when a fixture
runs. Test modules use the fixtures (``send`` is also a fixture), never
``import conftest``.

The tree (built while the card is MANUFACTURED; the card stays MANUFACTURED, so
access conditions are not yet enforced - call ``tree.initialize()`` for that)::

    3F00 MF                      every DF operation: key 1 authenticated
      5000 DF, name AID          every DF operation: key 1 authenticated
        5001 transparent, 64 B, SFI 1     open (all ALWAYS), bytes 00..3F
        5002 linear fixed 16 x 4, SFI 2   open, two records
        5003 transparent, 16 B, SFI 3     every operation: PIN 1 verified
        5004 transparent, 16 B, SFI 4     every operation: key 1 AND secure messaging
    PIN 1 = "1234" (3 tries); key 1 = AES-128 (external/internal auth, SM)

On return the application DF 5000 is the current DF and no EF is current.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from cardperso import tlv
from cardperso.apdu import CommandAPDU, ResponseAPDU, parse_command
from cardperso.card import CardOS, new_card
from cardperso.crypto.ciphers import AES
from cardperso.crypto.kdf import sp800_108_counter_cmac
from cardperso.crypto.mac import cmac, pad_iso9797, unpad_m2
from cardperso.readers import VirtualReader, cos

SERIAL = bytes.fromhex("C0DE0000000000F1")
SEED = 4242

MF = 0x3F00
DF = 0x5000
AID = bytes.fromhex("A000000999C0DE01")
EF_BIN, SFI_BIN, BIN_SIZE = 0x5001, 1, 64
BIN_DATA = bytes(range(BIN_SIZE))
EF_REC, SFI_REC, REC_LEN, REC_MAX = 0x5002, 2, 16, 4
RECORDS = (b"record-one".ljust(REC_LEN, b"."), b"record-two".ljust(REC_LEN, b"."))
EF_PIN, SFI_PIN = 0x5003, 3
PIN_DATA = b"PIN-GUARDED-DATA"
EF_SM, SFI_SM = 0x5004, 4
SM_DATA = b"SM+KEY-GUARDED.."
PIN_REF, PIN = 1, "1234"
KEY_REF = 1
KEY = bytes.fromhex("404142434445464748494A4B4C4D4E4F")  # public test value

SC_KEY1 = cos.key_sc(KEY_REF)
SC_PIN1 = cos.pin_sc(PIN_REF)
SC_KEY1_AND_SM = 0x80 | cos.SM_SC | SC_KEY1  # b8 = all conditions must hold


def send(reader: VirtualReader, apdu: bytes) -> tuple[bytes, int]:
    """One raw exchange (no 61xx / 6Cxx handling): ``(response data, SW)``."""
    r = reader.transmit(apdu)
    assert len(r) >= 2, f"response shorter than a status word: {r.hex()}"
    return r[:-2], int.from_bytes(r[-2:], "big")


def ok(reader: VirtualReader, apdu: bytes) -> bytes:
    """Send and insist on 9000; returns the response data."""
    data, sw = send(reader, apdu)
    assert sw == 0x9000, f"{apdu.hex().upper()} -> {sw:04X}"
    return data


def powered_reader(protocol: int = 1, serial: bytes = SERIAL, seed: int = SEED) -> VirtualReader:
    """A deterministic blank card (MANUFACTURED, no files), reset and PPS'd."""
    reader = VirtualReader(new_card(serial, seed), protocol=protocol)
    reader.reset()
    return reader


class SmChannel:
    """Host side of the card's secure messaging (see ``card/sm.py``): AES keys only.

    Opened with GENERAL AUTHENTICATE on key ``ref``; ``transmit`` wraps one plain
    command APDU and returns the unwrapped ``(data, SW)``."""

    def __init__(self, reader: VirtualReader, ref: int, key: bytes, rh: bytes) -> None:
        self.reader = reader
        k = AES(key)
        data, sw = send(reader, cos.general_authenticate_1(ref, rh))
        assert sw == 0x9000, f"GENERAL AUTHENTICATE 1 -> {sw:04X}"
        inner = tlv.to_dict(tlv.to_dict(data)[0x7C])
        rc = inner[0x82]
        ctx = rh + rc
        self.k_enc = sp800_108_counter_cmac(k, b"cardperso SM ENC", ctx, len(key))
        self.k_mac = sp800_108_counter_cmac(k, b"cardperso SM MAC", ctx, len(key))
        assert inner[0x83] == self._mac(b"\x01" + rh + rc), "card cryptogram does not verify"
        _, sw = send(reader, cos.general_authenticate_2(ref, self._mac(b"\x02" + rc + rh)))
        assert sw == 0x9000, f"GENERAL AUTHENTICATE 2 -> {sw:04X}"
        self.ssc = 0

    def _mac(self, data: bytes) -> bytes:
        return cmac(AES(self.k_mac), pad_iso9797(data, 16, 2))[:8]

    def _iv(self) -> bytes:
        return AES(self.k_enc).encrypt_ecb(self.ssc.to_bytes(16, "big"))

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        cmd = parse_command(apdu)
        self.ssc += 1
        body = b""
        if cmd.data:
            enc = AES(self.k_enc).encrypt_cbc(pad_iso9797(cmd.data, 16, 2), self._iv())
            body += tlv.encode(0x87, b"\x01" + enc)
        if cmd.le:
            body += tlv.encode(0x97, bytes([cmd.le & 0xFF]))
        cla = cmd.cla | 0x0C
        header = pad_iso9797(bytes([cla, cmd.ins, cmd.p1, cmd.p2]), 16, 2)
        mac = self._mac(self.ssc.to_bytes(16, "big") + header + body)
        body += tlv.encode(0x8E, mac)
        wrapped = CommandAPDU(cla, cmd.ins, cmd.p1, cmd.p2, body, 256).to_bytes()
        resp = ResponseAPDU.from_bytes(self.reader.transmit(wrapped))
        if not resp.data:  # the card dropped the session: plain status word
            return b"", resp.sw
        self.ssc += 1
        dos = tlv.decode(resp.data)
        assert [t for t, _ in dos][-1] == 0x8E
        d = dict(dos)
        covered = b"".join(tlv.encode(t, v) for t, v in dos[:-1])
        assert d[0x8E] == self._mac(self.ssc.to_bytes(16, "big") + covered), "bad response MAC"
        sw = int.from_bytes(d[0x99], "big")
        assert sw == resp.sw, "protected and plain status words differ"
        data = b""
        if 0x87 in d:
            plain = AES(self.k_enc).decrypt_cbc(d[0x87][1:], self._iv())
            data = unpad_m2(plain, 16)
        return data, sw


@dataclass
class FileTree:
    """A card holding the small tree described in the module docstring."""

    reader: VirtualReader
    mf: int = MF
    df: int = DF
    aid: bytes = AID
    ef_bin: int = EF_BIN
    sfi_bin: int = SFI_BIN
    bin_size: int = BIN_SIZE
    bin_data: bytes = BIN_DATA
    ef_rec: int = EF_REC
    sfi_rec: int = SFI_REC
    rec_len: int = REC_LEN
    rec_max: int = REC_MAX
    records: tuple[bytes, ...] = RECORDS
    ef_pin: int = EF_PIN
    sfi_pin: int = SFI_PIN
    pin_data: bytes = PIN_DATA
    ef_sm: int = EF_SM
    sfi_sm: int = SFI_SM
    sm_data: bytes = SM_DATA
    pin_ref: int = PIN_REF
    pin: str = PIN
    key_ref: int = KEY_REF
    key: bytes = KEY

    @property
    def card(self) -> CardOS:
        return self.reader.card

    def send(self, apdu: bytes) -> tuple[bytes, int]:
        return send(self.reader, apdu)

    def ok(self, apdu: bytes) -> bytes:
        return ok(self.reader, apdu)

    def initialize(self) -> None:
        """MANUFACTURED -> INITIALIZED: access conditions are enforced from now on."""
        self.ok(cos.set_lifecycle(cos.INITIALIZED))

    def verify_pin(self) -> None:
        self.ok(cos.verify(self.pin_ref, cos.format2(self.pin)))

    def authenticate_key(self) -> None:
        """GET CHALLENGE + EXTERNAL AUTHENTICATE with key 1 (no secure messaging)."""
        rc = self.ok(cos.get_challenge(16))
        self.ok(cos.external_authenticate(self.key_ref, AES(self.key).encrypt_ecb(rc)))

    def open_sm(self, rh: bytes = bytes(range(16))) -> SmChannel:
        """A secure-messaging session with key 1 (also authenticates key 1)."""
        return SmChannel(self.reader, self.key_ref, self.key, rh)

    def free_memory(self) -> int:
        """GET DATA DF04: free heap bytes."""
        data = self.ok(cos.get_data(0xDF04))
        assert data[:3] == b"\xdf\x04\x02"
        return int.from_bytes(data[3:], "big")


def build_tree(reader: VirtualReader) -> FileTree:
    """Create the tree of the module docstring on a blank card in ``reader``."""
    t = FileTree(reader)
    admin = cos.ac(SC_KEY1, SC_KEY1, SC_KEY1, SC_KEY1, SC_KEY1, SC_KEY1, SC_KEY1)
    pin_ac = cos.ac(SC_PIN1, SC_PIN1, SC_PIN1, SC_PIN1, SC_PIN1, SC_PIN1, SC_PIN1)
    k = SC_KEY1_AND_SM
    sm_ac = cos.ac(k, k, k, k, k, k, k)
    t.ok(cos.create_file(cos.fcp_df(MF, sec=admin)))
    t.ok(cos.create_file(cos.fcp_df(DF, AID, sec=admin)))
    t.ok(cos.create_file(cos.fcp_transparent(EF_BIN, BIN_SIZE, sfi=SFI_BIN, sec=cos.ac())))
    t.ok(cos.update_binary(BIN_DATA))
    t.ok(cos.create_file(cos.fcp_linear(EF_REC, REC_LEN, REC_MAX, sfi=SFI_REC, sec=cos.ac())))
    for rec in RECORDS:
        t.ok(cos.append_record(rec))
    t.ok(cos.create_file(cos.fcp_transparent(EF_PIN, len(PIN_DATA), sfi=SFI_PIN, sec=pin_ac)))
    t.ok(cos.update_binary(PIN_DATA))
    t.ok(cos.create_file(cos.fcp_transparent(EF_SM, len(SM_DATA), sfi=SFI_SM, sec=sm_ac)))
    t.ok(cos.update_binary(SM_DATA))
    t.ok(cos.put_pin(PIN_REF, cos.format2(PIN), tries=3))
    usage = cos.USE_EXT_AUTH | cos.USE_INT_AUTH | cos.USE_SM
    t.ok(cos.put_key(KEY_REF, cos.ALG_AES128, usage, KEY))
    t.ok(cos.select_fid(DF))
    return t


@pytest.fixture(name="send")
def _send() -> Callable[[VirtualReader, bytes], tuple[bytes, int]]:
    """``send(reader, apdu) -> (data, sw)``."""
    return send


@pytest.fixture
def blank() -> Iterator[VirtualReader]:
    """A powered blank card (MANUFACTURED, no MF) under T=1."""
    reader = powered_reader(1)
    yield reader
    reader.close()


@pytest.fixture
def blank_t0() -> Iterator[VirtualReader]:
    """A powered blank card under T=0."""
    reader = powered_reader(0)
    yield reader
    reader.close()


@pytest.fixture
def tree(blank: VirtualReader) -> FileTree:
    """The small file tree on a T=1 card, still MANUFACTURED."""
    return build_tree(blank)


@pytest.fixture
def tree_t0(blank_t0: VirtualReader) -> FileTree:
    """The small file tree on a T=0 card, still MANUFACTURED."""
    return build_tree(blank_t0)
