"""Test-only host side for the card-command tests: plain send/expect helpers and
an independent implementation of the card's secure messaging.

The secure-messaging half is written from the specification in the docstring of
``cardperso.card.sm`` (GENERAL AUTHENTICATE two-step set-up; ISO/IEC 7816-4 §10
protected APDUs as profiled by ICAO Doc 9303-11 §9.8), on the ``cryptography``
package's primitives only - never on ``cardperso.crypto`` or ``cardperso.card.sm``
- so a test that passes shows the card agrees with an implementation it did not
share code with:

* KDF: SP 800-108r1 counter mode, PRF = CMAC (``cryptography``'s ``KBKDFCMAC``:
  ``[i]_32 || label || 00 || context || [L]_32``);
* AES sessions: CBC with IV = E(SK.ENC, SSC), CMAC (``cryptography``'s ``CMAC``)
  over the ISO/IEC 7816-4-padded input, first 8 bytes;
* 3DES sessions: CBC with a zero IV, ISO/IEC 9797-1 MAC algorithm 3 (retail MAC,
  single-DES CBC-MAC under K1 then E_K1(D_K2(.)) on the last block), written
  here over single-DES ECB.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac as _cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode

from cardperso.apdu import CommandAPDU, ResponseAPDU, parse_command
from cardperso.card import CardOS, new_card
from cardperso.readers import VirtualReader, cos, exchange

# -- plain helpers ----------------------------------------------------------------


def expect(
    reader: VirtualReader, apdu: bytes, sw: int = 0x9000, data: bytes | None = None
) -> bytes:
    """Send ``apdu`` (61xx / 6Cxx handled) and assert the exact status word, and
    the exact response data when ``data`` is given; returns the response data."""
    r = exchange(reader, apdu)
    assert r.sw == sw, f"{apdu[:4].hex().upper()}: SW {r.sw:04X}, expected {sw:04X}"
    if data is not None:
        assert r.data == data, f"{apdu[:4].hex().upper()}: data {r.data.hex()} != {data.hex()}"
    return r.data


def build_reader(serial: str = "00000000000000C1", seed: int = 11) -> tuple[CardOS, VirtualReader]:
    """A blank, powered, deterministic card in a virtual reader."""
    card = new_card(bytes.fromhex(serial), seed=seed)
    reader = VirtualReader(card)
    reader.reset()
    return card, reader


def sw_of(reader: VirtualReader, apdu: bytes) -> int:
    return exchange(reader, apdu).sw


# -- primitives on `cryptography` ---------------------------------------------------


def _tdes_alg(key: bytes) -> TripleDES:
    return TripleDES(key + key[:8] if len(key) == 16 else key)  # 2-key: K3 = K1


def _ecb(key: bytes, family: str, data: bytes, *, decrypt: bool = False) -> bytes:
    algo = algorithms.AES(key) if family == "AES" else _tdes_alg(key)
    c = Cipher(algo, modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def _cbc(key: bytes, family: str, data: bytes, iv: bytes, *, decrypt: bool = False) -> bytes:
    algo = algorithms.AES(key) if family == "AES" else _tdes_alg(key)
    c = Cipher(algo, modes.CBC(iv))
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def pad_m2(data: bytes, bs: int) -> bytes:
    """ISO/IEC 7816-4 padding (80 then zeros to a whole block, always added)."""
    data = data + b"\x80"
    return data + bytes(-len(data) % bs)


def unpad_m2(data: bytes) -> bytes:
    stripped = data.rstrip(b"\x00")
    assert stripped.endswith(b"\x80"), "bad 7816-4 padding"
    return stripped[:-1]


def aes_cmac(key: bytes, data: bytes) -> bytes:
    c = _cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def tdes_cmac(key: bytes, data: bytes) -> bytes:
    c = _cmac.CMAC(_tdes_alg(key))
    c.update(data)
    return c.finalize()


def retail_mac(key16: bytes, data: bytes) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 with single DES, padding method 2 (8 bytes)."""
    k1, k2 = key16[:8] * 3, key16[8:16] * 3  # 3DES with K1=K2=K3 is single DES
    msg = pad_m2(data, 8)
    h = bytes(8)
    for i in range(0, len(msg), 8):
        block = bytes(a ^ b for a, b in zip(h, msg[i : i + 8], strict=True))
        h = _ecb(k1, "TDES", block)
    return _ecb(k1, "TDES", _ecb(k2, "TDES", h, decrypt=True))


