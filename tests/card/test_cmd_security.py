"""Security commands, one test group per command, each covering success and every
status word the command can return (ISO/IEC 7816-4:2020 §11.5, 7816-8, and the
card OS module docstrings): VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER,
GET CHALLENGE, EXTERNAL / INTERNAL / GENERAL AUTHENTICATE, secure messaging and
GENERATE ASYMMETRIC KEY PAIR.

The card under test is ``sm_host.standard_card`` (see ``sm_host.initialize``).
Cryptograms are computed on ``cryptography`` (``sm_host``), independently of the
card's own ``cardperso.crypto`` use, except INTERNAL AUTHENTICATE, which the issue
asks to check with ``cardperso.crypto.ciphers``.
"""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sm_host import (
    ADMIN,
    AES_INT,
    AES_SM,
    KD,
    MANUFACTURED,
    PERSONALIZED,
    TDES_AUTH,
    TDES_INT,
    TDES_SM,
    HostSession,
    SmResponseError,
    _cbc,
    build_reader,
    derive_session_keys,
    do,
    ecb,
    expect,
    external_auth,
    general_authenticate,
    host_cryptogram,
    open_session,
    retail_mac,
    session_mac,
    standard_card,
    sw_of,
)

from cardperso.apdu import CommandAPDU, ResponseAPDU
from cardperso.crypto.ciphers import AES, TDES
from cardperso.readers import VirtualReader, cos, exchange

f2 = cos.format2


def apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int = 0) -> bytes:
    return CommandAPDU(cla, ins, p1, p2, data, le).to_bytes()


def status(reader: VirtualReader, ref: int) -> int:
    """VERIFY with an empty data field: the PIN's verification status."""
    return sw_of(reader, cos.verify(ref))


# == VERIFY ===========================================================================


def test_verify_success_status_query_and_p1_ff_reset() -> None:
    _, r = standard_card()
    assert status(r, 3) == 0x63C3
    expect(r, cos.verify(3, f2("1234")), data=b"")
    assert status(r, 3) == 0x9000
    expect(r, apdu(0x00, 0x20, 0xFF, 0x83))  # P1 = FF: reset the verification status
    assert status(r, 3) == 0x63C3
    expect(r, apdu(0x00, 0x20, 0x00, 0x03, f2("1234")))  # global reference qualifier
    assert status(r, 3) == 0x9000


def test_verify_wrong_pin_counts_down_to_blocked_6983() -> None:
    _, r = standard_card()
    expect(r, cos.verify(3, f2("9999")), 0x63C2)
    assert status(r, 3) == 0x63C2
    expect(r, cos.verify(3, f2("0000")), 0x63C1)
    expect(r, cos.verify(3, f2("12345")), 0x63C0)
    expect(r, cos.verify(3, f2("1234")), 0x6983)  # the right PIN no longer helps
    assert status(r, 3) == 0x6983
    r.reset()
    expect(r, cos.verify(3, f2("1234")), 0x6983)  # blocked in EEPROM, not in RAM


def test_verify_success_restores_the_counter_and_failure_drops_the_status() -> None:
    _, r = standard_card()
    expect(r, cos.verify(3, f2("9999")), 0x63C2)
    expect(r, cos.verify(3, f2("1234")))
    assert status(r, 3) == 0x9000
    expect(r, cos.verify(3, f2("9999")), 0x63C2)  # back to 3, minus this one
    assert status(r, 3) == 0x63C2  # no longer verified


def test_verify_status_is_lost_at_reset() -> None:
    _, r = standard_card()
    expect(r, cos.verify(3, f2("1234")))
    r.reset()
    assert status(r, 3) == 0x63C3


def test_verify_transport_pin_6984() -> None:
    _, r = standard_card()
    expect(r, cos.verify(1, f2("0000")), 0x6984)
    expect(r, cos.verify(1), 0x6984)
    expect(r, cos.verify(1, f2("1111")), 0x6984)  # no try is spent either way
    expect(r, cos.change_reference_data(1, f2("0000"), f2("2468")))


def test_verify_unknown_reference_6a88() -> None:
    _, r = standard_card()
    expect(r, cos.verify(9, f2("1234")), 0x6A88)
    expect(r, cos.verify(9), 0x6A88)
    expect(r, apdu(0x00, 0x20, 0xFF, 0x89), 0x6A88)


@pytest.mark.parametrize(
    ("p1", "p2"),
    [(0x01, 0x83), (0x80, 0x83), (0x00, 0x80), (0x00, 0x90), (0x00, 0xA3), (0x00, 0xC3)],
)
def test_verify_bad_p1_p2_6a86(p1: int, p2: int) -> None:
    _, r = standard_card()
    expect(r, apdu(0x00, 0x20, p1, p2, f2("1234")), 0x6A86)
    assert status(r, 3) == 0x63C3


def test_verify_wrong_length_6700() -> None:
    _, r = standard_card()
    expect(r, apdu(0x00, 0x20, 0x00, 0x83, f2("1234")[:7]), 0x6700)
    expect(r, apdu(0x00, 0x20, 0x00, 0x83, f2("1234") + b"\xff"), 0x6700)
    expect(r, apdu(0x00, 0x20, 0x00, 0x83, f2("1234"), le=8), 0x6700)
    expect(r, apdu(0x00, 0x20, 0xFF, 0x83, f2("1234")), 0x6700)
    assert status(r, 3) == 0x63C3  # nothing was compared


@pytest.mark.parametrize(
    "block",
    [
        "141234FFFFFFFFFF",  # control nibble 1, not 2
        "23123FFFFFFFFFFF",  # length 3
        "2D1234567890123F",  # length 13
        "2412A4FFFFFFFFFF",  # a non-digit
        "241234FEFFFFFFFF",  # fill not F
        "2412340FFFFFFFFF",  # a digit in the fill
    ],
)
def test_verify_bad_format2_block_6a80(block: str) -> None:
    _, r = standard_card()
    expect(r, cos.verify(3, bytes.fromhex(block)), 0x6A80)
    assert status(r, 3) == 0x63C3  # no try spent on a malformed block


# == CHANGE REFERENCE DATA ============================================================


