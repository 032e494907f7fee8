"""File-management commands of the card OS, one section per command: success and
every status word its handler can produce (ISO/IEC 7816-4:2020 §5, §7, §11.1-11.4;
ISO/IEC 7816-9 for CREATE/DELETE/ACTIVATE/DEACTIVATE/TERMINATE), plus GET RESPONSE
under T=0, extended-length APDUs and the dispatcher's class/format checks.

The tree and the helpers come from ``conftest.py`` (fixtures ``tree``, ``tree_t0``,
``blank``, ``blank_t0``, ``send``). Access conditions are enforced only after
``tree.initialize()`` (the card is MANUFACTURED until then).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cardperso import tlv
from cardperso.apdu import CommandAPDU
from cardperso.readers import VirtualReader, cos, exchange

Send = Callable[[VirtualReader, bytes], tuple[bytes, int]]


def apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int = 0) -> bytes:
    return CommandAPDU(cla, ins, p1, p2, data, le).to_bytes()


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


OPEN_SC = "7F 00000000000000"
ADMIN_SC = "7F 21212121212121"  # key 1 for every operation
FCP_MF = h(f"6214 820138 83023F00 8A0105 8C08 {ADMIN_SC}")
FCP_DF = h(f"621E 820138 83025000 8408A000000999C0DE01 8A0105 8C08 {ADMIN_SC}")
FCP_BIN = h(f"621B 80020040 820101 83025001 880108 8A0105 8C08 {OPEN_SC}")
FCP_REC = h(f"621F 80020040 82050221001004 83025002 880110 8A0105 8C08 {OPEN_SC}")
FCP_PIN = h("621B 80020010 820101 83025003 880118 8A0105 8C08 7F 11111111111111")


def with_lcs(fcp: bytes, lcs: int) -> bytes:
    i = fcp.index(b"\x8a\x01")
    return fcp[: i + 2] + bytes([lcs]) + fcp[i + 3 :]


def fci(fcp: bytes) -> bytes:
    return b"\x6f" + fcp[1:]


def p2_sfi(sfi: int) -> int:
    return (sfi << 3) | 0x04


# =====================================================================================
# SELECT
# =====================================================================================
class TestSelect:
    def test_mf_by_fid_3f00_returns_fcp(self, tree) -> None:
        assert tree.send(cos.select_fid(0x3F00, 0x04)) == (FCP_MF, 0x9000)
        # the MF is current: its only child DF is reachable with P1=01
        assert tree.send(apdu(0, 0xA4, 0x01, 0x0C, h("5000"))) == (b"", 0x9000)

    def test_mf_by_empty_data(self, tree) -> None:
        assert tree.send(cos.select_mf()) == (b"", 0x9000)
        assert tree.send(apdu(0, 0xA4, 0x03, 0x0C)) == (b"", 0x6A82)  # MF has no parent
        assert tree.send(apdu(0, 0xA4, 0x00, 0x04, le=256)) == (FCP_MF, 0x9000)

    def test_fid_child_ef_fci(self, tree) -> None:
        assert tree.send(cos.select_fid(tree.ef_bin, 0x00)) == (fci(FCP_BIN), 0x9000)

    def test_fid_child_linear_ef_fcp(self, tree) -> None:
        assert tree.send(cos.select_fid(tree.ef_rec, 0x04)) == (FCP_REC, 0x9000)

    def test_fid_pin_guarded_ef_fcp_shows_its_security_attributes(self, tree) -> None:
        assert tree.send(cos.select_fid(tree.ef_pin, 0x04)) == (FCP_PIN, 0x9000)

    def test_fcp_tags_in_order(self, tree) -> None:
        data, sw = tree.send(cos.select_fid(tree.ef_bin, 0x04))
        assert sw == 0x9000
        ((tag, value),) = tlv.decode(data)
        assert tag == 0x62
        assert [t for t, _ in tlv.decode(value)] == [0x80, 0x82, 0x83, 0x88, 0x8A, 0x8C]
        data, _ = tree.send(cos.select_fid(tree.df, 0x04))
        assert [t for t, _ in tlv.decode(tlv.decode(data)[0][1])] == [0x82, 0x83, 0x84, 0x8A, 0x8C]

    def test_fid_p2_0c_returns_no_data_and_selects(self, tree) -> None:
        assert tree.send(cos.select_fid(tree.ef_bin)) == (b"", 0x9000)
        assert tree.send(cos.read_binary(0, 4)) == (tree.bin_data[:4], 0x9000)

    def test_fid_current_df_itself(self, tree) -> None:
        assert tree.send(cos.select_fid(tree.df, 0x04)) == (FCP_DF, 0x9000)

    def test_fid_parent_and_sibling_df(self, tree) -> None:
        tree.ok(cos.select_mf())
        tree.ok(cos.create_file(cos.fcp_df(0x6000)))
        tree.ok(cos.select_fid(tree.df))
        data, sw = tree.send(cos.select_fid(0x6000, 0x04))  # child of the parent
        assert sw == 0x9000
        assert tlv.find(tlv.decode(data)[0][1], 0x83) == h("6000")
        tree.ok(cos.select_fid(tree.df))
        tree.ok(cos.create_file(cos.fcp_df(0x5100)))  # 5100 under 5000 is current now
        assert tree.send(cos.select_fid(tree.df, 0x04)) == (FCP_DF, 0x9000)  # the parent

    def test_fid_not_found(self, tree) -> None:
        assert tree.send(cos.select_fid(0x7777)) == (b"", 0x6A82)
        tree.ok(cos.select_mf())
        # a grandchild is not reachable by FID from the MF
        assert tree.send(cos.select_fid(tree.ef_bin)) == (b"", 0x6A82)

    def test_failed_select_keeps_current_file(self, tree) -> None:
        tree.ok(cos.select_fid(tree.ef_bin))
        assert tree.send(cos.select_fid(0x7777)) == (b"", 0x6A82)
        assert tree.send(cos.read_binary(0, 2)) == (tree.bin_data[:2], 0x9000)

    @pytest.mark.parametrize("data", [h("50"), h("500100")])
    def test_fid_wrong_length(self, tree, data: bytes) -> None:
        assert tree.send(apdu(0, 0xA4, 0x00, 0x0C, data)) == (b"", 0x6700)

    def test_p1_01_child_df(self, tree) -> None:
        tree.ok(cos.select_mf())
        assert tree.send(apdu(0, 0xA4, 0x01, 0x04, h("5000"), 256)) == (FCP_DF, 0x9000)

    def test_p1_01_refuses_an_ef(self, tree) -> None:
        assert tree.send(apdu(0, 0xA4, 0x01, 0x0C, h("5001"))) == (b"", 0x6A82)

    def test_p1_01_unknown(self, tree) -> None:
        assert tree.send(apdu(0, 0xA4, 0x01, 0x0C, h("6000"))) == (b"", 0x6A82)

    def test_p1_02_child_ef(self, tree) -> None:
        assert tree.send(apdu(0, 0xA4, 0x02, 0x04, h("5001"), 256)) == (FCP_BIN, 0x9000)

    def test_p1_02_refuses_a_df(self, tree) -> None:
        tree.ok(cos.select_mf())
        assert tree.send(apdu(0, 0xA4, 0x02, 0x0C, h("5000"))) == (b"", 0x6A82)

    @pytest.mark.parametrize("p1", [0x01, 0x02])
    @pytest.mark.parametrize("data", [b"", h("50"), h("500100")])
    def test_p1_01_02_wrong_length(self, tree, p1: int, data: bytes) -> None:
        assert tree.send(apdu(0, 0xA4, p1, 0x0C, data)) == (b"", 0x6700)

    def test_p1_03_parent(self, tree) -> None:
        assert tree.send(apdu(0, 0xA4, 0x03, 0x04, le=256)) == (FCP_MF, 0x9000)

    def test_p1_03_from_an_ef_selects_parent_of_current_df(self, tree) -> None:
        tree.ok(cos.select_fid(tree.ef_bin))
        assert tree.send(apdu(0, 0xA4, 0x03, 0x04, le=256)) == (FCP_MF, 0x9000)

    def test_p1_03_at_mf(self, tree) -> None:
        tree.ok(cos.select_mf())
        assert tree.send(apdu(0, 0xA4, 0x03, 0x0C)) == (b"", 0x6A82)

    def test_p1_03_with_data(self, tree) -> None:
        assert tree.send(apdu(0, 0xA4, 0x03, 0x0C, h("3F00"))) == (b"", 0x6700)

    def test_p1_04_df_name(self, tree) -> None:
        tree.ok(cos.select_mf())
        assert tree.send(cos.select_name(tree.aid, 0x04)) == (FCP_DF, 0x9000)
        assert tree.send(cos.select_fid(tree.ef_bin)) == (b"", 0x9000)  # now inside 5000

    @pytest.mark.parametrize("name", [h("A000000999C0DE02"), h("A000000999C0DE0100")])
    def test_p1_04_unknown_name(self, tree, name: bytes) -> None:
        assert tree.send(cos.select_name(name)) == (b"", 0x6A82)

    @pytest.mark.parametrize("name", [b"", bytes(17)])
    def test_p1_04_name_length(self, tree, name: bytes) -> None:
        assert tree.send(apdu(0, 0xA4, 0x04, 0x0C, name)) == (b"", 0x6700)

    def test_p1_08_path_from_mf(self, tree) -> None:
        tree.ok(cos.select_mf())
        tree.ok(cos.create_file(cos.fcp_df(0x6000)))  # elsewhere in the tree
        assert tree.send(cos.select_path(0x5000, 0x5001, p2=0x04)) == (FCP_BIN, 0x9000)
        assert tree.send(cos.select_path(0x5000, p2=0x04)) == (FCP_DF, 0x9000)

    @pytest.mark.parametrize(
        "path",
        [
            h("5000 7777"),
            h("7777"),
            h("3F00 5000"),  # the path from the MF leaves out 3F00
            h("5000 5001 5002"),  # through an EF
        ],
    )
    def test_p1_08_path_not_found(self, tree, path: bytes) -> None:
        assert tree.send(apdu(0, 0xA4, 0x08, 0x0C, path)) == (b"", 0x6A82)

    def test_p1_08_empty_path(self, tree) -> None:
        assert tree.send(apdu(0, 0xA4, 0x08, 0x0C)) == (b"", 0x6700)

    def test_p1_08_odd_path(self, tree) -> None:
        assert tree.send(apdu(0, 0xA4, 0x08, 0x0C, h("500050"))) == (b"", 0x6A80)

    def test_p1_09_path_from_current_df(self, tree) -> None:
        assert tree.send(apdu(0, 0xA4, 0x09, 0x04, h("5001"), 256)) == (FCP_BIN, 0x9000)
        tree.ok(cos.select_mf())
        assert tree.send(apdu(0, 0xA4, 0x09, 0x04, h("50005002"), 256)) == (FCP_REC, 0x9000)

    def test_p1_09_path_not_found(self, tree) -> None:
        assert tree.send(apdu(0, 0xA4, 0x09, 0x0C, h("50005001"))) == (b"", 0x6A82)

    @pytest.mark.parametrize("p1", [0x05, 0x0A, 0x10, 0x80])
    def test_bad_p1(self, tree, p1: int) -> None:
        assert tree.send(apdu(0, 0xA4, p1, 0x0C, h("5001"))) == (b"", 0x6A86)

    @pytest.mark.parametrize("p2", [0x01, 0x02, 0x03, 0x08, 0x0D, 0x10, 0x80])
    def test_bad_p2(self, tree, p2: int) -> None:
        assert tree.send(apdu(0, 0xA4, 0x00, p2, h("5001"), 256)) == (b"", 0x6A86)

    def test_deactivated_6283(self, tree) -> None:
        tree.ok(cos.deactivate(tree.ef_bin))
        assert tree.send(cos.select_fid(tree.ef_bin, 0x04)) == (with_lcs(FCP_BIN, 0x04), 0x6283)
        assert tree.send(cos.select_fid(tree.ef_bin)) == (b"", 0x6283)
        # the deactivated EF did become current
        assert tree.send(cos.read_binary(0, 1)) == (b"", 0x6985)

    def test_deactivated_df_6283(self, tree) -> None:
        tree.ok(cos.select_mf())
        tree.ok(cos.deactivate(tree.df))
        assert tree.send(cos.select_name(tree.aid, 0x00)) == (fci(with_lcs(FCP_DF, 4)), 0x6283)

    def test_terminated_6285(self, tree) -> None:
        tree.ok(cos.terminate_ef(tree.ef_bin))
        assert tree.send(cos.select_fid(tree.ef_bin, 0x04)) == (with_lcs(FCP_BIN, 0x0C), 0x6285)
        assert tree.send(cos.select_path(0x5000, 0x5001)) == (b"", 0x6285)

    def test_blank_card_has_nothing_to_select(self, blank, send: Send) -> None:
        assert send(blank, cos.select_mf()) == (b"", 0x6A82)
        assert send(blank, cos.select_fid(0x3F00)) == (b"", 0x6A82)
        assert send(blank, apdu(0, 0xA4, 0x01, 0x0C, h("5000"))) == (b"", 0x6A82)
        assert send(blank, cos.select_name(b"\xa0\x00")) == (b"", 0x6A82)
        assert send(blank, cos.select_path(0x5000)) == (b"", 0x6A82)


# =====================================================================================
# READ BINARY
# =====================================================================================
class TestReadBinary:
    def test_offset_form(self, tree) -> None:
        tree.ok(cos.select_fid(tree.ef_bin))
        assert tree.send(cos.read_binary(0, 64)) == (tree.bin_data, 0x9000)
        assert tree.send(cos.read_binary(10, 5)) == (tree.bin_data[10:15], 0x9000)

    def test_sfi_form_and_it_selects_the_ef(self, tree) -> None:
        assert tree.send(cos.read_binary(8, 4, sfi=tree.sfi_bin)) == (tree.bin_data[8:12], 0x9000)
        assert tree.send(cos.read_binary(63, 1)) == (tree.bin_data[63:], 0x9000)

    def test_le_00_returns_what_is_there(self, tree) -> None:
        assert tree.send(cos.read_binary(60, 256, sfi=1)) == (tree.bin_data[60:], 0x9000)

    def test_short_read_6282(self, tree) -> None:
        assert tree.send(cos.read_binary(60, 10, sfi=1)) == (tree.bin_data[60:], 0x6282)

    @pytest.mark.parametrize("offset", [64, 65, 0x0100, 0x7FFF])
    def test_offset_beyond_end_6b00(self, tree, offset: int) -> None:
        tree.ok(cos.select_fid(tree.ef_bin))
        assert tree.send(cos.read_binary(offset, 1)) == (b"", 0x6B00)

    def test_sfi_offset_beyond_end_6b00(self, tree) -> None:
        assert tree.send(cos.read_binary(64, 1, sfi=1)) == (b"", 0x6B00)

    def test_record_file_6981(self, tree) -> None:
        assert tree.send(cos.read_binary(0, 4, sfi=tree.sfi_rec)) == (b"", 0x6981)
        tree.ok(cos.select_fid(tree.ef_rec))
        assert tree.send(cos.read_binary(0, 4)) == (b"", 0x6981)

    def test_no_current_ef_6986(self, tree) -> None:
        assert tree.send(cos.read_binary(0, 4)) == (b"", 0x6986)

    def test_unknown_sfi_6a82(self, tree) -> None:
        assert tree.send(cos.read_binary(0, 4, sfi=9)) == (b"", 0x6A82)

    @pytest.mark.parametrize("p1", [0xA1, 0xC1, 0xE1])
    def test_bad_p1_6a86(self, tree, p1: int) -> None:
        assert tree.send(apdu(0, 0xB0, p1, 0, le=4)) == (b"", 0x6A86)

    def test_no_le_6700(self, tree) -> None:
        assert tree.send(apdu(0, 0xB0, 0x81, 0)) == (b"", 0x6700)

    def test_data_field_6700(self, tree) -> None:
        assert tree.send(apdu(0, 0xB0, 0x81, 0, b"\x00", 4)) == (b"", 0x6700)

    def test_pin_guarded_6982_then_ok(self, tree) -> None:
        tree.initialize()
        assert tree.send(cos.read_binary(0, 16, sfi=tree.sfi_pin)) == (b"", 0x6982)
        tree.verify_pin()
        assert tree.send(cos.read_binary(0, 16, sfi=tree.sfi_pin)) == (tree.pin_data, 0x9000)

    def test_key_and_sm_guarded_6982_then_ok_under_sm(self, tree) -> None:
        tree.initialize()
        assert tree.send(cos.read_binary(0, 16, sfi=tree.sfi_sm)) == (b"", 0x6982)
        tree.authenticate_key()  # key 1 alone is not enough: SM is required too
        assert tree.send(cos.read_binary(0, 16, sfi=tree.sfi_sm)) == (b"", 0x6982)
        sm = tree.open_sm()
        assert sm.transmit(cos.read_binary(0, 16, sfi=tree.sfi_sm)) == (tree.sm_data, 0x9000)

    def test_conditions_not_enforced_while_manufactured(self, tree) -> None:
        assert tree.send(cos.read_binary(0, 16, sfi=tree.sfi_pin)) == (tree.pin_data, 0x9000)

    def test_deactivated_6985(self, tree) -> None:
        tree.ok(cos.deactivate(tree.ef_bin))
        assert tree.send(cos.read_binary(0, 4, sfi=1)) == (b"", 0x6985)

    def test_terminated_6985(self, tree) -> None:
        tree.ok(cos.terminate_ef(tree.ef_bin))
        assert tree.send(cos.read_binary(0, 4, sfi=1)) == (b"", 0x6985)


# =====================================================================================
# UPDATE BINARY
# =====================================================================================
class TestUpdateBinary:
    def test_offset_form(self, tree) -> None:
        tree.ok(cos.select_fid(tree.ef_bin))
        assert tree.send(cos.update_binary(b"ABCD", 4)) == (b"", 0x9000)
        want = tree.bin_data[:4] + b"ABCD" + tree.bin_data[8:]
        assert tree.send(cos.read_binary(0, 64)) == (want, 0x9000)

    def test_sfi_form_up_to_the_last_byte(self, tree) -> None:
        assert tree.send(cos.update_binary(b"yz", 62, sfi=1)) == (b"", 0x9000)
        assert tree.send(cos.read_binary(0, 64)) == (tree.bin_data[:62] + b"yz", 0x9000)

    def test_whole_file(self, tree) -> None:
        assert tree.send(cos.update_binary(b"\xee" * 64, sfi=1)) == (b"", 0x9000)
        assert tree.send(cos.read_binary(0, 64, sfi=1)) == (b"\xee" * 64, 0x9000)

    @pytest.mark.parametrize("offset", [64, 0x0100])
    def test_offset_beyond_end_6b00(self, tree, offset: int) -> None:
        tree.ok(cos.select_fid(tree.ef_bin))
        assert tree.send(cos.update_binary(b"A", offset)) == (b"", 0x6B00)

    def test_runs_past_the_end_6700_and_writes_nothing(self, tree) -> None:
        assert tree.send(cos.update_binary(b"12345", 60, sfi=1)) == (b"", 0x6700)
        assert tree.send(cos.read_binary(0, 64, sfi=1)) == (tree.bin_data, 0x9000)

    def test_no_data_6700(self, tree) -> None:
        assert tree.send(apdu(0, 0xD6, 0x81, 0)) == (b"", 0x6700)

    def test_le_present_6700(self, tree) -> None:
        assert tree.send(apdu(0, 0xD6, 0x81, 0, b"A", 1)) == (b"", 0x6700)
        assert tree.send(cos.read_binary(0, 1, sfi=1)) == (tree.bin_data[:1], 0x9000)

    def test_record_file_6981(self, tree) -> None:
        assert tree.send(cos.update_binary(b"A", sfi=tree.sfi_rec)) == (b"", 0x6981)

    def test_no_current_ef_6986(self, tree) -> None:
        assert tree.send(cos.update_binary(b"A")) == (b"", 0x6986)

    def test_unknown_sfi_6a82(self, tree) -> None:
        assert tree.send(cos.update_binary(b"A", sfi=9)) == (b"", 0x6A82)

    @pytest.mark.parametrize("p1", [0xA1, 0xC1])
    def test_bad_p1_6a86(self, tree, p1: int) -> None:
        assert tree.send(apdu(0, 0xD6, p1, 0, b"A")) == (b"", 0x6A86)

    def test_pin_guarded_6982_then_ok(self, tree) -> None:
        tree.initialize()
        assert tree.send(cos.update_binary(b"new", sfi=tree.sfi_pin)) == (b"", 0x6982)
        tree.verify_pin()
        assert tree.send(cos.read_binary(0, 16, sfi=tree.sfi_pin)) == (tree.pin_data, 0x9000)
        assert tree.send(cos.update_binary(b"new", sfi=tree.sfi_pin)) == (b"", 0x9000)
        want = b"new" + tree.pin_data[3:]
        assert tree.send(cos.read_binary(0, 16, sfi=tree.sfi_pin)) == (want, 0x9000)

    def test_key_and_sm_guarded_6982_then_ok_under_sm(self, tree) -> None:
        tree.initialize()
        tree.authenticate_key()
        assert tree.send(cos.update_binary(b"X", sfi=tree.sfi_sm)) == (b"", 0x6982)
        sm = tree.open_sm()
        assert sm.transmit(cos.update_binary(b"X", sfi=tree.sfi_sm)) == (b"", 0x9000)
        want = b"X" + tree.sm_data[1:2]
        assert sm.transmit(cos.read_binary(0, 2, sfi=tree.sfi_sm)) == (want, 0x9000)

    def test_deactivated_6985(self, tree) -> None:
        tree.ok(cos.deactivate(tree.ef_bin))
        assert tree.send(cos.update_binary(b"A", sfi=1)) == (b"", 0x6985)
        tree.ok(cos.activate(tree.ef_bin))
        assert tree.send(cos.read_binary(0, 1, sfi=1)) == (tree.bin_data[:1], 0x9000)


# =====================================================================================
# READ RECORD
# =====================================================================================
def guarded_linear(tree, fid: int = 0x5005, sfi: int = 5) -> None:
    """A linear EF whose every operation needs PIN 1, holding one record (created
    while the card is MANUFACTURED, so before ``tree.initialize()``)."""
    p = cos.pin_sc(tree.pin_ref)
    sec = cos.ac(p, p, p, p, p, p, p)
    tree.ok(cos.create_file(cos.fcp_linear(fid, 8, 3, sfi=sfi, sec=sec)))
    tree.ok(cos.append_record(b"guarded!"))
    tree.ok(cos.select_fid(tree.df))


class TestReadRecord:
    def test_by_sfi(self, tree) -> None:
        for n, rec in enumerate(tree.records, 1):
            assert tree.send(cos.read_record(n, tree.sfi_rec, 16)) == (rec, 0x9000)

    def test_current_ef(self, tree) -> None:
        tree.ok(cos.select_fid(tree.ef_rec))
        assert tree.send(cos.read_record(2, 0, 256)) == (tree.records[1], 0x9000)

    def test_sfi_selects_the_ef(self, tree) -> None:
        tree.ok(cos.read_record(1, tree.sfi_rec))
        assert tree.send(cos.read_record(2, 0)) == (tree.records[1], 0x9000)

    @pytest.mark.parametrize("number", [3, 4, 0xFE])
    def test_record_not_found_6a83(self, tree, number: int) -> None:
        assert tree.send(cos.read_record(number, tree.sfi_rec)) == (b"", 0x6A83)

    def test_le_too_short_6cxx(self, tree) -> None:
        assert tree.send(cos.read_record(1, tree.sfi_rec, 5)) == (b"", 0x6C10)

    def test_exchange_resends_with_the_exact_le(self, tree) -> None:
        r = exchange(tree.reader, cos.read_record(1, tree.sfi_rec, 5))
        assert (r.data, r.sw) == (tree.records[0], 0x9000)

    def test_le_longer_than_record_6282(self, tree) -> None:
        # 7816-4 Table 6: 6282 "end of file or record reached before reading Ne bytes"
        # (as READ BINARY does for a short read)
        assert tree.send(cos.read_record(1, tree.sfi_rec, 20)) == (tree.records[0], 0x6282)

    @pytest.mark.parametrize(
        ("p1", "p2"),
        [
            (0x00, 0x14),  # record 0 (current record) is not supported
            (0xFF, 0x14),
            (0x01, 0x10),  # P2 b3-b1 = 000 (first occurrence of a record id)
            (0x01, 0x15),  # read all records from P1
            (0x01, 0x16),
            (0x01, 0xFC),  # SFI 11111 is reserved
        ],
    )
    def test_bad_p1_p2_6a86(self, tree, p1: int, p2: int) -> None:
        assert tree.send(apdu(0, 0xB2, p1, p2, le=16)) == (b"", 0x6A86)

    def test_no_le_6700(self, tree) -> None:
        assert tree.send(apdu(0, 0xB2, 1, p2_sfi(2))) == (b"", 0x6700)

    def test_data_field_6700(self, tree) -> None:
        assert tree.send(apdu(0, 0xB2, 1, p2_sfi(2), b"\x00", 16)) == (b"", 0x6700)

    def test_transparent_file_6981(self, tree) -> None:
        assert tree.send(cos.read_record(1, tree.sfi_bin)) == (b"", 0x6981)

    def test_no_current_ef_6986(self, tree) -> None:
        assert tree.send(cos.read_record(1, 0)) == (b"", 0x6986)

    def test_unknown_sfi_6a82(self, tree) -> None:
        assert tree.send(cos.read_record(1, 9)) == (b"", 0x6A82)

    def test_access_6982_then_ok(self, tree) -> None:
        guarded_linear(tree)
        tree.initialize()
        assert tree.send(cos.read_record(1, 5)) == (b"", 0x6982)
        tree.verify_pin()
        assert tree.send(cos.read_record(1, 5)) == (b"guarded!", 0x9000)

    def test_deactivated_6985(self, tree) -> None:
        tree.ok(cos.deactivate(tree.ef_rec))
        assert tree.send(cos.read_record(1, tree.sfi_rec)) == (b"", 0x6985)


# =====================================================================================
# UPDATE RECORD
# =====================================================================================
class TestUpdateRecord:
    def test_by_sfi(self, tree) -> None:
        new = b"updated".ljust(16, b"_")
        assert tree.send(cos.update_record(2, new, tree.sfi_rec)) == (b"", 0x9000)
        assert tree.send(cos.read_record(2, tree.sfi_rec)) == (new, 0x9000)
        assert tree.send(cos.read_record(1, tree.sfi_rec)) == (tree.records[0], 0x9000)

    def test_current_ef(self, tree) -> None:
        tree.ok(cos.select_fid(tree.ef_rec))
        assert tree.send(cos.update_record(1, b"\x01" * 16)) == (b"", 0x9000)
        assert tree.send(cos.read_record(1)) == (b"\x01" * 16, 0x9000)

    @pytest.mark.parametrize("number", [3, 4])
    def test_record_not_found_6a83(self, tree, number: int) -> None:
        assert tree.send(cos.update_record(number, bytes(16), tree.sfi_rec)) == (b"", 0x6A83)

    @pytest.mark.parametrize("size", [0, 15, 17])
    def test_wrong_record_length_6700(self, tree, size: int) -> None:
        assert tree.send(apdu(0, 0xDC, 1, p2_sfi(2), bytes(size))) == (b"", 0x6700)
        assert tree.send(cos.read_record(1, tree.sfi_rec)) == (tree.records[0], 0x9000)

    def test_le_present_6700(self, tree) -> None:
        assert tree.send(apdu(0, 0xDC, 1, p2_sfi(2), bytes(16), 16)) == (b"", 0x6700)

    @pytest.mark.parametrize(
        ("p1", "p2"), [(0, 0x14), (0xFF, 0x14), (1, 0x10), (1, 0x15), (1, 0xFC)]
    )
    def test_bad_p1_p2_6a86(self, tree, p1: int, p2: int) -> None:
        assert tree.send(apdu(0, 0xDC, p1, p2, bytes(16))) == (b"", 0x6A86)

    def test_transparent_file_6981(self, tree) -> None:
        assert tree.send(cos.update_record(1, bytes(16), tree.sfi_bin)) == (b"", 0x6981)

    def test_no_current_ef_6986(self, tree) -> None:
        assert tree.send(cos.update_record(1, bytes(16))) == (b"", 0x6986)

    def test_unknown_sfi_6a82(self, tree) -> None:
        assert tree.send(cos.update_record(1, bytes(16), 9)) == (b"", 0x6A82)

    def test_access_6982_then_ok(self, tree) -> None:
        guarded_linear(tree)
        tree.initialize()
        assert tree.send(cos.update_record(1, b"12345678", 5)) == (b"", 0x6982)
        tree.verify_pin()
        assert tree.send(cos.read_record(1, 5)) == (b"guarded!", 0x9000)
        assert tree.send(cos.update_record(1, b"12345678", 5)) == (b"", 0x9000)
        assert tree.send(cos.read_record(1, 5)) == (b"12345678", 0x9000)

    def test_deactivated_6985(self, tree) -> None:
        tree.ok(cos.deactivate(tree.ef_rec))
        assert tree.send(cos.update_record(1, bytes(16), tree.sfi_rec)) == (b"", 0x6985)


# =====================================================================================
# APPEND RECORD
# =====================================================================================
class TestAppendRecord:
    def test_appends_after_the_last(self, tree) -> None:
        new = b"record-three".ljust(16, b".")
        assert tree.send(cos.append_record(new, tree.sfi_rec)) == (b"", 0x9000)
        assert tree.send(cos.read_record(3, tree.sfi_rec)) == (new, 0x9000)
        assert tree.send(cos.read_record(4, tree.sfi_rec)) == (b"", 0x6A83)

    def test_current_ef(self, tree) -> None:
        tree.ok(cos.select_fid(tree.ef_rec))
        assert tree.send(cos.append_record(b"\x03" * 16)) == (b"", 0x9000)
        assert tree.send(cos.read_record(3)) == (b"\x03" * 16, 0x9000)

    def test_full_6a84(self, tree) -> None:
        tree.ok(cos.append_record(b"3" * 16, tree.sfi_rec))
        tree.ok(cos.append_record(b"4" * 16, tree.sfi_rec))
        assert tree.send(cos.append_record(b"5" * 16, tree.sfi_rec)) == (b"", 0x6A84)
        assert tree.send(cos.read_record(4, tree.sfi_rec)) == (b"4" * 16, 0x9000)
        assert tree.send(cos.read_record(5, tree.sfi_rec)) == (b"", 0x6A83)

    @pytest.mark.parametrize("size", [0, 15, 17])
    def test_wrong_record_length_6700(self, tree, size: int) -> None:
        assert tree.send(apdu(0, 0xE2, 0, 2 << 3, bytes(size))) == (b"", 0x6700)
        assert tree.send(cos.read_record(3, tree.sfi_rec)) == (b"", 0x6A83)

    def test_le_present_6700(self, tree) -> None:
        assert tree.send(apdu(0, 0xE2, 0, 2 << 3, bytes(16), 16)) == (b"", 0x6700)

    @pytest.mark.parametrize(("p1", "p2"), [(1, 0x10), (0, 0x14), (0, 0x11), (0, 0xF8)])
    def test_bad_p1_p2_6a86(self, tree, p1: int, p2: int) -> None:
        assert tree.send(apdu(0, 0xE2, p1, p2, bytes(16))) == (b"", 0x6A86)

    def test_transparent_file_6981(self, tree) -> None:
        assert tree.send(cos.append_record(bytes(16), tree.sfi_bin)) == (b"", 0x6981)

    def test_no_current_ef_6986(self, tree) -> None:
        assert tree.send(cos.append_record(bytes(16))) == (b"", 0x6986)

    def test_unknown_sfi_6a82(self, tree) -> None:
        assert tree.send(cos.append_record(bytes(16), 9)) == (b"", 0x6A82)

    def test_access_6982_then_ok(self, tree) -> None:
        guarded_linear(tree)
        tree.initialize()
        assert tree.send(cos.append_record(b"second..", 5)) == (b"", 0x6982)
        tree.verify_pin()
        assert tree.send(cos.append_record(b"second..", 5)) == (b"", 0x9000)
        assert tree.send(cos.read_record(2, 5)) == (b"second..", 0x9000)

    def test_deactivated_6985(self, tree) -> None:
        tree.ok(cos.deactivate(tree.ef_rec))
        assert tree.send(cos.append_record(bytes(16), tree.sfi_rec)) == (b"", 0x6985)


# =====================================================================================
# CREATE FILE
# =====================================================================================
def fcp(*parts: str) -> bytes:
    """An FCP template (62) from hex TLVs."""
    return tlv.encode(0x62, b"".join(h(p) for p in parts))


class TestCreateFile:
    def test_mf_first(self, blank, send: Send) -> None:
        assert send(blank, cos.create_file(cos.fcp_transparent(0x5001, 8))) == (b"", 0x6A82)
        assert send(blank, cos.create_file(cos.fcp_df(0x5000))) == (b"", 0x6A82)
        assert send(blank, cos.create_file(cos.fcp_df(0x3F00))) == (b"", 0x9000)
        want = h(f"6214 820138 83023F00 8A0105 8C08 {OPEN_SC}")
        assert send(blank, cos.select_fid(0x3F00, 0x04)) == (want, 0x9000)

    def test_second_mf_6a89(self, tree) -> None:
        assert tree.send(cos.create_file(cos.fcp_df(0x3F00))) == (b"", 0x6A89)

    def test_created_ef_is_current_and_zeroed(self, tree) -> None:
        assert tree.send(cos.create_file(cos.fcp_transparent(0x6001, 20, sfi=7))) == (b"", 0x9000)
        assert tree.send(cos.read_binary(0, 20)) == (bytes(20), 0x9000)
        want = h(f"621B 80020014 820101 83026001 880138 8A0105 8C08 {OPEN_SC}")
        assert tree.send(cos.select_fid(0x6001, 0x04)) == (want, 0x9000)

    def test_created_df_is_current(self, tree) -> None:
        assert tree.send(cos.create_file(cos.fcp_df(0x6100, b"\xd2\x76"))) == (b"", 0x9000)
        tree.ok(cos.create_file(cos.fcp_linear(0x6101, 4, 2, sfi=1)))  # lands in 6100
        assert tree.send(cos.select_path(0x5000, 0x6100, 0x6101)) == (b"", 0x9000)
        assert tree.send(cos.select_name(b"\xd2\x76", 0x04)) == (
            h(f"6218 820138 83026100 8402D276 8A0105 8C08 {OPEN_SC}"),
            0x9000,
        )

    def test_linear_created_empty(self, tree) -> None:
        tree.ok(cos.create_file(cos.fcp_linear(0x6002, 10, 3, sfi=8)))
        assert tree.send(cos.read_record(1, 8)) == (b"", 0x6A83)
        want = h(f"621F 8002001E 8205022100 0A03 83026002 880140 8A0105 8C08 {OPEN_SC}")
        assert tree.send(cos.select_fid(0x6002, 0x04)) == (want, 0x9000)

    def test_recreated_file_does_not_show_old_data(self, tree) -> None:
        tree.ok(cos.select_fid(tree.ef_bin))
        tree.ok(cos.delete_file())
        tree.ok(cos.create_file(cos.fcp_transparent(0x5009, 64)))
        assert tree.send(cos.read_binary(0, 64)) == (bytes(64), 0x9000)

    @pytest.mark.parametrize(
        ("lcs", "sw"), [("01", 0x9000), ("03", 0x9000), ("05", 0x9000), ("04", 0x6283)]
    )
    def test_life_cycle_status_from_fcp(self, tree, lcs: str, sw: int) -> None:
        tree.ok(cos.create_file(fcp("800108", "820101", "83026003", f"8A01{lcs}")))
        data, got = tree.send(cos.select_fid(0x6003, 0x04))
        assert got == sw
        assert tlv.find(tlv.decode(data)[0][1], 0x8A) == h(lcs)

    def test_security_attributes_from_fcp(self, tree) -> None:
        tree.ok(cos.create_file(fcp("800108", "820101", "83026003", "8C03 03 10 FF")))
        data, _ = tree.send(cos.select_fid(0x6003, 0x04))
        assert tlv.find(tlv.decode(data)[0][1], 0x8C) == h("0310FF")

    def test_duplicate_fid_6a89(self, tree) -> None:
        free = tree.free_memory()
        assert tree.send(cos.create_file(cos.fcp_transparent(0x5001, 8))) == (b"", 0x6A89)
        assert tree.send(cos.create_file(cos.fcp_df(0x5002))) == (b"", 0x6A89)
        assert tree.free_memory() == free

    def test_fid_of_the_parent_6a89(self, tree) -> None:
        assert tree.send(cos.create_file(cos.fcp_transparent(0x5000, 8))) == (b"", 0x6A89)

    def test_same_fid_in_another_df_is_fine(self, tree) -> None:
        tree.ok(cos.select_mf())
        assert tree.send(cos.create_file(cos.fcp_transparent(0x5001, 8))) == (b"", 0x9000)

    def test_duplicate_sfi_6a89(self, tree) -> None:
        assert tree.send(cos.create_file(cos.fcp_transparent(0x6004, 8, sfi=1))) == (b"", 0x6A89)
        assert tree.send(cos.select_fid(0x6004)) == (b"", 0x6A82)

    def test_same_sfi_in_another_df_is_fine(self, tree) -> None:
        tree.ok(cos.select_mf())
        assert tree.send(cos.create_file(cos.fcp_transparent(0x6004, 8, sfi=1))) == (b"", 0x9000)

    def test_duplicate_df_name_6a8a(self, tree) -> None:
        tree.ok(cos.select_mf())
        assert tree.send(cos.create_file(cos.fcp_df(0x6000, tree.aid))) == (b"", 0x6A8A)
        tree.ok(cos.select_fid(tree.df))  # a DF name is unique on the whole card
        assert tree.send(cos.create_file(cos.fcp_df(0x6000, tree.aid))) == (b"", 0x6A8A)

    @pytest.mark.parametrize(
        "data",
        [
            pytest.param(tlv.encode(0x6F, h("820101 83026001 800108")), id="not-62"),
            pytest.param(cos.fcp_transparent(0x6001, 8) + h("8001 00"), id="trailing-tlv"),
            pytest.param(h("6205 820101 8302"), id="truncated-tlv"),
            pytest.param(fcp("83026001", "800108"), id="missing-82"),
            pytest.param(fcp("820101", "800108"), id="missing-83"),
            pytest.param(fcp("820101", "830160", "800108"), id="83-one-byte"),
            pytest.param(fcp("820101", "83030060 01", "800108"), id="83-three-bytes"),
            pytest.param(fcp("820101", "83020000", "800108"), id="fid-0000"),
            pytest.param(fcp("820101", "8302FFFF", "800108"), id="fid-ffff"),
            pytest.param(fcp("820101", "83023FFF", "800108"), id="fid-3fff"),
            pytest.param(fcp("820138", "83023FFF"), id="df-fid-3fff"),
            pytest.param(fcp("820101", "83023F00", "800108"), id="ef-fid-3f00"),
            pytest.param(fcp("820138", "83026000", "8411" + "00" * 17), id="name-17-bytes"),
            pytest.param(fcp("820101", "83026001"), id="transparent-no-80"),
            pytest.param(fcp("820101", "83026001", "800100"), id="transparent-size-0"),
            pytest.param(fcp("820101", "83026001", "8003000008"), id="80-three-bytes"),
            pytest.param(fcp("82020101", "83026001", "800108"), id="fdb-two-bytes"),
            pytest.param(fcp("820106", "83026001", "800108"), id="cyclic-fdb"),
            pytest.param(fcp("820141", "83026001", "800108"), id="unknown-fdb"),
            pytest.param(fcp("82023800", "83026000"), id="df-fdb-two-bytes"),
            pytest.param(fcp("82050221000003", "83026001"), id="linear-record-size-0"),
            pytest.param(fcp("82050221010003", "83026001"), id="linear-record-size-256"),
            pytest.param(fcp("82050221001000", "83026001"), id="linear-no-records"),
            pytest.param(fcp("820502210010FF", "83026001"), id="linear-255-records"),
            pytest.param(fcp("82050231001003", "83026001"), id="linear-bad-dcb"),
            pytest.param(fcp("820402210010", "83026001"), id="linear-short-fdb"),
            pytest.param(fcp("82050221001003", "83023F00"), id="linear-fid-3f00"),
            pytest.param(fcp("820101", "83026001", "800108", "8402A000"), id="84-on-ef"),
            pytest.param(fcp("820138", "83026000", "880108"), id="88-on-df"),
            pytest.param(fcp("820101", "83026001", "800108", "880100"), id="sfi-0"),
            pytest.param(fcp("820101", "83026001", "800108", "8801F8"), id="sfi-31"),
            pytest.param(fcp("820101", "83026001", "800108", "88010C"), id="sfi-low-bits"),
            pytest.param(fcp("820101", "83026001", "800108", "88020800"), id="sfi-two-bytes"),
            pytest.param(fcp("820101", "83026001", "800108", "8A010C"), id="lcs-terminated"),
            pytest.param(fcp("820101", "83026001", "800108", "8A0107"), id="lcs-07"),
            pytest.param(fcp("820101", "83026001", "800108", "8A020500"), id="lcs-two-bytes"),
            pytest.param(fcp("820101", "83026001", "800108", "8C00"), id="8c-empty"),
            pytest.param(fcp("820101", "83026001", "800108", "8C02 8100"), id="8c-am-b8"),
            pytest.param(fcp("820101", "83026001", "800108", "8C02 0300"), id="8c-short"),
            pytest.param(fcp("820101", "83026001", "800108", "8C03 010000"), id="8c-long"),
            pytest.param(fcp("820101", "82010183026001", "800108"), id="repeated-tag"),
        ],
    )
    def test_bad_fcp_6a80(self, tree, data: bytes) -> None:
        free = tree.free_memory()
        assert tree.send(cos.create_file(data)) == (b"", 0x6A80)
        assert tree.free_memory() == free
        assert tree.send(cos.select_fid(0x6001)) == (b"", 0x6A82)

    @pytest.mark.parametrize(("p1", "p2"), [(0x01, 0x00), (0x00, 0x01), (0x00, 0x0C)])
    def test_bad_p1_p2_6a86(self, tree, p1: int, p2: int) -> None:
        assert tree.send(apdu(0, 0xE0, p1, p2, cos.fcp_df(0x6000))) == (b"", 0x6A86)

    def test_no_data_6700(self, tree) -> None:
        assert tree.send(apdu(0, 0xE0, 0, 0)) == (b"", 0x6700)

    def test_le_present_6700(self, tree) -> None:
        assert tree.send(apdu(0, 0xE0, 0, 0, cos.fcp_df(0x6000), 256)) == (b"", 0x6700)
        assert tree.send(cos.select_fid(0x6000)) == (b"", 0x6A82)

    @pytest.mark.parametrize(
        "data",
        [cos.fcp_transparent(0x6001, 0xFFFF), cos.fcp_linear(0x6001, 255, 254)],
        ids=["transparent", "linear"],
    )
    def test_out_of_memory_6a84(self, tree, data: bytes) -> None:
        free = tree.free_memory()
        assert tree.send(cos.create_file(data)) == (b"", 0x6A84)
        assert tree.free_memory() == free
        assert tree.send(cos.select_fid(0x6001)) == (b"", 0x6A82)

    def test_memory_exactly_full(self, tree) -> None:
        free = tree.free_memory()
        assert tree.send(cos.create_file(cos.fcp_transparent(0x6001, free))) == (b"", 0x9000)
        assert tree.free_memory() == 0
        assert tree.send(cos.create_file(cos.fcp_transparent(0x6002, 1))) == (b"", 0x6A84)
        # a DF without a name takes no heap: it still fits
        assert tree.send(cos.create_file(cos.fcp_df(0x6003))) == (b"", 0x9000)

    def test_directory_full_6a84(self, tree) -> None:
        data = tree.ok(cos.get_data(0xDF05))
        dir_entries = data[3 + 8]  # DF05: size(4) page(2) journal dump entries block
        used = 6 + 2  # six files, a PIN and a key
        for i in range(dir_entries - used):
            assert tree.send(cos.create_file(cos.fcp_transparent(0x6000 + i, 1))) == (
                b"",
                0x9000,
            ), f"file {i}"
        free = tree.free_memory()
        assert tree.send(cos.create_file(cos.fcp_transparent(0x7000, 1))) == (b"", 0x6A84)
        assert tree.send(cos.create_file(cos.fcp_df(0x7001))) == (b"", 0x6A84)
        assert tree.free_memory() == free

    def test_create_condition_6982_once_initialized(self, tree) -> None:
        tree.initialize()
        assert tree.send(cos.create_file(cos.fcp_transparent(0x6001, 8))) == (b"", 0x6982)
        assert tree.send(cos.create_file(cos.fcp_df(0x6100))) == (b"", 0x6982)
        tree.authenticate_key()
        assert tree.send(cos.create_file(cos.fcp_transparent(0x6001, 8))) == (b"", 0x9000)
        tree.ok(cos.select_fid(tree.df))
        assert tree.send(cos.create_file(cos.fcp_df(0x6100))) == (b"", 0x9000)

    def test_create_ef_and_create_df_are_separate_conditions(self, tree) -> None:
        # DF 6000: create EF (AM b2) always, create DF (AM b3) never
        sec = cos.ac(read=cos.NEVER, update=cos.ALWAYS, append=cos.NEVER)
        tree.ok(cos.create_file(cos.fcp_df(0x6000, sec=sec)))
        tree.initialize()
        tree.authenticate_key()
        assert tree.send(cos.create_file(cos.fcp_df(0x6100))) == (b"", 0x6982)
        assert tree.send(cos.create_file(cos.fcp_transparent(0x6001, 8))) == (b"", 0x9000)

    def test_conditions_not_enforced_while_manufactured(self, tree) -> None:
        sec = cos.ac(update=cos.NEVER, append=cos.NEVER)
        tree.ok(cos.create_file(cos.fcp_df(0x6000, sec=sec)))
        assert tree.send(cos.create_file(cos.fcp_transparent(0x6001, 8))) == (b"", 0x9000)

    def test_terminated_parent_6985(self, tree) -> None:
        tree.ok(cos.terminate_df())
        assert tree.send(cos.create_file(cos.fcp_transparent(0x6001, 8))) == (b"", 0x6985)


# =====================================================================================
# DELETE FILE
# =====================================================================================
class TestDeleteFile:
    def test_current_ef(self, tree) -> None:
        tree.ok(cos.select_fid(tree.ef_bin))
        assert tree.send(cos.delete_file()) == (b"", 0x9000)
        assert tree.send(cos.read_binary(0, 1)) == (b"", 0x6986)  # no current EF now
        assert tree.send(cos.select_fid(tree.ef_bin)) == (b"", 0x6A82)
        assert tree.send(apdu(0, 0xA4, 0x02, 0x0C, h("5002"))) == (b"", 0x9000)  # DF still

    def test_by_fid(self, tree) -> None:
        assert tree.send(cos.delete_file(tree.ef_rec)) == (b"", 0x9000)
        assert tree.send(cos.read_record(1, tree.sfi_rec)) == (b"", 0x6A82)
        assert tree.send(cos.read_binary(0, 2, sfi=tree.sfi_bin)) == (tree.bin_data[:2], 0x9000)

    def test_by_fid_frees_the_sfi_and_fid(self, tree) -> None:
        tree.ok(cos.delete_file(tree.ef_bin))
        assert tree.send(cos.create_file(cos.fcp_linear(0x5001, 4, 1, sfi=1))) == (b"", 0x9000)

    def test_current_df_goes_back_to_parent(self, tree) -> None:
        tree.ok(cos.create_file(cos.fcp_df(0x6000)))
        assert tree.send(cos.delete_file()) == (b"", 0x9000)
        # 5000 is current again: its EF is a child of the current DF
        assert tree.send(apdu(0, 0xA4, 0x02, 0x0C, h("5001"))) == (b"", 0x9000)
        assert tree.send(cos.select_path(0x5000, 0x6000)) == (b"", 0x6A82)

    def test_recursive_df_delete_frees_memory(self, tree) -> None:
        before = tree.free_memory()
        tree.ok(cos.create_file(cos.fcp_df(0x6000, b"\xd2\x76\x00\x01")))
        tree.ok(cos.create_file(cos.fcp_transparent(0x6001, 100, sfi=1)))
        tree.ok(cos.update_binary(b"\x55" * 100))
        tree.ok(cos.create_file(cos.fcp_linear(0x6002, 20, 5, sfi=2)))
        tree.ok(cos.append_record(b"\x66" * 20))
        tree.ok(cos.create_file(cos.fcp_df(0x6100, b"\xd2\x76\x00\x02")))
        tree.ok(cos.create_file(cos.fcp_transparent(0x6101, 300)))
        assert tree.free_memory() < before
        tree.ok(cos.select_name(tree.aid))
        assert tree.send(cos.delete_file(0x6000)) == (b"", 0x9000)
        assert tree.free_memory() == before
        assert tree.send(cos.select_path(0x5000, 0x6000)) == (b"", 0x6A82)
        assert tree.send(cos.select_name(b"\xd2\x76\x00\x02")) == (b"", 0x6A82)
        # the names are free again and the rest of the tree is intact
        assert tree.send(cos.create_file(cos.fcp_df(0x6100, b"\xd2\x76\x00\x02"))) == (b"", 0x9000)
        assert tree.send(cos.read_binary(0, 64, sfi=1)) == (b"", 0x6A82)  # 6100 has no SFI 1
        tree.ok(cos.select_fid(tree.df))  # the parent of 6100
        assert tree.send(cos.read_binary(0, 64, sfi=1)) == (tree.bin_data, 0x9000)

    def test_delete_mf(self, tree, blank_t0, send: Send) -> None:
        tree.ok(cos.select_mf())
        assert tree.send(cos.delete_file()) == (b"", 0x9000)
        assert tree.send(cos.select_mf()) == (b"", 0x6A82)
        # only the PIN and key objects remain: compare with a card holding just those
        send(blank_t0, cos.put_pin(tree.pin_ref, cos.format2(tree.pin), tries=3))
        usage = cos.USE_EXT_AUTH | cos.USE_INT_AUTH | cos.USE_SM
        send(blank_t0, cos.put_key(tree.key_ref, cos.ALG_AES128, usage, tree.key))
        assert tree.ok(cos.get_data(0xDF04)) == send(blank_t0, cos.get_data(0xDF04))[0]
        assert tree.send(cos.create_file(cos.fcp_df(0x3F00))) == (b"", 0x9000)

    def test_terminated_file_can_be_deleted(self, tree) -> None:
        tree.ok(cos.terminate_ef(tree.ef_bin))
        assert tree.send(cos.delete_file(tree.ef_bin)) == (b"", 0x9000)
        assert tree.send(cos.select_fid(tree.ef_bin)) == (b"", 0x6A82)

    def test_own_condition_6982_then_ok(self, tree) -> None:
        tree.initialize()
        assert tree.send(cos.delete_file(tree.ef_pin)) == (b"", 0x6982)
        assert tree.send(cos.select_fid(tree.ef_pin)) == (b"", 0x9000)
        tree.ok(cos.select_fid(tree.df))
        tree.verify_pin()
        assert tree.send(cos.delete_file(tree.ef_pin)) == (b"", 0x9000)

    def test_parents_delete_child_condition_is_enough(self, tree) -> None:
        tree.initialize()
        assert tree.send(cos.delete_file(tree.ef_sm)) == (b"", 0x6982)
        tree.authenticate_key()  # the DF's "delete child" condition (key 1)
        assert tree.send(cos.delete_file(tree.ef_sm)) == (b"", 0x9000)

    def test_open_file_can_be_deleted_once_initialized(self, tree) -> None:
        tree.initialize()
        assert tree.send(cos.delete_file(tree.ef_bin)) == (b"", 0x9000)

    def test_mf_6982_once_initialized(self, tree) -> None:
        tree.initialize()
        tree.ok(cos.select_mf())
        assert tree.send(cos.delete_file()) == (b"", 0x6982)
        assert tree.send(cos.select_path(0x5000, 0x5001)) == (b"", 0x9000)


# =====================================================================================
# DELETE FILE, ACTIVATE, DEACTIVATE, TERMINATE EF/DF: the shared target checks
# =====================================================================================
TARGET_INS = {
    "delete": 0xE4,
    "activate": 0x44,
    "deactivate": 0x04,
    "term-ef": 0xE8,
    "term-df": 0xE6,
}


@pytest.mark.parametrize("ins", TARGET_INS.values(), ids=TARGET_INS.keys())
class TestFileTarget:
    def test_unknown_fid_6a82(self, tree, ins: int) -> None:
        assert tree.send(apdu(0, ins, 0, 0, h("7777"))) == (b"", 0x6A82)

    def test_grandchild_fid_6a82(self, tree, ins: int) -> None:
        tree.ok(cos.select_mf())
        assert tree.send(apdu(0, ins, 0, 0, h("5001"))) == (b"", 0x6A82)

    @pytest.mark.parametrize("data", [h("50"), h("500100")])
    def test_fid_length_6700(self, tree, ins: int, data: bytes) -> None:
        assert tree.send(apdu(0, ins, 0, 0, data)) == (b"", 0x6700)

    @pytest.mark.parametrize("data", [b"", h("5001")])
    def test_le_present_6700(self, tree, ins: int, data: bytes) -> None:
        assert tree.send(apdu(0, ins, 0, 0, data, 16)) == (b"", 0x6700)

    @pytest.mark.parametrize(("p1", "p2"), [(1, 0), (0, 1), (0, 0x0C)])
    def test_bad_p1_p2_6a86(self, tree, ins: int, p1: int, p2: int) -> None:
        assert tree.send(apdu(0, ins, p1, p2, h("5001"))) == (b"", 0x6A86)


# =====================================================================================
# ACTIVATE / DEACTIVATE / TERMINATE EF / TERMINATE DF
# =====================================================================================
class TestFileLifeCycle:
    def test_deactivate_and_activate_current_ef(self, tree) -> None:
        tree.ok(cos.select_fid(tree.ef_bin))
        assert tree.send(cos.deactivate()) == (b"", 0x9000)
        assert tree.send(cos.select_fid(tree.ef_bin, 0x04)) == (with_lcs(FCP_BIN, 4), 0x6283)
        assert tree.send(cos.read_binary(0, 1)) == (b"", 0x6985)
        assert tree.send(cos.activate()) == (b"", 0x9000)
        assert tree.send(cos.select_fid(tree.ef_bin, 0x04)) == (FCP_BIN, 0x9000)
        assert tree.send(cos.read_binary(0, 1)) == (tree.bin_data[:1], 0x9000)

    def test_deactivate_and_activate_by_fid(self, tree) -> None:
        assert tree.send(cos.deactivate(tree.ef_rec)) == (b"", 0x9000)
        assert tree.send(cos.read_record(1, tree.sfi_rec)) == (b"", 0x6985)
        assert tree.send(cos.activate(tree.ef_rec)) == (b"", 0x9000)
        assert tree.send(cos.read_record(1, tree.sfi_rec)) == (tree.records[0], 0x9000)

    def test_deactivate_and_activate_df(self, tree) -> None:
        tree.ok(cos.select_mf())
        assert tree.send(cos.deactivate(tree.df)) == (b"", 0x9000)
        assert tree.send(cos.select_fid(tree.df, 0x04)) == (with_lcs(FCP_DF, 4), 0x6283)
        assert tree.send(cos.activate()) == (b"", 0x9000)  # the current DF
        assert tree.send(cos.select_fid(tree.df, 0x04)) == (FCP_DF, 0x9000)

    def test_activate_a_file_created_in_creation_state(self, tree) -> None:
        tree.ok(cos.create_file(fcp("800108", "820101", "83026003", "8A0101")))
        assert tree.send(cos.activate()) == (b"", 0x9000)
        data, _ = tree.send(cos.select_fid(0x6003, 0x04))
        assert tlv.find(tlv.decode(data)[0][1], 0x8A) == h("05")

    def test_terminate_ef_is_final(self, tree) -> None:
        assert tree.send(cos.terminate_ef(tree.ef_bin)) == (b"", 0x9000)
        assert tree.send(cos.select_fid(tree.ef_bin, 0x04)) == (with_lcs(FCP_BIN, 0x0C), 0x6285)
        assert tree.send(cos.read_binary(0, 1)) == (b"", 0x6985)
        assert tree.send(cos.update_binary(b"A")) == (b"", 0x6985)
        assert tree.send(cos.activate()) == (b"", 0x6985)
        assert tree.send(cos.deactivate()) == (b"", 0x6985)
        assert tree.send(cos.terminate_ef()) == (b"", 0x6985)
        assert tree.send(cos.select_fid(tree.ef_bin, 0x04)) == (with_lcs(FCP_BIN, 0x0C), 0x6285)

    def test_terminate_current_ef(self, tree) -> None:
        tree.ok(cos.select_fid(tree.ef_rec))
        assert tree.send(cos.terminate_ef()) == (b"", 0x9000)
        assert tree.send(cos.read_record(1)) == (b"", 0x6985)

    def test_terminate_deactivated_ef(self, tree) -> None:
        tree.ok(cos.deactivate(tree.ef_bin))
        assert tree.send(cos.terminate_ef(tree.ef_bin)) == (b"", 0x9000)
        assert tree.send(cos.select_fid(tree.ef_bin)) == (b"", 0x6285)

    def test_terminate_df_is_final(self, tree) -> None:
        tree.ok(cos.select_mf())
        assert tree.send(cos.terminate_df(tree.df)) == (b"", 0x9000)
        assert tree.send(cos.select_fid(tree.df, 0x04)) == (with_lcs(FCP_DF, 0x0C), 0x6285)
        assert tree.send(cos.activate()) == (b"", 0x6985)
        assert tree.send(cos.deactivate()) == (b"", 0x6985)
        assert tree.send(cos.terminate_df()) == (b"", 0x6985)

    def test_terminate_current_df(self, tree) -> None:
        assert tree.send(cos.terminate_df()) == (b"", 0x9000)
        assert tree.send(cos.select_name(tree.aid)) == (b"", 0x6285)

    def test_terminate_ef_on_a_df_6981(self, tree) -> None:
        tree.ok(cos.select_mf())
        assert tree.send(cos.terminate_ef(tree.df)) == (b"", 0x6981)
        assert tree.send(cos.select_fid(tree.df, 0x04)) == (FCP_DF, 0x9000)

    def test_terminate_df_on_an_ef_6981(self, tree) -> None:
        assert tree.send(cos.terminate_df(tree.ef_bin)) == (b"", 0x6981)
        assert tree.send(cos.select_fid(tree.ef_bin, 0x04)) == (FCP_BIN, 0x9000)

    @pytest.mark.parametrize(
        ("builder", "lcs", "sw"),
        [(cos.deactivate, 0x04, 0x6283), (cos.terminate_ef, 0x0C, 0x6285)],
        ids=["deactivate", "terminate-ef"],
    )
    def test_ef_condition_6982_then_ok(self, tree, builder, lcs: int, sw: int) -> None:
        tree.initialize()
        assert tree.send(builder(tree.ef_pin)) == (b"", 0x6982)
        assert tree.send(cos.select_fid(tree.ef_pin, 0x04)) == (FCP_PIN, 0x9000)
        tree.ok(cos.select_fid(tree.df))
        tree.verify_pin()
        assert tree.send(builder(tree.ef_pin)) == (b"", 0x9000)
        assert tree.send(cos.select_fid(tree.ef_pin, 0x04)) == (with_lcs(FCP_PIN, lcs), sw)

    def test_activate_condition_6982_then_ok(self, tree) -> None:
        tree.ok(cos.deactivate(tree.ef_pin))
        tree.initialize()
        assert tree.send(cos.activate(tree.ef_pin)) == (b"", 0x6982)
        tree.verify_pin()
        assert tree.send(cos.activate(tree.ef_pin)) == (b"", 0x9000)
        assert tree.send(cos.read_binary(0, 16, sfi=tree.sfi_pin)) == (tree.pin_data, 0x9000)

    @pytest.mark.parametrize("builder", [cos.deactivate, cos.terminate_df], ids=["deact", "term"])
    def test_df_condition_6982_then_ok(self, tree, builder) -> None:
        tree.initialize()
        tree.ok(cos.select_mf())
        assert tree.send(builder(tree.df)) == (b"", 0x6982)
        assert tree.send(cos.select_fid(tree.df, 0x04)) == (FCP_DF, 0x9000)
        tree.ok(cos.select_mf())
        tree.authenticate_key()
        assert tree.send(builder(tree.df)) == (b"", 0x9000)


# =====================================================================================
# GET RESPONSE and the T=0 / Ne rules
# =====================================================================================
GET_RESPONSE = h("00C00000")


class TestGetResponse:
    def test_t0_case4_answers_61xx_then_get_response(self, tree_t0) -> None:
        t = tree_t0
        assert t.send(cos.select_fid(t.ef_bin, 0x04)) == (b"", 0x6100 | len(FCP_BIN))
        assert t.send(GET_RESPONSE + bytes([len(FCP_BIN)])) == (FCP_BIN, 0x9000)
        assert t.send(GET_RESPONSE + bytes([len(FCP_BIN)])) == (b"", 0x6985)  # all taken

    def test_t0_exchange_collects_the_data(self, tree_t0) -> None:
        r = exchange(tree_t0.reader, cos.select_name(tree_t0.aid, 0x04))
        assert (r.data, r.sw) == (FCP_DF, 0x9000)

    def test_t0_get_response_in_parts(self, tree_t0) -> None:
        t = tree_t0
        t.send(cos.select_fid(t.ef_bin, 0x00))
        # Ne shorter than what is pending: T=0 answers 6Cxx with the exact length
        assert t.send(GET_RESPONSE + b"\x05") == (b"", 0x6C00 | len(FCP_BIN))
        assert t.send(GET_RESPONSE + b"\x00") == (fci(FCP_BIN), 0x9000)

    def test_t0_case2_answers_directly(self, tree_t0) -> None:
        t = tree_t0
        assert t.send(cos.read_binary(0, 16, sfi=t.sfi_bin)) == (t.bin_data[:16], 0x9000)

    def test_t0_wrong_le_6cxx_and_exchange(self, tree_t0) -> None:
        t = tree_t0
        assert t.send(cos.read_record(1, t.sfi_rec, 3)) == (b"", 0x6C10)
        r = exchange(t.reader, cos.read_record(1, t.sfi_rec, 3))
        assert (r.data, r.sw) == (t.records[0], 0x9000)

    def test_t1_data_beyond_ne_kept_for_get_response(self, tree) -> None:
        assert tree.send(cos.select_fid(tree.ef_bin, 0x04)[:-1] + b"\x05") == (
            FCP_BIN[:5],
            0x6100 | (len(FCP_BIN) - 5),
        )
        assert tree.send(GET_RESPONSE + b"\x04") == (FCP_BIN[5:9], 0x6100 | (len(FCP_BIN) - 9))
        assert tree.send(GET_RESPONSE + b"\x00") == (FCP_BIN[9:], 0x9000)

    def test_t1_warning_response_respects_ne(self, tree) -> None:
        # 7816-4 §5.1: the card returns at most Ne bytes, warning or not
        tree.ok(cos.deactivate(tree.ef_bin))
        select = cos.select_fid(tree.ef_bin, 0x04)[:-1] + b"\x05"
        assert tree.send(select) == (with_lcs(FCP_BIN, 4)[:5], 0x6283)

    def test_t1_exchange_collects_the_rest(self, tree) -> None:
        r = exchange(tree.reader, cos.select_fid(tree.ef_rec, 0x04)[:-1] + b"\x01")
        assert (r.data, r.sw) == (FCP_REC, 0x9000)

    def test_nothing_pending_6985(self, blank, send: Send) -> None:
        assert send(blank, GET_RESPONSE + b"\x00") == (b"", 0x6985)

    def test_pending_data_dropped_by_the_next_command(self, tree_t0) -> None:
        t = tree_t0
        assert t.send(cos.select_fid(t.ef_bin, 0x04))[1] == 0x6100 | len(FCP_BIN)
        t.ok(cos.read_binary(0, 1, sfi=t.sfi_bin))
        assert t.send(GET_RESPONSE + b"\x00") == (b"", 0x6985)

    @pytest.mark.parametrize(("p1", "p2"), [(1, 0), (0, 1), (0xFF, 0xFF)])
    def test_wrong_p1_p2_6a86(self, tree_t0, p1: int, p2: int) -> None:
        tree_t0.send(cos.select_fid(tree_t0.ef_bin, 0x04))
        assert tree_t0.send(apdu(0, 0xC0, p1, p2, le=256)) == (b"", 0x6A86)

    def test_data_field_6700(self, tree_t0) -> None:
        tree_t0.send(cos.select_fid(tree_t0.ef_bin, 0x04))
        assert tree_t0.send(apdu(0, 0xC0, 0, 0, b"\x00", 256)) == (b"", 0x6700)


# =====================================================================================
# Extended length (T=1)
# =====================================================================================
class TestExtendedLength:
    @pytest.fixture
    def big(self, tree):
        tree.ok(cos.create_file(cos.fcp_transparent(0x6000, 1000, sfi=5)))
        return tree

    def test_1000_bytes_in_one_apdu_each_way(self, big) -> None:
        payload = bytes((i * 7 + 3) & 0xFF for i in range(1000))
        cmd = cos.update_binary(payload, sfi=5)
        assert cmd[4:7] == h("0003E8") and len(cmd) == 7 + 1000  # case 3E
        assert big.send(cmd) == (b"", 0x9000)
        cmd = cos.read_binary(0, 1000, sfi=5)
        assert cmd[4:] == h("0003E8")  # case 2E
        assert big.send(cmd) == (payload, 0x9000)

    def test_extended_le_max_reads_to_the_end(self, big) -> None:
        big.ok(cos.update_binary(b"\xab" * 1000, sfi=5))
        assert big.send(apdu(0, 0xB0, 0x85, 0, le=65536)) == (b"\xab" * 1000, 0x9000)

    def test_extended_short_read_6282(self, big) -> None:
        assert big.send(cos.read_binary(0, 1200, sfi=5)) == (bytes(1000), 0x6282)

    def test_short_le_00_reads_256(self, big) -> None:
        big.ok(cos.update_binary(bytes(range(256)) * 3 + bytes(232), sfi=5))
        assert big.send(cos.read_binary(0, 256, sfi=5)) == (bytes(range(256)), 0x9000)

    def test_update_offset_form_extended(self, big) -> None:
        big.ok(cos.select_fid(0x6000))
        assert big.send(cos.update_binary(b"\x11" * 700, 300)) == (b"", 0x9000)
        assert big.send(cos.read_binary(0, 1000)) == (bytes(300) + b"\x11" * 700, 0x9000)
        assert big.send(cos.update_binary(b"\x22" * 701, 300)) == (b"", 0x6700)


# =====================================================================================
# The dispatcher: class byte, instruction byte and APDU format
# =====================================================================================
class TestDispatcher:
    @pytest.mark.parametrize("ins", [0x0E, 0x12, 0xFE])
    def test_unknown_ins_6d00(self, tree, ins: int) -> None:
        assert tree.send(apdu(0, ins, 0, 0)) == (b"", 0x6D00)

    @pytest.mark.parametrize("cla", [0xA0, 0xC0, 0xE0, 0xFF])
    def test_unknown_cla_6e00(self, tree, cla: int) -> None:
        assert tree.send(apdu(cla, 0xA4, 0, 0x0C, h("5001"))) == (b"", 0x6E00)

    def test_rfu_class_6e00(self, tree) -> None:
        # 7816-4 Table 1: CLA 001x xxxx is reserved for future use - not a channel
        assert tree.send(apdu(0x20, 0xA4, 0, 0x0C, h("5001"))) == (b"", 0x6E00)

    def test_file_command_under_proprietary_class_6e00(self, tree) -> None:
        assert tree.send(apdu(0x80, 0xA4, 0, 0x0C, h("5001"))) == (b"", 0x6E00)

    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param(b"", id="empty"),
            pytest.param(h("00A4"), id="2-bytes"),
            pytest.param(h("00A400"), id="3-bytes"),
            pytest.param(h("00D60000 05 010203"), id="lc-too-long"),
            pytest.param(h("00D60000 02 010203 00 00"), id="lc-too-short"),
            pytest.param(h("00B08100 0001"), id="extended-truncated"),
            pytest.param(h("00D68100 000000 AA"), id="extended-lc-zero"),
            pytest.param(h("00D68100 000005 0102"), id="extended-lc-mismatch"),
        ],
    )
    def test_malformed_6700(self, tree, raw: bytes) -> None:
        assert tree.send(raw) == (b"", 0x6700)
        assert tree.send(cos.read_binary(0, 64, sfi=1)) == (tree.bin_data, 0x9000)

    def test_command_chaining_6884(self, tree) -> None:
        assert tree.send(apdu(0x10, 0xD6, 0x81, 0, b"XY")) == (b"", 0x6884)
        assert tree.send(cos.read_binary(0, 2, sfi=1)) == (tree.bin_data[:2], 0x9000)
        assert tree.send(apdu(0x10, 0xA4, 0, 0x0C, h("5001"))) == (b"", 0x6884)

    @pytest.mark.parametrize("cla", [0x01, 0x02, 0x03])
    def test_logical_channel_first_interindustry_6881(self, tree, cla: int) -> None:
        # 7816-4 Table 2: CLA 000x xxcc, cc = logical channel 0-3
        assert tree.send(apdu(cla, 0xA4, 0, 0x0C, h("5001"))) == (b"", 0x6881)

    @pytest.mark.parametrize("cla", [0x40, 0x41, 0x4F])
    def test_logical_channel_further_interindustry_6881(self, tree, cla: int) -> None:
        assert tree.send(apdu(cla, 0xA4, 0, 0x0C, h("5001"))) == (b"", 0x6881)

    def test_sm_class_without_a_session_6882(self, tree) -> None:
        assert tree.send(apdu(0x0C, 0xB0, 0x81, 0, h("8E08 0000000000000000"), 256)) == (
            b"",
            0x6882,
        )

    @pytest.mark.parametrize("cla", [0x04, 0x08])
    def test_unsupported_sm_format_6882(self, tree, cla: int) -> None:
        # 7816-4 Table 2: b4b3 = 01 proprietary SM, 10 SM with the header not
        # authenticated - neither is this card's SM, so it must not run the command plain
        assert tree.send(apdu(cla, 0xB0, 0x81, 0, le=4)) == (b"", 0x6882)

    def test_terminated_card_refuses_file_commands_6985(self, tree) -> None:
        tree.ok(cos.set_lifecycle(cos.TERMINATED))
        assert tree.send(cos.select_mf()) == (b"", 0x6985)
        assert tree.send(cos.read_binary(0, 4, sfi=1)) == (b"", 0x6985)
        assert tree.send(cos.create_file(cos.fcp_df(0x6000))) == (b"", 0x6985)
        assert tree.send(cos.delete_file(tree.ef_bin)) == (b"", 0x6985)
        assert tree.send(cos.get_data(0xDF02)) == (h("DF0201FF"), 0x9000)