def kdf(key: bytes, family: str, label: bytes, context: bytes, length: int) -> bytes:
    """SP 800-108r1 counter-mode KDF with CMAC as PRF (32-bit counter before the
    fixed input, 32-bit [L]), through ``cryptography``'s own implementation."""
    algo = algorithms.AES if family == "AES" else TripleDES
    k = KBKDFCMAC(
        algo,
        Mode.CounterMode,
        length,
        4,
        4,
        CounterLocation.BeforeFixed,
        label,
        context,
        None,
    )
    return k.derive(key + key[:8] if family == "TDES" and len(key) == 16 else key)


def derive_session_keys(
    card_key: bytes, family: str, rnd_h: bytes, rnd_c: bytes
) -> tuple[bytes, bytes]:
    """SK.ENC, SK.MAC: 2-key 3DES (16 bytes) for 3DES card keys, AES of the card
    key's length for AES keys."""
    n = 16 if family == "TDES" else len(card_key)
    ctx = rnd_h + rnd_c
    return (
        kdf(card_key, family, b"cardperso SM ENC", ctx, n),
        kdf(card_key, family, b"cardperso SM MAC", ctx, n),
    )


def session_mac(family: str, k_mac: bytes, data: bytes) -> bytes:
    """8-byte MAC: CMAC-AES over the 7816-4-padded data, or the retail MAC."""
    if family == "AES":
        return aes_cmac(k_mac, pad_m2(data, 16))[:8]
    return retail_mac(k_mac, data)


# -- BER-TLV, minimal and independent -------------------------------------------------


def do(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    elif n <= 0xFF:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82, n >> 8, n & 0xFF])
    return bytes([tag]) + length + value