def test_change_reference_data_p1_00_success() -> None:
    _, r = standard_card()
    expect(r, cos.change_reference_data(3, f2("1234"), f2("567890")), data=b"")
    assert status(r, 3) == 0x9000  # the change verified the PIN
    r.reset()
    expect(r, cos.verify(3, f2("567890")))
    expect(r, cos.verify(3, f2("1234")), 0x63C2)


def test_change_reference_data_wrong_old_value_counts_down_and_blocks() -> None:
    _, r = standard_card()
    expect(r, cos.change_reference_data(3, f2("1111"), f2("5678")), 0x63C2)
    expect(r, cos.change_reference_data(3, f2("2222"), f2("5678")), 0x63C1)
    expect(r, cos.change_reference_data(3, f2("3333"), f2("5678")), 0x63C0)
    expect(r, cos.change_reference_data(3, f2("1234"), f2("5678")), 0x6983)
    expect(r, cos.verify(3, f2("1234")), 0x6983)
    expect(r, cos.verify(3, f2("5678")), 0x6983)


def test_change_reference_data_length_limits() -> None:
    _, r = standard_card()
    # PIN 1 allows 4..8 digits, the PUK (PIN 2) exactly 8
    expect(r, cos.change_reference_data(1, f2("0000"), f2("123456789")), 0x6A80)
    expect(r, cos.change_reference_data(2, f2("12345678"), f2("1234567")), 0x6A80)
    expect(r, cos.change_reference_data(2, f2("12345678"), f2("123456789")), 0x6A80)
    expect(r, cos.change_reference_data(3, bytes.fromhex("2412A4FFFFFFFFFF"), f2("5678")), 0x6A80)
    expect(r, cos.change_reference_data(3, f2("1234"), bytes.fromhex("23123FFFFFFFFFFF")), 0x6A80)
    # data field: exactly two blocks
    expect(r, apdu(0x00, 0x24, 0x00, 0x83, f2("1234")), 0x6700)
    expect(r, apdu(0x00, 0x24, 0x00, 0x83, f2("1234") + f2("5678")[:7]), 0x6700)
    expect(r, apdu(0x00, 0x24, 0x00, 0x83, f2("1234") + f2("5678") + b"\xff"), 0x6700)
    expect(r, apdu(0x00, 0x24, 0x00, 0x83, f2("1234") + f2("5678"), le=16), 0x6700)
    assert status(r, 3) == 0x63C3  # none of these spent a try
    # the limits themselves are accepted
    expect(r, cos.change_reference_data(1, f2("0000"), f2("12345678")))
    expect(r, cos.change_reference_data(1, f2("12345678"), f2("1234")))
    expect(r, cos.verify(1, f2("1234")))


def test_change_reference_data_p1_01_needs_the_pin_verified() -> None:
    _, r = standard_card()
    expect(r, apdu(0x00, 0x24, 0x01, 0x83, f2("2468")), 0x6982)
    expect(r, cos.verify(3, f2("1234")))
    expect(r, apdu(0x00, 0x24, 0x01, 0x83, f2("1234") + f2("2468")), 0x6700)
    expect(r, apdu(0x00, 0x24, 0x01, 0x83, bytes.fromhex("23123FFFFFFFFFFF")), 0x6A80)
    expect(r, apdu(0x00, 0x24, 0x01, 0x83, f2("2468")), data=b"")
    r.reset()
    expect(r, cos.verify(3, f2("1234")), 0x63C2)
    expect(r, cos.verify(3, f2("2468")))


def test_change_reference_data_transport_rules() -> None:
    _, r = standard_card()
    # a transport PIN cannot be replaced by "new value only", nor by itself
    expect(r, apdu(0x00, 0x24, 0x01, 0x81, f2("2468")), 0x6982)
    expect(r, cos.change_reference_data(1, f2("0000"), f2("0000")), 0x6A80)
    expect(r, cos.change_reference_data(1, f2("9999"), f2("2468")), 0x63C2)
    expect(r, cos.change_reference_data(1, f2("0000"), f2("2468")))
    expect(r, cos.verify(1, f2("2468")))
    # an ordinary PIN may be "changed" to its own value
    expect(r, cos.change_reference_data(1, f2("2468"), f2("2468")))


def test_change_reference_data_bad_p1_p2_6a86_and_unknown_reference_6a88() -> None:
    _, r = standard_card()
    expect(r, apdu(0x00, 0x24, 0x02, 0x83, f2("1234") + f2("5678")), 0x6A86)
    expect(r, apdu(0x00, 0x24, 0x00, 0x80, f2("1234") + f2("5678")), 0x6A86)
    expect(r, cos.change_reference_data(9, f2("1234"), f2("5678")), 0x6A88)
    assert status(r, 3) == 0x63C3


# == RESET RETRY COUNTER ==============================================================


def _block_pin3(r: VirtualReader) -> None:
    for sw in (0x63C2, 0x63C1, 0x63C0):
        expect(r, cos.verify(3, f2("9999")), sw)
    assert status(r, 3) == 0x6983


def test_reset_retry_counter_p1_01_unblocks() -> None:
    _, r = standard_card()
    _block_pin3(r)
    expect(r, cos.reset_retry_counter(3, f2("12345678")), data=b"")
    assert status(r, 3) == 0x63C3  # counter back to the limit, not verified
    expect(r, cos.verify(3, f2("1234")))


def test_reset_retry_counter_p1_00_sets_a_new_value() -> None:
    _, r = standard_card()
    _block_pin3(r)
    expect(r, cos.reset_retry_counter(3, f2("12345678"), f2("9876")), data=b"")
    assert status(r, 3) == 0x63C3
    expect(r, cos.verify(3, f2("1234")), 0x63C2)
    expect(r, cos.verify(3, f2("9876")))


def test_reset_retry_counter_puk_counts_down_and_blocks() -> None:
    _, r = standard_card()
    _block_pin3(r)
    expect(r, cos.reset_retry_counter(3, f2("11111111")), 0x63C1)
    expect(r, cos.reset_retry_counter(3, f2("22222222"), f2("9876")), 0x63C0)
    expect(r, cos.reset_retry_counter(3, f2("12345678")), 0x6983)
    expect(r, cos.reset_retry_counter(1, f2("12345678"), f2("2468")), 0x6983)
    expect(r, cos.verify(3, f2("1234")), 0x6983)  # still blocked, value unchanged
    expect(r, cos.verify(3, f2("9876")), 0x6983)


