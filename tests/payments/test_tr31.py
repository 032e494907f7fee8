"""TR-31 / X9.143 key blocks: published blocks, exact wrap, psec as an oracle, tampering."""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path
from typing import Any

import psec.tr31
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardperso.crypto.ciphers import AES, DES, TDES, BlockCipher
from cardperso.crypto.mac import cmac
from cardperso.crypto.rand import SeededRandom
from cardperso.payments.tr31 import (
    KeyBlockError,
    KeyBlockHeader,
    derive_binding_keys,
    parse_header,
    tdes_variant_source,
    unwrap,
    wrap,
)

DATA = json.loads((Path(__file__).parents[1] / "vectors" / "payments_tr31.json").read_text())
BLOCKS = DATA["key_blocks"]
DERIVATIONS = DATA["derivations"]
WRAPS = [v for v in BLOCKS if "wrap_padding" in v]
H = bytes.fromhex
# psec (the test-only oracle) still calls cryptography's deprecated TripleDES alias.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
DIFF_N = 1000


class FixedRandom:
    """A RandomSource that hands out one given byte string (the published padding)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def random_bytes(self, n: int) -> bytes:
        assert n == len(self.data), (n, len(self.data))
        return self.data


def _kbpk(block: str, key: bytes) -> BlockCipher:
    return AES(key) if block[0] == "D" else TDES(key)


def _unwrap(block: str, kbpk: bytes) -> tuple[KeyBlockHeader, bytes]:
    variant = tdes_variant_source(kbpk) if block[0] in "AC" else None
    return unwrap(_kbpk(block, kbpk), block, kbpk_variant=variant)


@pytest.mark.parametrize("v", BLOCKS, ids=[v["id"] for v in BLOCKS])
def test_unwrap_published_block(v: dict[str, Any]) -> None:
    assert v["source"]
    header, key = _unwrap(v["block"], H(v["kbpk"]))
    assert key == H(v["key"])
    assert header.length == len(v["block"])
    assert header.version_id == v["block"][0]
    assert header.key_usage == v["block"][5:7]
    assert dict(header.blocks()) == v["blocks"]
    assert header.encode(header.length) == v["block"][: 16 + len(header.optional_blocks)]


@pytest.mark.parametrize("v", WRAPS, ids=[v["id"] for v in WRAPS])
def test_wrap_reproduces_published_block(v: dict[str, Any]) -> None:
    block = v["block"]
    parsed = parse_header(block)
    header = KeyBlockHeader(
        version_id=parsed.version_id,
        key_usage=parsed.key_usage,
        algorithm=parsed.algorithm,
        mode_of_use=parsed.mode_of_use,
        key_version_number=parsed.key_version_number,
        exportability=parsed.exportability,
        optional_block_count=parsed.optional_block_count,
        optional_blocks=parsed.optional_blocks,
    )
    out = wrap(
        _kbpk(block, H(v["kbpk"])),
        header,
        H(v["key"]),
        FixedRandom(H(v["wrap_padding"])),
        masked_key_length=v.get("masked_key_length"),
    )
    assert out == block


@pytest.mark.parametrize("v", DERIVATIONS, ids=[v["id"] for v in DERIVATIONS])
def test_published_derivation(v: dict[str, Any]) -> None:
    assert v["source"]
    kbpk = H(v["kbpk"])
    if "kbek" in v:
        kbek, kbak = derive_binding_keys(_kbpk(v["version"], kbpk), v["version"])
        assert (kbek, kbak) == (H(v["kbek"]), H(v["kbak"]))
    if "kbek_variant" in v:
        variant = tdes_variant_source(kbpk)
        probe = H("0123456789ABCDEF")
        assert variant(0x45).encrypt_ecb(probe) == TDES(H(v["kbek_variant"])).encrypt_ecb(probe)
        assert variant(0x4D).encrypt_ecb(probe) == TDES(H(v["kbak_variant"])).encrypt_ecb(probe)


def test_wrap_adds_padding_block_and_computes_length() -> None:
    header = KeyBlockHeader("D", "P0", "A", "E", "00", "E", 1, "KS0A123456")
    block = wrap(AES(bytes(32)), header, bytes(range(16)), SeededRandom(1))
    parsed = parse_header(block)
    assert parsed.length == len(block)
    assert parsed.blocks() == (("KS", "123456"), ("PB", "0" * 2))
    assert (16 + len(parsed.optional_blocks)) % 16 == 0
    assert unwrap(AES(bytes(32)), block)[1] == bytes(range(16))


def test_extended_length_optional_block() -> None:
    # X9.143: length 00, then length-of-length 01, then the length in hex.
    header = KeyBlockHeader("B", "P0", "T", "E", "00", "N", 2, "KS00011600604B120F9292PB0A000000")
    assert header.blocks() == (("KS", "00604B120F9292"), ("PB", "000000"))
    block = wrap(TDES(bytes(range(16))), header, bytes(16), SeededRandom(2))
    assert unwrap(TDES(bytes(range(16))), block)[0].blocks()[0] == ("KS", "00604B120F9292")


def test_masked_key_length_hides_the_key_length() -> None:
    kbpk = TDES(bytes(range(24)))
    header = KeyBlockHeader("B", "D0", "T", "B")
    lengths = {
        len(wrap(kbpk, header, bytes(n), SeededRandom(n), masked_key_length=24))
        for n in (8, 16, 24)
    }
    assert lengths == {96}


# --- psec as an independent oracle ------------------------------------------------------

_USAGES = ["P0", "K0", "D0", "M3", "B0", "E0", "V2"]
_MODES = ["E", "D", "B", "N", "C", "G", "V", "X"]


def _random_case(r: random.Random, version: str) -> tuple[bytes, bytes, str, int | None]:
    if version == "B":
        kbpk = r.randbytes(r.choice((16, 24)))
        key = r.randbytes(r.choice((8, 16, 24)))
        algorithm = "T"
    else:
        kbpk = r.randbytes(r.choice((16, 24, 32)))
        key = r.randbytes(r.choice((16, 24, 32)))
        algorithm = "A"
    blocks = ""
    count = 0
    if r.random() < 0.4:
        data = "".join(r.choice("0123456789ABCDEF") for _ in range(r.randint(0, 30)))
        blocks = f"KS{len(data) + 4:02X}{data}"
        count = 1
    header = (
        f"{version}0000{r.choice(_USAGES)}{algorithm}{r.choice(_MODES)}"
        f"{r.randrange(100):02d}{r.choice('ENS')}{count:02d}00{blocks}"
    )
    masked = r.choice((None, None, len(key), 24, 32))
    return kbpk, key, header, masked


@pytest.mark.parametrize("version", ["B", "D"])
def test_our_wrap_psec_unwrap(version: str) -> None:
    r = random.Random(0x31 + ord(version))
    rng = SeededRandom(version)
    for _ in range(DIFF_N):
        kbpk, key, header_text, masked = _random_case(r, version)
        p = parse_header(header_text)
        block = wrap(_kbpk(version, kbpk), p, key, rng, masked_key_length=masked)
        psec_header, psec_key = psec.tr31.unwrap(kbpk, block)
        assert psec_key == key
        assert psec_header.key_usage == p.key_usage
        assert unwrap(_kbpk(version, kbpk), block)[1] == key


@pytest.mark.parametrize("version", ["B", "D"])
def test_psec_wrap_our_unwrap(version: str) -> None:
    r = random.Random(0x13 + ord(version))
    for _ in range(DIFF_N):
        kbpk, key, header_text, masked = _random_case(r, version)
        block = psec.tr31.wrap(kbpk, header_text, key, masked)
        header, got = unwrap(_kbpk(version, kbpk), block)
        assert got == key
        assert header.length == len(block)
        assert header.key_usage == header_text[5:7]


def test_psec_blocks_of_versions_a_and_c_unwrap() -> None:
    r = random.Random(0xAC)
    for _ in range(200):
        version = r.choice("AC")
        kbpk = r.randbytes(r.choice((16, 24)))
        key = r.randbytes(r.choice((8, 16, len(kbpk))))
        block = psec.tr31.wrap(kbpk, f"{version}0000P0TE00N0000", key)
        assert _unwrap(block, kbpk)[1] == key


# --- tampering and errors ----------------------------------------------------------------

REF = next(v for v in BLOCKS if v["id"] == "tr31-2018-A.7.3.2")  # B with a KS block
REF_D = next(v for v in BLOCKS if v["id"] == "tr31-2018-A.7.4")
REF_A = next(v for v in BLOCKS if v["id"] == "tr31-2018-A.7.2.1")


def _fails(v: dict[str, Any], block: str, check: str) -> None:
    with pytest.raises(KeyBlockError) as exc:
        _unwrap(block, H(v["kbpk"]))
    assert exc.value.check == check, str(exc.value)
    message = str(exc.value).upper()
    assert v["key"] not in message and v["kbpk"] not in message
    assert v["key"][:8] not in message


def _flip(text: str, i: int) -> str:
    c = text[i]
    alt = "0" if c != "0" else "1"
    return text[:i] + alt + text[i + 1 :]


@pytest.mark.parametrize("v", [REF, REF_D, REF_A], ids=["B", "D", "A"])
def test_tampered_mac_rejected(v: dict[str, Any]) -> None:
    _fails(v, _flip(v["block"], len(v["block"]) - 1), "mac")


@pytest.mark.parametrize("v", [REF, REF_D, REF_A], ids=["B", "D", "A"])
def test_tampered_header_rejected(v: dict[str, Any]) -> None:
    block = v["block"]
    _fails(v, block[:5] + "M3" + block[7:], "mac")  # key usage changed
    _fails(v, block[:11] + ("N" if block[11] != "N" else "E") + block[12:], "mac")


@pytest.mark.parametrize("v", [REF, REF_D, REF_A], ids=["B", "D", "A"])
def test_tampered_key_data_rejected(v: dict[str, Any]) -> None:
    header_len = 16 + len(parse_header(v["block"]).optional_blocks)
    _fails(v, _flip(v["block"], header_len + 3), "mac")


def test_length_errors() -> None:
    block = REF["block"]
    _fails(REF, block[:1] + f"{len(block) + 8:04d}" + block[5:], "length")
    _fails(REF, block[:-16], "length")
    _fails(REF, block + "00000000", "length")
    short = block[:1] + f"{len(block) - 16:04d}" + block[5:-16]
    _fails(REF, short, "mac")  # a whole MAC-sized piece cut off: the MAC cannot match


def test_layout_errors() -> None:
    block = REF_D["block"]
    _fails(REF_D, block[:20] + "g" + block[21:], "layout")
    _fails(REF_D, block[:20] + block[20:].lower(), "layout")
    cut = block[:1] + f"{len(block) - 8:04d}" + block[5:40] + block[48:]
    _fails(REF_D, cut, "layout")
    nothing = "D0048P0AE00E0000" + "0" * 32
    _fails(REF_D, nothing, "layout")


def test_header_and_format_errors() -> None:
    block = REF["block"]
    _fails(REF, "B0016P0TE", "format")
    _fails(REF, block[:1] + "01X4" + block[5:], "header")
    _fails(REF, block[:12] + "0X" + block[14:], "header")
    _fails(REF, block[:12] + "02" + block[14:], "optional blocks")
    _fails(REF, block[:16] + "KS02" + block[20:], "optional blocks")
    _fails(REF, "X" + block[1:], "version")
    _fails(REF, "E" + block[1:], "version")
    _fails(REF, block[:10] + "\x07" + block[11:], "format")


def test_wrong_kbpk_for_version() -> None:
    with pytest.raises(KeyBlockError) as exc:
        unwrap(AES(H(REF["kbpk"])), REF["block"])
    assert exc.value.check == "kbpk"
    with pytest.raises(KeyBlockError) as exc:
        unwrap(TDES(H(REF_D["kbpk"])[:24]), REF_D["block"])
    assert exc.value.check == "kbpk"
    with pytest.raises(KeyBlockError) as exc:
        unwrap(DES(H(REF["kbpk"])[:8]), REF["block"])
    assert exc.value.check == "kbpk"
    with pytest.raises(KeyBlockError) as exc:
        unwrap(TDES(H(REF_A["kbpk"])), REF_A["block"])  # no variant source
    assert exc.value.check == "kbpk"
    with pytest.raises(KeyBlockError) as exc:
        wrap(TDES(bytes(16)), KeyBlockHeader("D", "P0", "A", "E"), bytes(16), SeededRandom(0))
    assert exc.value.check == "kbpk"
    with pytest.raises(KeyBlockError) as exc:
        wrap(AES(bytes(16)), KeyBlockHeader("B", "P0", "T", "E"), bytes(16), SeededRandom(0))
    assert exc.value.check == "kbpk"
    with pytest.raises(KeyBlockError) as exc:
        wrap(TDES(bytes(16)), KeyBlockHeader("A", "P0", "T", "E"), bytes(16), SeededRandom(0))
    assert exc.value.check == "version"
    with pytest.raises(KeyBlockError):
        tdes_variant_source(bytes(8))


def test_bad_key_length_field_rejected_after_the_mac() -> None:
    # Build a block whose MAC is right but whose key length field is nonsense.
    kbpk = TDES(H(REF["kbpk"]))
    kbek, kbak = derive_binding_keys(kbpk, "B")
    header = "B0064P0TE00E0000"
    for field in (b"\x00\x00", b"\x00\x81", b"\x01\x00"):
        data = field + bytes(14)
        mac = cmac(TDES(kbak), header.encode() + data)
        block = header + TDES(kbek).encrypt_cbc(data, mac).hex().upper() + mac.hex().upper()
        with pytest.raises(KeyBlockError) as exc:
            unwrap(kbpk, block)
        assert exc.value.check == "key length"


def test_header_validation() -> None:
    with pytest.raises(KeyBlockError, match="key usage"):
        KeyBlockHeader("B", "P", "T", "E")
    with pytest.raises(KeyBlockError, match="exportability"):
        KeyBlockHeader("B", "P0", "T", "E", "00", "n")
    with pytest.raises(KeyBlockError, match="optional"):
        KeyBlockHeader("B", "P0", "T", "E", optional_block_count=1, optional_blocks="")
    with pytest.raises(KeyBlockError, match="optional"):
        KeyBlockHeader("B", "P0", "T", "E", optional_block_count=1, optional_blocks="KS0812345")
    with pytest.raises(KeyBlockError):
        wrap(TDES(bytes(16)), KeyBlockHeader("B", "P0", "T", "E"), b"", SeededRandom(0))


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x17F), max_size=140))
def test_unwrap_never_fails_untyped(text: str) -> None:
    kbpk = TDES(H(REF["kbpk"]))
    with contextlib.suppress(KeyBlockError):
        unwrap(kbpk, text, kbpk_variant=tdes_variant_source(H(REF["kbpk"])))


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0), st.sampled_from("0123456789ABCDEFKPTXZ"))
def test_any_single_character_change_is_rejected(pos: int, char: str) -> None:
    block = REF["block"]
    i = pos % len(block)
    if block[i] == char:
        return
    changed = block[:i] + char + block[i + 1 :]
    with pytest.raises(KeyBlockError):
        unwrap(TDES(H(REF["kbpk"])), changed)