def parse_dos(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Single-byte-tag DOs as (tag, value, encoded DO)."""
    out = []
    i = 0
    while i < len(data):
        start, tag = i, data[i]
        n = data[i + 1]
        i += 2
        if n == 0x81:
            n, i = data[i], i + 1
        elif n == 0x82:
            n, i = int.from_bytes(data[i : i + 2], "big"), i + 2
        out.append((tag, data[i : i + n], data[start : i + n]))
        i += n
    assert i == len(data), "trailing bytes in SM response"
    return out


# -- the session ---------------------------------------------------------------------


class SmResponseError(AssertionError):
    """The card's protected response does not verify."""


@dataclass
class HostSession:
    """Host half of one secure-messaging session."""

    family: str
    k_enc: bytes
    k_mac: bytes
    ssc: int = 0

    @property
    def bs(self) -> int:
        return 16 if self.family == "AES" else 8

    def _ssc(self) -> bytes:
        return self.ssc.to_bytes(self.bs, "big")

    def _iv(self) -> bytes:
        if self.family == "AES":
            return _ecb(self.k_enc, "AES", self._ssc())
        return bytes(8)

    def wrap(self, plain: bytes | CommandAPDU, *, cla_sm: int | None = None) -> bytes:
        """Protect one command: DO 87 (data), DO 97 (Le), DO 8E (MAC). The outer
        CLA sets b4b3 = 11 unless ``cla_sm`` gives it."""
        cmd = parse_command(plain) if isinstance(plain, bytes) else plain
        self.ssc += 1
        cla = cla_sm if cla_sm is not None else cmd.cla | 0x0C
        header = pad_m2(bytes([cla, cmd.ins, cmd.p1, cmd.p2]), self.bs)
        body = b""
        if cmd.data:
            cg = _cbc(self.k_enc, self.family, pad_m2(cmd.data, self.bs), self._iv())
            body += do(0x87, b"\x01" + cg)
        if cmd.le:
            le = cmd.le
            body += do(0x97, bytes([le & 0xFF]) if le <= 256 else (le & 0xFFFF).to_bytes(2, "big"))
        mac = session_mac(self.family, self.k_mac, self._ssc() + header + body)
        out = CommandAPDU(cla, cmd.ins, cmd.p1, cmd.p2, body + do(0x8E, mac), 256).to_bytes()
        return out

    def unwrap(self, resp: ResponseAPDU) -> ResponseAPDU:
        """Check and decrypt a protected response; returns the inner data and SW.
        A response without data objects (the card dropped the session) is
        returned as is."""
        self.ssc += 1
        if not resp.data:
            return resp
        dos = parse_dos(resp.data)
        tags = [t for t, _, _ in dos]
        if tags[-1] != 0x8E or tags[-2] != 0x99 or not set(tags[:-2]) <= {0x87}:
            raise SmResponseError(f"unexpected DOs {tags}")
        mac_in = self._ssc() + b"".join(raw for _, _, raw in dos[:-1])
        if session_mac(self.family, self.k_mac, mac_in) != dos[-1][1]:
            raise SmResponseError("response MAC does not verify")
        sw = int.from_bytes(dos[-2][1], "big")
        if sw != resp.sw:
            raise SmResponseError(f"DO 99 {sw:04X} != outer SW {resp.sw:04X}")
        data = b""
        if tags[0] == 0x87:
            cg = dos[0][1]
            assert cg[0] == 0x01
            data = unpad_m2(_cbc(self.k_enc, self.family, cg[1:], self._iv(), decrypt=True))
        return ResponseAPDU(data, sw)

    def send(
        self, reader: VirtualReader, plain: bytes, *, cla_sm: int | None = None
    ) -> ResponseAPDU:
        return self.unwrap(exchange(reader, self.wrap(plain, cla_sm=cla_sm)))

    def expect(
        self,
        reader: VirtualReader,
        plain: bytes,
        sw: int = 0x9000,
        data: bytes | None = None,
        *,
        cla_sm: int | None = None,
    ) -> bytes:
        r = self.send(reader, plain, cla_sm=cla_sm)
        assert r.sw == sw, f"SM {plain[:4].hex().upper()}: SW {r.sw:04X}, expected {sw:04X}"
        if data is not None:
            assert r.data == data
        return r.data


def general_authenticate(
    reader: VirtualReader, ref: int, card_key: bytes, family: str, rnd_h: bytes
) -> tuple[HostSession, bytes, bytes]:
    """Step 1 only: returns the pending host session, RND.C and the card's
    cryptogram after checking the latter independently."""
    r = exchange(reader, cos.general_authenticate_1(ref, rnd_h))
    assert r.sw == 0x9000, f"GENERAL AUTHENTICATE step 1: SW {r.sw:04X}"
    outer = parse_dos(r.data)
    assert [t for t, _, _ in outer] == [0x7C]
    inner = parse_dos(outer[0][1])
    assert [t for t, _, _ in inner] == [0x82, 0x83]
    rnd_c, card_cg = inner[0][1], inner[1][1]
    bs = 16 if family == "AES" else 8
    assert len(rnd_c) == bs
    k_enc, k_mac = derive_session_keys(card_key, family, rnd_h, rnd_c)
    assert card_cg == session_mac(family, k_mac, b"\x01" + rnd_h + rnd_c), "card cryptogram"
    return HostSession(family, k_enc, k_mac), rnd_c, card_cg


def host_cryptogram(s: HostSession, rnd_h: bytes, rnd_c: bytes) -> bytes:
    return session_mac(s.family, s.k_mac, b"\x02" + rnd_c + rnd_h)


def open_session(
    reader: VirtualReader, ref: int, card_key: bytes, family: str, rnd_h: bytes | None = None
) -> HostSession:
    """Both GENERAL AUTHENTICATE steps; the card's cryptogram is checked."""
    bs = 16 if family == "AES" else 8
    rnd_h = rnd_h if rnd_h is not None else bytes(range(0xA0, 0xA0 + bs))
    s, rnd_c, _ = general_authenticate(reader, ref, card_key, family, rnd_h)
    r = exchange(reader, cos.general_authenticate_2(ref, host_cryptogram(s, rnd_h, rnd_c)))
    assert r.sw == 0x9000 and r.data == b"", f"GENERAL AUTHENTICATE step 2: SW {r.sw:04X}"
    return s


# -- a small standard card (initialization by logical commands) ----------------------

AID = bytes.fromhex("A0000000C0FFEE01")
KD = bytes.fromhex("404142434445464748494A4B4C4D4E4F")  # key 1: AES-128, ext auth + SM
ADMIN = bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F")  # key 2: AES-128, ext auth + admin
TDES_AUTH = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")  # key 3: 2-key 3DES, ext auth
TDES_SM = bytes.fromhex("101112131415161718191A1B1C1D1E1F2021222324252627")  # key 4: 3-key
AES_INT = bytes(range(0x60, 0x80))  # key 5: AES-256, int auth
TDES_INT = bytes.fromhex("FEDCBA98765432100123456789ABCDEF")  # key 8: 2-key 3DES, int auth
AES_SM = bytes(range(0xA0, 0xC0))  # key 9: AES-256, SM, no try limit
KEY_TRIES = {1: 3, 2: 5, 3: 0, 4: 3, 5: 0, 8: 0, 9: 0}
INIT_5004 = b"INIT-DATA-5004.."
PINS = {  # ref: (value, tries)
    1: ("0000", 3),  # transport PIN, PUK 2
    2: ("12345678", 2),  # the PUK
    3: ("1234", 3),  # PUK 2
    4: ("4321", 3),  # no PUK
    5: ("5555", 3),  # PUK 9, which does not exist
}
MANUFACTURED, INITIALIZED, PERSONALIZED, BLOCKED, TERMINATED = 0x01, 0x07, 0x0F, 0x7F, 0xFF


def initialize(reader: VirtualReader) -> None:
    """Initialization by logical commands on a MANUFACTURED card (see the constants)."""
    expect(reader, cos.create_file(cos.fcp_df(0x3F00)))
    expect(reader, cos.create_file(cos.fcp_df(0x5000, AID)))
    sec1 = cos.ac(update=cos.key_sc(1))
    expect(reader, cos.create_file(cos.fcp_transparent(0x5001, 64, sfi=1, sec=sec1)))
    sec2 = cos.ac(update=cos.pin_sc(3), append=cos.pin_sc(3))
    expect(reader, cos.create_file(cos.fcp_linear(0x5002, 16, 4, sfi=2, sec=sec2)))
    sec3 = cos.ac(read=cos.SM_SC, update=cos.SM_SC)
    expect(reader, cos.create_file(cos.fcp_transparent(0x5003, 32, sfi=3, sec=sec3)))
    expect(reader, cos.create_file(cos.fcp_transparent(0x5004, 16, sfi=4)))
    expect(reader, cos.update_binary(INIT_5004, sfi=4))
    ext, int_, sm, adm = cos.USE_EXT_AUTH, cos.USE_INT_AUTH, cos.USE_SM, cos.USE_ADMIN
    for ref, alg, usage, value in (
        (1, cos.ALG_AES128, ext | sm, KD),
        (2, cos.ALG_AES128, ext | adm, ADMIN),
        (3, cos.ALG_TDES2, ext, TDES_AUTH),
        (4, cos.ALG_TDES3, sm, TDES_SM),
        (5, cos.ALG_AES256, int_, AES_INT),
        (8, cos.ALG_TDES2, int_, TDES_INT),
        (9, cos.ALG_AES256, sm, AES_SM),
    ):
        expect(reader, cos.put_key(ref, alg, usage, value, tries=KEY_TRIES[ref]))
    f2 = cos.format2
    expect(reader, cos.put_pin(1, f2("0000"), tries=3, puk_ref=2, transport=True, max_len=8))
    expect(reader, cos.put_pin(2, f2("12345678"), tries=2, is_puk=True, min_len=8, max_len=8))
    expect(reader, cos.put_pin(3, f2("1234"), tries=3, puk_ref=2))
    expect(reader, cos.put_pin(4, f2("4321"), tries=3))
    expect(reader, cos.put_pin(5, f2("5555"), tries=3, puk_ref=9))


def standard_card(
    lifecycle: int = INITIALIZED, serial: str = "00000000000000C1", seed: int = 11
) -> tuple[CardOS, VirtualReader]:
    """The standard card in ``lifecycle`` (MANUFACTURED, INITIALIZED or
    PERSONALIZED), with DF 5000 selected."""
    card, reader = build_reader(serial, seed)
    initialize(reader)
    if lifecycle != MANUFACTURED:
        expect(reader, cos.set_lifecycle(INITIALIZED))
    if lifecycle == PERSONALIZED:
        expect(reader, cos.set_lifecycle(PERSONALIZED))
    expect(reader, cos.select_path(0x5000))
    return card, reader


def ecb(key: bytes, family: str, data: bytes) -> bytes:
    """Block encryption under ``key`` (``cryptography``, not ``cardperso.crypto``)."""
    return _ecb(key, family, data)


def external_auth(reader: VirtualReader, ref: int, key: bytes, family: str) -> int:
    """GET CHALLENGE of the key's block size, then EXTERNAL AUTHENTICATE; returns SW."""
    bs = 16 if family == "AES" else 8
    challenge = expect(reader, cos.get_challenge(bs))
    return sw_of(reader, cos.external_authenticate(ref, ecb(key, family, challenge)))