def test_reset_retry_counter_right_puk_restores_the_puk_counter() -> None:
    _, r = standard_card()
    expect(r, cos.reset_retry_counter(3, f2("11111111")), 0x63C1)
    expect(r, cos.reset_retry_counter(3, f2("12345678")))
    expect(r, cos.reset_retry_counter(3, f2("11111111")), 0x63C1)


def test_reset_retry_counter_without_puk_6985() -> None:
    _, r = standard_card()
    expect(r, cos.reset_retry_counter(4, f2("12345678")), 0x6985)
    expect(r, cos.reset_retry_counter(4, f2("12345678"), f2("2468")), 0x6985)


def test_reset_retry_counter_errors() -> None:
    _, r = standard_card()
    expect(r, cos.reset_retry_counter(5, f2("12345678")), 0x6A88)  # its PUK is missing
    expect(r, cos.reset_retry_counter(9, f2("12345678")), 0x6A88)  # no such PIN
    expect(r, apdu(0x00, 0x2C, 0x02, 0x83, f2("12345678")), 0x6A86)
    expect(r, apdu(0x00, 0x2C, 0x00, 0x80, f2("12345678")), 0x6A86)
    expect(r, apdu(0x00, 0x2C, 0x00, 0x83, f2("12345678")), 0x6700)  # P1 00 needs two
    expect(r, apdu(0x00, 0x2C, 0x01, 0x83, f2("12345678") + f2("2468")), 0x6700)
    expect(r, apdu(0x00, 0x2C, 0x01, 0x83, f2("12345678"), le=8), 0x6700)
    expect(r, cos.reset_retry_counter(3, bytes.fromhex("28123456789ABCDE")), 0x6A80)
    expect(r, cos.reset_retry_counter(1, f2("12345678"), f2("123456789")), 0x6A80)  # max 8
    # none of these spent a PUK try: the next wrong PUK leaves 1 of 2
    expect(r, cos.reset_retry_counter(3, f2("11111111")), 0x63C1)


def test_reset_retry_counter_new_value_ends_the_transport_state() -> None:
    _, r = standard_card()
    expect(r, cos.reset_retry_counter(1, f2("12345678")))
    expect(r, cos.verify(1, f2("0000")), 0x6984)  # P1 01 keeps the value: still transport
    expect(r, cos.reset_retry_counter(1, f2("12345678"), f2("2580")))
    expect(r, cos.verify(1, f2("2580")))


# == GET CHALLENGE ====================================================================


@pytest.mark.parametrize("n", [8, 16, 32])
def test_get_challenge_returns_le_fresh_bytes(n: int) -> None:
    _, r = standard_card()
    a = expect(r, cos.get_challenge(n))
    b = expect(r, cos.get_challenge(n))
    assert len(a) == len(b) == n
    assert a != b


def test_get_challenge_errors() -> None:
    _, r = standard_card()
    expect(r, cos.get_challenge(7), 0x6700)
    expect(r, cos.get_challenge(33), 0x6700)
    expect(r, cos.get_challenge(256), 0x6700)
    expect(r, apdu(0x00, 0x84, 0x00, 0x00), 0x6700)  # no Le
    expect(r, apdu(0x00, 0x84, 0x00, 0x00, b"\x00" * 8, le=8), 0x6700)
    expect(r, apdu(0x00, 0x84, 0x01, 0x00, le=8), 0x6A86)
    expect(r, apdu(0x00, 0x84, 0x00, 0x01, le=8), 0x6A86)


# == EXTERNAL AUTHENTICATE ============================================================


def test_external_authenticate_aes_key_grants_its_access_condition() -> None:
    _, r = standard_card()
    expect(r, cos.update_binary(b"perso", sfi=1), 0x6982)  # EF 5001: update = key 1
    challenge = expect(r, cos.get_challenge(16))
    expect(r, cos.external_authenticate(1, ecb(KD, "AES", challenge)), data=b"")
    expect(r, cos.update_binary(b"perso", sfi=1))
    expect(r, cos.read_binary(0, 5, sfi=1), data=b"perso")
    r.reset()
    expect(r, cos.select_path(0x5000))
    expect(r, cos.update_binary(b"again", sfi=1), 0x6982)  # RAM state is gone


def test_external_authenticate_tdes_key() -> None:
    _, r = standard_card()
    challenge = expect(r, cos.get_challenge(8))
    cryptogram = ecb(TDES_AUTH + TDES_AUTH[:8], "TDES", challenge)
    expect(r, cos.external_authenticate(3, cryptogram), data=b"")


def test_external_authenticate_wrong_cryptogram_with_try_limit_63cx_then_6983() -> None:
    _, r = standard_card()
    for sw in (0x63C2, 0x63C1, 0x63C0):
        expect(r, cos.get_challenge(16))
        expect(r, cos.external_authenticate(1, bytes(16)), sw)
    assert external_auth(r, 1, KD, "AES") == 0x6983
    r.reset()
    assert external_auth(r, 1, KD, "AES") == 0x6983


def test_external_authenticate_wrong_cryptogram_without_try_limit_6300() -> None:
    _, r = standard_card()
    for _ in range(5):
        expect(r, cos.get_challenge(8))
        expect(r, cos.external_authenticate(3, bytes(8)), 0x6300)
    assert external_auth(r, 3, TDES_AUTH, "TDES") == 0x9000


def test_external_authenticate_success_restores_counter_failure_drops_status() -> None:
    _, r = standard_card()
    expect(r, cos.get_challenge(16))
    expect(r, cos.external_authenticate(1, bytes(16)), 0x63C2)
    assert external_auth(r, 1, KD, "AES") == 0x9000
    expect(r, cos.update_binary(b"x", sfi=1))
    expect(r, cos.get_challenge(16))
    expect(r, cos.external_authenticate(1, bytes(16)), 0x63C2)  # counter was back at 3
    expect(r, cos.update_binary(b"x", sfi=1), 0x6982)  # authentication withdrawn


