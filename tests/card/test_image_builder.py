"""The vendor's offline image builder: byte-identical to a golden card's dump of
the same logical script, bound to OS version and layout, checksummed, and refusing
card-specific secrets."""

from __future__ import annotations

import hashlib

import pytest

from cardperso.card import new_card
from cardperso.card.vendor import ImageError, Layout, MemoryImage, build_image, dump_routine
from cardperso.readers import VirtualReader, cos, exchange

SCRIPT = [
    cos.create_file(cos.fcp_df(0x3F00, sec=cos.ac(update=cos.key_sc(1)))),
    cos.create_file(cos.fcp_df(0x5000, bytes.fromhex("F0000000A0DEB101"))),
    cos.create_file(cos.fcp_transparent(0x5001, 200, sfi=1, sec=cos.ac(update=cos.key_sc(1)))),
    cos.create_file(cos.fcp_linear(0x5002, 32, 6, sfi=2)),
    cos.update_binary(b"issuer static data".ljust(40, b"."), sfi=1),
    cos.append_record(b"R1".ljust(32, b"-"), sfi=2),
    cos.select_mf(),
]


def _dump(reader: VirtualReader, ranges: list[tuple[int, int]]) -> list[tuple[int, bytes]]:
    out = []
    for start, n in ranges:
        data = b""
        while len(data) < n:
            chunk = min(256, n - len(data))
            r = exchange(reader, cos.read_memory(start + len(data), chunk))
            assert r.sw == 0x9000
            data += r.data
        out.append((start, data))
    return out


@pytest.mark.parametrize("layout", [Layout(), Layout(eeprom_size=16 * 1024, dir_entries=32)])
def test_offline_image_equals_the_golden_card_dump(layout: Layout) -> None:
    image = build_image(SCRIPT, layout=layout)
    golden = VirtualReader(new_card(bytes.fromhex("60D0000000000009"), seed=4, layout=layout))
    golden.reset()
    for apdu in SCRIPT:
        assert golden.transmit(apdu)[-2:] == b"\x90\x00"
    assert golden.transmit(cos.load_dump_routine(dump_routine()))[-2:] == b"\x90\x00"
    dumped = _dump(golden, layout.image_ranges())
    assert tuple(dumped) == image.segments
    golden.reset()  # the routine is gone: a golden card serves one session
    assert golden.transmit(cos.read_memory(0, 4)) == b"\x6d\x00"


def test_image_written_into_blank_cards_checks_and_works() -> None:
    image = MemoryImage.from_bytes(build_image(SCRIPT).to_bytes())
    for serial in ("C10E000000000001", "C10E000000000002"):
        r = VirtualReader(new_card(bytes.fromhex(serial), seed=serial))
        r.reset()
        for addr, data in image.segments:
            for off in range(0, len(data), 240):
                part = data[off : off + 240]
                if any(part):  # a blank card's memory is already zero there
                    assert r.transmit(cos.write_memory(addr + off, part))[-2:] == b"\x90\x00"
        for addr, data in image.segments:
            got = exchange(r, cos.checksum_memory(addr, len(data)))
            assert got.data == hashlib.sha256(data).digest()
        r.reset()
        assert exchange(r, cos.select_path(0x5000)).sw == 0x9000
        assert exchange(r, cos.read_binary(0, 18, sfi=1)).data == b"issuer static data"
        assert exchange(r, cos.get_data(0xDF01)).data[3:] == bytes.fromhex(serial)


def test_image_is_bound_to_its_os_and_layout() -> None:
    image = build_image(SCRIPT)
    other = build_image(SCRIPT, os_version=b"CPOS0200")
    assert other.os_version == b"CPOS0200" and other.segments == image.segments
    assert build_image(SCRIPT, layout=Layout(dir_entries=48)).layout != image.layout
    raw = bytearray(image.to_bytes())
    raw[-40] ^= 1
    with pytest.raises(ImageError, match="checksum"):
        MemoryImage.from_bytes(bytes(raw))
    with pytest.raises(ImageError, match="not a cardperso memory image"):
        MemoryImage.from_bytes(b"XXXX" + bytes(raw[4:]))


@pytest.mark.parametrize(
    ("apdu", "what"),
    [
        (cos.put_key(1, cos.ALG_AES128, cos.USE_SM, bytes(16)), "PUT KEY"),
        (cos.generate_key_pair(2), "GENERATE ASYMMETRIC KEY PAIR"),
        (cos.generate_pin(3), "GENERATE PIN"),
    ],
)
def test_card_specific_secrets_have_no_place_in_an_image(apdu: bytes, what: str) -> None:
    with pytest.raises(ImageError, match=what):
        build_image([cos.create_file(cos.fcp_df(0x3F00)), apdu])


def test_a_failing_script_step_is_named() -> None:
    with pytest.raises(ImageError, match="step 2: card answered 6A82"):
        build_image([cos.create_file(cos.fcp_df(0x3F00)), cos.select_fid(0x1234)])