def test_external_authenticate_without_a_fitting_challenge_6985() -> None:
    _, r = standard_card()
    expect(r, cos.external_authenticate(1, bytes(16)), 0x6985)  # no challenge
    challenge = expect(r, cos.get_challenge(16))
    cryptogram = ecb(KD, "AES", challenge)
    expect(r, cos.external_authenticate(1, cryptogram))
    expect(r, cos.external_authenticate(1, cryptogram), 0x6985)  # used up: no replay
    challenge = expect(r, cos.get_challenge(8))  # a DES-sized challenge for an AES key
    expect(r, cos.external_authenticate(1, ecb(KD, "AES", challenge * 2)), 0x6985)
    expect(r, cos.get_challenge(16))
    expect(r, cos.external_authenticate(3, bytes(8)), 0x6985)  # AES-sized for 3DES
    # none of these spent a try
    expect(r, cos.get_challenge(16))
    expect(r, cos.external_authenticate(1, bytes(16)), 0x63C2)


def test_external_authenticate_wrong_key_usage_6985() -> None:
    _, r = standard_card()
    expect(r, cos.get_challenge(8))
    expect(r, cos.external_authenticate(4, bytes(8)), 0x6985)  # SM only
    expect(r, cos.get_challenge(16))
    expect(r, cos.external_authenticate(5, bytes(16)), 0x6985)  # internal auth
    expect(r, cos.get_challenge(16))
    expect(r, cos.external_authenticate(9, bytes(16)), 0x6985)  # SM
    expect(r, cos.get_challenge(8))
    expect(r, cos.external_authenticate(8, bytes(8)), 0x6985)  # internal auth only


def test_external_authenticate_errors() -> None:
    _, r = standard_card()
    expect(r, cos.get_challenge(16))
    expect(r, cos.external_authenticate(14, bytes(16)), 0x6A88)
    expect(r, apdu(0x00, 0x82, 0x01, 0x81, bytes(16)), 0x6A86)
    expect(r, apdu(0x00, 0x82, 0x00, 0x80, bytes(16)), 0x6A86)
    expect(r, apdu(0x00, 0x82, 0x00, 0x81, bytes(16), le=16), 0x6700)
    challenge = expect(r, cos.get_challenge(16))
    expect(r, cos.external_authenticate(1, ecb(KD, "AES", challenge)[:8]), 0x6700)


# == INTERNAL AUTHENTICATE ============================================================


def _cmac_88(key: bytes, family: str, challenge: bytes) -> bytes:
    """Independent CMAC (SP 800-38B) over 88 || challenge with `cryptography`."""
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import algorithms
    from cryptography.hazmat.primitives.cmac import CMAC

    algo = (
        algorithms.AES(key)
        if family == "AES"
        else TripleDES(key + key[:8] if len(key) == 16 else key)
    )
    c = CMAC(algo)
    c.update(b"\x88" + challenge)
    return c.finalize()


@pytest.mark.parametrize("n", [1, 16, 33, 64])
def test_internal_authenticate_aes_is_cmac_over_88_and_challenge(n: int) -> None:
    _, r = standard_card()
    challenge = bytes(range(0x30, 0x30 + n))
    want = _cmac_88(AES_INT, "AES", challenge)
    if n == 16:  # not the plain encryption EXTERNAL AUTHENTICATE would accept
        assert want != AES(AES_INT).encrypt_ecb(challenge)
    expect(r, cos.internal_authenticate(5, challenge), data=want)


@pytest.mark.parametrize("n", [3, 8, 24, 64])
def test_internal_authenticate_tdes_is_cmac_over_88_and_challenge(n: int) -> None:
    _, r = standard_card()
    challenge = bytes(range(0x50, 0x50 + n))
    expect(r, cos.internal_authenticate(8, challenge), data=_cmac_88(TDES_INT, "TDES", challenge))


def test_internal_authenticate_ec_key_signs_with_ecdsa_p256() -> None:
    _, r = standard_card()
    expect(r, cos.generate_key_pair(6, cos.USE_INT_AUTH))
    out = expect(r, cos.read_public_key(6))
    assert out[:5] == bytes.fromhex("7F49438641")
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), out[5:])
    for challenge in (b"\x01" * 8, bytes(range(64)), b"x"):
        sig = expect(r, cos.internal_authenticate(6, challenge))
        assert len(sig) == 64
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        public.verify(der, challenge, ec.ECDSA(hashes.SHA256()))
        with pytest.raises(InvalidSignature):
            public.verify(der, challenge + b"!", ec.ECDSA(hashes.SHA256()))
    expect(r, cos.internal_authenticate(6, bytes(65)), 0x6700)


def test_internal_authenticate_ec_key_without_int_auth_usage_6985() -> None:
    _, r = standard_card()
    expect(r, cos.generate_key_pair(7, cos.USE_KEY_AGREEMENT))
    expect(r, cos.internal_authenticate(7, bytes(16)), 0x6985)


def test_internal_authenticate_errors() -> None:
    _, r = standard_card()
    expect(r, cos.internal_authenticate(3, bytes(16)), 0x6985)  # ext auth key
    expect(r, cos.internal_authenticate(5, bytes(80)), 0x6700)  # over 64 bytes
    expect(r, apdu(0x00, 0x88, 0x00, 0x85, le=256), 0x6700)  # no data
    expect(r, apdu(0x00, 0x88, 0x00, 0x85, bytes(16)), 0x6700)  # no Le
    expect(r, cos.internal_authenticate(1, bytes(16)), 0x6985)  # ext auth + SM key
    expect(r, cos.internal_authenticate(4, bytes(16)), 0x6985)  # SM key
    expect(r, cos.internal_authenticate(14, bytes(16)), 0x6A88)
    expect(r, apdu(0x00, 0x88, 0x01, 0x85, bytes(16), le=256), 0x6A86)
    expect(r, apdu(0x00, 0x88, 0x00, 0x80, bytes(16), le=256), 0x6A86)


def test_internal_authenticate_is_no_oracle_for_external_authenticate() -> None:
    """A key allowed both usages must not let the card answer its own challenge:
    INTERNAL AUTHENTICATE of one block is CBC with a zero IV, i.e. exactly the
    ECB cryptogram EXTERNAL AUTHENTICATE expects. Whatever the fix (refuse the
    usage combination at PUT KEY, or separate the computations), a host that does
    not know key 3 must not end up authenticated with it."""
    _, r = build_reader()
    expect(r, cos.create_file(cos.fcp_df(0x3F00)))
    expect(r, cos.create_file(cos.fcp_transparent(0x0101, 8, sfi=1, sec=cos.ac(update=0x23))))
    usage = cos.USE_EXT_AUTH | cos.USE_INT_AUTH
    loaded = sw_of(r, cos.put_key(3, cos.ALG_TDES2, usage, TDES_AUTH, tries=3))
    assert loaded in (0x9000, 0x6A80)
    expect(r, cos.set_lifecycle(0x07))
    expect(r, cos.select_mf())
    challenge = expect(r, cos.get_challenge(8))
    answer = exchange(r, cos.internal_authenticate(3, challenge))
    if answer.sw == 0x9000:
        exchange(r, cos.external_authenticate(3, answer.data))
    expect(r, cos.update_binary(b"FORGED!!", sfi=1), 0x6982)


def _dbl(block: bytes) -> bytes:
    v = int.from_bytes(block, "big") << 1
    return ((v ^ 0x87) & ((1 << 128) - 1) if v >> 128 else v).to_bytes(16, "big")


def test_internal_authenticate_is_no_oracle_for_sm_session_keys() -> None:
    """The same root as above with an SM key: CBC encryption on demand under K
    is enough to compute CMAC(K, .), hence SK.ENC / SK.MAC (SP 800-108 with CMAC)
    and a valid GENERAL AUTHENTICATE step 2 - a session and authentication with K
    for a host that never knew K. Whatever the fix, that must not work."""
    _, r = build_reader()
    expect(r, cos.create_file(cos.fcp_df(0x3F00)))
    sec = cos.ac(read=cos.SM_SC, update=cos.SM_SC)
    expect(r, cos.create_file(cos.fcp_transparent(0x0101, 16, sfi=1, sec=sec)))
    expect(r, cos.update_binary(b"SECRET-SM-DATA!!"))
    loaded = sw_of(r, cos.put_key(1, cos.ALG_AES128, cos.USE_INT_AUTH | cos.USE_SM, KD))
    assert loaded in (0x9000, 0x6A80)
    expect(r, cos.set_lifecycle(0x07))
    expect(r, cos.select_mf())
    if loaded != 0x9000:
        return

    def oracle_cmac(msg: bytes) -> bytes | None:
        """CMAC-AES(K, msg) from INTERNAL AUTHENTICATE (CBC, zero IV) alone."""
        resp = exchange(r, cos.internal_authenticate(1, bytes(16)))
        if resp.sw != 0x9000:
            return None
        k1 = _dbl(resp.data[:16])
        if msg and len(msg) % 16 == 0:
            last = bytes(a ^ b for a, b in zip(msg[-16:], k1, strict=True))
            body = msg[:-16] + last
        else:
            tail = msg[len(msg) - len(msg) % 16 :] + b"\x80"
            tail += bytes(16 - len(tail))
            body = msg[: len(msg) - len(msg) % 16]
            body += bytes(a ^ b for a, b in zip(tail, _dbl(k1), strict=True))
        out = exchange(r, cos.internal_authenticate(1, body))
        return out.data[-16:] if out.sw == 0x9000 else None

    rh = bytes(range(16))
    step1 = exchange(r, cos.general_authenticate_1(1, rh))
    if step1.sw == 0x9000:
        rc = step1.data[4:20]
        tail = b"\x00" + rh + rc + (128).to_bytes(4, "big")
        k_enc = oracle_cmac(b"\x00\x00\x00\x01cardperso SM ENC" + tail)
        k_mac = oracle_cmac(b"\x00\x00\x00\x01cardperso SM MAC" + tail)
        if k_enc is not None and k_mac is not None:
            s = HostSession("AES", k_enc, k_mac)
            exchange(r, cos.general_authenticate_2(1, host_cryptogram(s, rh, rc)))
            assert s.send(r, cos.read_binary(0, 16, sfi=1)).sw == 0x6882


# == GENERAL AUTHENTICATE (session set-up) ============================================


SM_KEYS = [
    pytest.param(cos.ALG_AES128, KD, "AES", id="AES-128"),
    pytest.param(cos.ALG_AES256, AES_INT, "AES", id="AES-256"),
    pytest.param(cos.ALG_TDES2, TDES_AUTH, "TDES", id="3DES-2key"),
    pytest.param(cos.ALG_TDES3, TDES_SM, "TDES", id="3DES-3key"),
]


def _card_with_sm_key(alg: int, key: bytes) -> VirtualReader:
    """The standard card plus SM key 6 (``alg``), INITIALIZED, DF 5000 selected."""
    _, r = standard_card(MANUFACTURED)
    expect(r, cos.put_key(6, alg, cos.USE_SM, key, tries=3))
    expect(r, cos.set_lifecycle(0x07))
    expect(r, cos.select_path(0x5000))
    return r


@pytest.mark.parametrize(("alg", "key", "family"), SM_KEYS)
def test_general_authenticate_both_steps_open_a_session(alg: int, key: bytes, family: str) -> None:
    r = _card_with_sm_key(alg, key)
    bs = 16 if family == "AES" else 8
    rnd_h = bytes(range(1, 1 + bs))
    s, rnd_c, _ = general_authenticate(r, 6, key, family, rnd_h)  # checks the card's MAC
    cryptogram = host_cryptogram(s, rnd_h, rnd_c)
    expect(r, cos.general_authenticate_2(6, cryptogram), data=b"")
    s.expect(r, cos.update_binary(b"session works", sfi=3))
    s.expect(r, cos.read_binary(0, 13, sfi=3), data=b"session works")


def test_general_authenticate_card_random_is_fresh() -> None:
    _, r = standard_card()
    a = general_authenticate(r, 1, KD, "AES", bytes(16))
    b = general_authenticate(r, 1, KD, "AES", bytes(16))
    assert a[1] != b[1] and a[2] != b[2]


def test_general_authenticate_counts_as_authentication_with_the_key() -> None:
    _, r = standard_card()
    expect(r, cos.update_binary(b"k1", sfi=1), 0x6982)
    open_session(r, 1, KD, "AES")
    expect(r, cos.update_binary(b"k1", sfi=1))  # EF 5001: update = key 1 authenticated


def test_general_authenticate_wrong_host_cryptogram_with_try_limit() -> None:
    _, r = standard_card()
    for sw in (0x63C2, 0x63C1, 0x63C0):
        s, _, _ = general_authenticate(r, 1, KD, "AES", bytes(16))
        expect(r, cos.general_authenticate_2(1, bytes(8)), sw)
        assert s.send(r, cos.read_binary(0, 4, sfi=3)).sw == 0x6882  # no session
    # the key is now blocked for every use: even step 1 is refused
    expect(r, cos.general_authenticate_1(1, bytes(16)), 0x6983)
    expect(r, cos.general_authenticate_2(1, bytes(8)), 0x6983)


def test_general_authenticate_wrong_host_cryptogram_without_try_limit_6300() -> None:
    _, r = standard_card()
    for _ in range(4):
        general_authenticate(r, 9, AES_SM, "AES", bytes(16))
        expect(r, cos.general_authenticate_2(9, bytes(8)), 0x6300)
    open_session(r, 9, AES_SM, "AES")


def test_general_authenticate_step_2_out_of_order_6985() -> None:
    _, r = standard_card()
    expect(r, cos.general_authenticate_2(1, bytes(8)), 0x6985)  # no step 1
    s, rnd_c, _ = general_authenticate(r, 1, KD, "AES", bytes(16))
    right = host_cryptogram(s, bytes(16), rnd_c)
    expect(r, cos.general_authenticate_2(9, right), 0x6985)  # step 1 was for key 1
    expect(r, cos.general_authenticate_2(1, right), 0x6985)  # the pending step is gone
    s, rnd_c, _ = general_authenticate(r, 1, KD, "AES", bytes(16))
    right = host_cryptogram(s, bytes(16), rnd_c)
    expect(r, cos.general_authenticate_2(1, right))
    expect(r, cos.general_authenticate_2(1, right), 0x6985)  # no second step 2
    # none of the 6985s spent a try of key 1
    general_authenticate(r, 1, KD, "AES", bytes(16))
    expect(r, cos.general_authenticate_2(1, bytes(8)), 0x63C2)


def test_general_authenticate_step_1_errors() -> None:
    _, r = standard_card()
    rh = bytes(16)
    expect(r, cos.general_authenticate_1(2, rh), 0x6985)  # admin key: no SM usage
    expect(r, cos.general_authenticate_1(5, rh), 0x6985)  # internal auth key
    expect(r, cos.general_authenticate_1(14, rh), 0x6A88)
    expect(r, cos.general_authenticate_1(1, bytes(8)), 0x6A80)  # RND.H not one AES block
    expect(r, cos.general_authenticate_1(4, bytes(16)), 0x6A80)  # not one DES block
    step1 = do(0x7C, do(0x81, rh))
    expect(r, apdu(0x00, 0x86, 0x00, 0x01, step1), 0x6700)  # no Le
    expect(r, apdu(0x00, 0x86, 0x00, 0x01, do(0x81, rh), le=256), 0x6A80)  # no 7C
    both = do(0x7C, do(0x81, rh) + do(0x84, bytes(8)))
    expect(r, apdu(0x00, 0x86, 0x00, 0x01, both, le=256), 0x6A80)
    expect(r, apdu(0x00, 0x86, 0x00, 0x01, do(0x7C, b""), le=256), 0x6A80)
    expect(r, apdu(0x00, 0x86, 0x00, 0x01, do(0x7C, do(0x85, rh)), le=256), 0x6A80)
    expect(r, apdu(0x00, 0x86, 0x00, 0x01, b"\x7c\x05\x81", le=256), 0x6A80)  # bad TLV
    expect(r, apdu(0x00, 0x86, 0x01, 0x01, step1, le=256), 0x6A86)
    expect(r, apdu(0x00, 0x86, 0x00, 0x00, step1, le=256), 0x6A86)
    expect(r, apdu(0x00, 0x86, 0x00, 0x10, step1, le=256), 0x6A86)


def test_general_authenticate_accepts_a_specific_reference_qualifier() -> None:
    """7816-4 P2 b8 = 1 means "specific reference data"; VERIFY and EXTERNAL /
    INTERNAL AUTHENTICATE on this card accept 80|ref like ref (one security
    environment), so GENERAL AUTHENTICATE should too."""
    _, r = standard_card()
    step1 = do(0x7C, do(0x81, bytes(16)))
    out = expect(r, apdu(0x00, 0x86, 0x00, 0x81, step1, le=256))
    assert out[:4] == bytes.fromhex("7C1C8210")


def test_general_authenticate_new_step_1_ends_the_running_session() -> None:
    _, r = standard_card()
    s = open_session(r, 1, KD, "AES")
    s.expect(r, cos.read_binary(0, 4, sfi=3), data=bytes(4))
    general_authenticate(r, 1, KD, "AES", bytes(16))
    assert s.send(r, cos.read_binary(0, 4, sfi=3)).sw == 0x6882


# == secure messaging =================================================================


@pytest.mark.parametrize(("alg", "key", "family"), SM_KEYS)
def test_sm_read_and_update_binary_on_an_sm_only_ef(alg: int, key: bytes, family: str) -> None:
    r = _card_with_sm_key(alg, key)
    expect(r, cos.read_binary(0, 32, sfi=3), 0x6982)  # EF 5003: SM only
    expect(r, cos.update_binary(b"plain", sfi=3), 0x6982)
    s = open_session(r, 6, key, family)
    payload = bytes(range(0x41, 0x41 + 32))
    s.expect(r, cos.update_binary(payload, sfi=3), data=b"")
    s.expect(r, cos.read_binary(0, 32, sfi=3), data=payload)
    s.expect(r, cos.read_binary(30, 2, sfi=3), data=payload[30:])
    s.expect(r, cos.read_binary(0, 5, sfi=4), data=b"INIT-")  # open EFs work under SM too
    expect(r, cos.read_binary(0, 32, sfi=3), 0x6982)  # plain access is still refused


def test_sm_put_key_and_put_pin_in_initialized_state() -> None:
    """Personalization secrets arrive under SM (commands_admin._loading_allowed).
    PUT KEY / PUT PIN are CLA 80 commands; under SM their CLA carries b4b3 = 11
    (8C), as for the interindustry class."""
    _, r = standard_card()
    expect(r, cos.put_key(6, cos.ALG_AES128, cos.USE_EXT_AUTH, ADMIN), 0x6982)  # plain
    s = open_session(r, 1, KD, "AES")
    s.expect(r, cos.put_key(6, cos.ALG_AES128, cos.USE_EXT_AUTH, ADMIN, tries=2), data=b"")
    s.expect(r, cos.put_pin(6, f2("8642"), tries=3), data=b"")
    assert external_auth(r, 6, ADMIN, "AES") == 0x9000
    expect(r, cos.verify(6, f2("8642")))
    expect(r, cos.set_lifecycle(PERSONALIZED))
    s = open_session(r, 1, KD, "AES")
    s.expect(r, cos.put_key(7, cos.ALG_AES128, cos.USE_EXT_AUTH, ADMIN), 0x6985)
    s.expect(r, cos.put_pin(6, f2("1357")), 0x6985)


def test_sm_tampered_mac_6988_ends_the_session() -> None:
    _, r = standard_card()
    s = open_session(r, 1, KD, "AES")
    wrapped = bytearray(s.wrap(cos.read_binary(0, 4, sfi=3)))
    wrapped[-2] ^= 0x01  # last MAC byte (before Le)
    resp = exchange(r, bytes(wrapped))
    assert (resp.data, resp.sw) == (b"", 0x6988)
    s.ssc += 1
    assert s.send(r, cos.read_binary(0, 4, sfi=3)).sw == 0x6882


def test_sm_tampered_cryptogram_6988_ends_the_session() -> None:
    _, r = standard_card()
    s = open_session(r, 1, KD, "AES")
    wrapped = bytearray(s.wrap(cos.update_binary(b"abcd", sfi=3)))
    wrapped[8] ^= 0x80  # inside DO 87, so the MAC no longer matches
    assert exchange(r, bytes(wrapped)).sw == 0x6988
    s.ssc += 1
    assert s.send(r, cos.read_binary(0, 4, sfi=3)).sw == 0x6882


def test_sm_bad_padding_under_a_valid_mac_6988() -> None:
    _, r = standard_card()
    s = open_session(r, 1, KD, "AES")
    s.ssc += 1
    header = bytes([0x0C, 0xD6, 0x83, 0x00, 0x80]) + bytes(11)
    iv = ecb(s.k_enc, "AES", s.ssc.to_bytes(16, "big"))
    body = do(0x87, b"\x01" + _cbc(s.k_enc, "AES", b"abcd" + bytes(12), iv))
    mac = session_mac("AES", s.k_mac, s.ssc.to_bytes(16, "big") + header + body)
    wrapped = apdu(0x0C, 0xD6, 0x83, 0x00, body + do(0x8E, mac), le=256)
    assert exchange(r, wrapped).sw == 0x6988
    s.ssc += 1
    assert s.send(r, cos.read_binary(0, 4, sfi=3)).sw == 0x6882


def test_sm_missing_mac_6987_ends_the_session() -> None:
    _, r = standard_card()
    s = open_session(r, 1, KD, "AES")
    resp = exchange(r, apdu(0x0C, 0xB0, 0x83, 0x00, do(0x97, b"\x04"), le=256))
    assert (resp.data, resp.sw) == (b"", 0x6987)
    assert s.send(r, cos.read_binary(0, 4, sfi=3)).sw == 0x6882
    s2 = open_session(r, 1, KD, "AES")
    resp = exchange(r, apdu(0x0C, 0xB0, 0x83, 0x00, b"", le=256))  # no DO at all
    assert resp.sw == 0x6987
    assert s2.send(r, cos.read_binary(0, 4, sfi=3)).sw == 0x6882


def test_sm_unexpected_data_object_6988() -> None:
    _, r = standard_card()
    s = open_session(r, 1, KD, "AES")
    s.ssc += 1
    header = bytes([0x0C, 0xB0, 0x83, 0x00, 0x80]) + bytes(11)
    body = do(0x85, b"\x01" + bytes(16))
    mac = session_mac("AES", s.k_mac, s.ssc.to_bytes(16, "big") + header + body)
    assert sw_of(r, apdu(0x0C, 0xB0, 0x83, 0x00, body + do(0x8E, mac), le=256)) == 0x6988


def test_sm_without_a_session_6882() -> None:
    _, r = standard_card()
    nobody = HostSession("AES", bytes(16), bytes(16))
    resp = exchange(r, nobody.wrap(cos.read_binary(0, 4, sfi=3)))
    assert (resp.data, resp.sw) == (b"", 0x6882)
    s = open_session(r, 1, KD, "AES")
    r.reset()  # the session keys lived in RAM only
    expect(r, cos.select_path(0x5000))
    assert s.send(r, cos.read_binary(0, 4, sfi=3)).sw == 0x6882


def test_sm_replayed_command_6988() -> None:
    _, r = standard_card()
    s = open_session(r, 1, KD, "AES")
    wrapped = s.wrap(cos.update_binary(b"once", sfi=3))
    s.unwrap(exchange(r, wrapped))
    assert exchange(r, wrapped).sw == 0x6988  # the SSC has moved on


def test_sm_errors_of_the_inner_command_come_back_protected() -> None:
    _, r = standard_card()
    s = open_session(r, 1, KD, "AES")
    resp = exchange(r, s.wrap(cos.read_binary(40, 4, sfi=3)))  # offset past the end
    assert resp.sw == 0x6B00 and resp.data[:4] == bytes.fromhex("99026B00")
    assert s.unwrap(resp).sw == 0x6B00  # DO 99 and the MAC verify
    s.expect(r, cos.read_binary(0, 2, sfi=3), data=bytes(2))  # the session goes on


def test_sm_host_rejects_a_forged_response() -> None:
    """The host really checks the card's response MAC (so every SM test above
    that unwraps a response verifies it)."""
    _, r = standard_card()
    s = open_session(r, 1, KD, "AES")
    resp = exchange(r, s.wrap(cos.read_binary(0, 4, sfi=4)))
    forged = ResponseAPDU(resp.data[:-1] + bytes([resp.data[-1] ^ 1]), resp.sw)
    ssc = s.ssc
    with pytest.raises(SmResponseError):
        s.unwrap(forged)
    s.ssc = ssc
    assert s.unwrap(resp) == ResponseAPDU(b"INIT", 0x9000)


def test_sm_host_crypto_agrees_with_pyemv_retail_mac() -> None:
    """The independent 3DES-session MAC (sm_host) against a third implementation."""
    import warnings

    from pyemv.mac import mac_iso9797_3

    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    for n in (0, 7, 8, 37):
        data = bytes(range(n))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = mac_iso9797_3(key[:8], key[8:], data, 2)
        assert retail_mac(key, data) == want


def test_shared_sm_module_agrees_with_the_independent_host() -> None:
    """cardperso.securemsg (used by the card OS and the HSM) against sm_host."""
    from cardperso.securemsg import derive_session
    from cardperso.securemsg import session_mac as card_session_mac

    rh, rc = bytes(range(16)), bytes(range(16, 32))
    for family, key, cipher in (
        ("AES", KD, AES(KD)),
        ("AES", AES_SM, AES(AES_SM)),
        ("TDES", TDES_SM, TDES(TDES_SM)),
    ):
        bs = cipher.block_size
        assert derive_session(cipher, family, len(key), rh[:bs], rc[:bs]) == derive_session_keys(
            key, family, rh[:bs], rc[:bs]
        )
        k_mac = derive_session_keys(key, family, rh[:bs], rc[:bs])[1]
        msg = b"\x01" + rh + rc
        assert card_session_mac(family, k_mac, msg) == session_mac(family, k_mac, msg)


# == GENERATE ASYMMETRIC KEY PAIR =====================================================


def _point(resp: bytes) -> bytes:
    assert resp[:5] == bytes.fromhex("7F49438641") and len(resp) == 5 + 65
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), resp[5:])  # on the curve
    return resp[5:]


def test_generate_key_pair_p1_80_then_read_public_key_p1_81() -> None:
    _, r = standard_card(MANUFACTURED)
    first = _point(expect(r, cos.generate_key_pair(6)))
    expect(r, cos.read_public_key(6), data=tlv_7f49(first))
    expect(r, cos.set_lifecycle(0x07))
    second = _point(expect(r, cos.generate_key_pair(7, cos.USE_KEY_AGREEMENT)))
    expect(r, cos.read_public_key(7), data=tlv_7f49(second))
    expect(r, cos.read_public_key(6), data=tlv_7f49(first))
    assert first != second


def tlv_7f49(point: bytes) -> bytes:
    return bytes.fromhex("7F49438641") + point


def test_generate_key_pair_again_replaces_the_pair() -> None:
    _, r = standard_card()
    first = _point(expect(r, cos.generate_key_pair(6)))
    second = _point(expect(r, cos.generate_key_pair(6)))
    assert first != second
    expect(r, cos.read_public_key(6), data=tlv_7f49(second))


def test_generate_key_pair_refused_once_personalized_6985() -> None:
    _, r = standard_card()
    first = _point(expect(r, cos.generate_key_pair(6)))
    expect(r, cos.set_lifecycle(PERSONALIZED))
    expect(r, cos.generate_key_pair(6), 0x6985)
    expect(r, cos.generate_key_pair(7), 0x6985)
    expect(r, cos.read_public_key(6), data=tlv_7f49(first))  # reading stays allowed
    expect(r, cos.read_public_key(7), 0x6A88)


@pytest.mark.parametrize(
    ("cmd", "sw"),
    [
        (apdu(0x00, 0x47, 0x81, 0x06, le=256), 0x6A88),  # no such pair
        (apdu(0x00, 0x47, 0x81, 0x01, b"\x81\x01\x02", le=256), 0x6700),
        (apdu(0x00, 0x47, 0x82, 0x06, le=256), 0x6A86),
        (apdu(0x00, 0x47, 0x80, 0x00, le=256), 0x6A86),
        (apdu(0x00, 0x47, 0x80, 0x10, le=256), 0x6A86),
        (apdu(0x00, 0x47, 0x80, 0x06, b"\x81\x01\x00", le=256), 0x6A80),  # no usage
        (apdu(0x00, 0x47, 0x80, 0x06, b"\x81\x01\x04", le=256), 0x6A80),  # SM: not for EC
        (apdu(0x00, 0x47, 0x80, 0x06, b"\x81\x01\x01", le=256), 0x6A80),  # ext auth: no
        (apdu(0x00, 0x47, 0x80, 0x06, b"\x81\x02\x02\x02", le=256), 0x6A80),
        (apdu(0x00, 0x47, 0x80, 0x06, b"\x82\x01\x02", le=256), 0x6A80),  # no tag 81
        (apdu(0x00, 0x47, 0x80, 0x06, b"\x81\x05\x02", le=256), 0x6A80),  # bad TLV
    ],
)
def test_generate_key_pair_errors(cmd: bytes, sw: int) -> None:
    _, r = standard_card()
    expect(r, cmd, sw)
    expect(r, cos.read_public_key(6), 0x6A88)  # nothing was generated


# == must-show ========================================================================


def test_transport_pin_is_refused_for_use_until_changed() -> None:
    """Issue must-show: VERIFY answers 6984 for the transport PIN until CHANGE
    REFERENCE DATA succeeds; then VERIFY works and the old value no longer does."""
    _, r = standard_card(PERSONALIZED)
    expect(r, cos.verify(1, f2("0000")), 0x6984)
    expect(r, cos.verify(1), 0x6984)
    r.reset()
    expect(r, cos.verify(1, f2("0000")), 0x6984)  # no session or reset clears it
    expect(r, cos.change_reference_data(1, f2("0000"), f2("0000")), 0x6A80)  # must change
    expect(r, cos.verify(1, f2("0000")), 0x6984)
    expect(r, cos.change_reference_data(1, f2("0000"), f2("4321")), data=b"")
    expect(r, cos.verify(1, f2("4321")))
    r.reset()
    expect(r, cos.verify(1, f2("4321")))
    expect(r, cos.verify(1, f2("0000")), 0x63C2)
    expect(r, cos.verify(1, f2("4321")))
