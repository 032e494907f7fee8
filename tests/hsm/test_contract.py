"""The HSM contract: what every backend must do, run on each backend in BACKENDS."""

from __future__ import annotations

import threading

import pytest
from cryptography.hazmat.primitives import cmac as crypto_cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode

from cardperso import tlv
from cardperso.crypto.ciphers import AES, TDES
from cardperso.crypto.ec import p256_ecdh, p256_public_key
from cardperso.crypto.kdf import sp800_108_counter_cmac
from cardperso.crypto.mac import cmac, pad_iso9797, unpad_m2
from cardperso.crypto.secret import SecretStr
from cardperso.hsm import (
    HsmError,
    KeyAlgorithm,
    KeyNotFoundError,
    KeyUsage,
    PermissionDeniedError,
    PinBlockFormat,
    Role,
)
from cardperso.hsm.ceremony import key_check_value
from cardperso.payments import pinblock
from cardperso.readers import cos
from cardperso.readers.virtual import virtual_reader

from .support import CLEAR, IV, PAN, SERIAL, H, Harness, Kit, build_kit, watch_pin

F0, F1, F3, F4 = (PinBlockFormat.ISO_0, PinBlockFormat.ISO_1, PinBlockFormat.ISO_3,
                  PinBlockFormat.ISO_4)  # fmt: skip


@pytest.fixture
def kit(hsm: Harness) -> Kit:
    return build_kit(hsm)


def kbkdf(key: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """The SP 800-108 counter-mode CMAC KDF from the cryptography package (an oracle)."""
    return KBKDFCMAC(
        algorithms.AES, Mode.CounterMode, length, 4, 4, CounterLocation.BeforeFixed,
        label, context, None,
    ).derive(key)  # fmt: skip


def aes_cbc(key: bytes, data: bytes, iv: bytes = bytes(16)) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    c = crypto_cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


# -- key management ---------------------------------------------------------------------


def test_generate_list_get_destroy(hsm: Harness) -> None:
    so = hsm.officer
    made = {
        alg: so.generate_key(f"k-{alg.value.lower()}", alg, usage)
        for alg, usage in (
            (KeyAlgorithm.AES_128, KeyUsage.MAC),
            (KeyAlgorithm.AES_256, KeyUsage.KEK),
            (KeyAlgorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION),
            (KeyAlgorithm.TDES_3KEY, KeyUsage.KD_MASTER),
            (KeyAlgorithm.EC_P256, KeyUsage.KEY_AGREEMENT),
        )
    }
    listed = so.list_keys()
    assert [h.label for h in listed] == sorted(h.label for h in made.values())
    for handle in made.values():
        assert len(handle.kcv) == 6 and int(handle.kcv, 16) >= 0
        assert so.get_key(handle.label) == handle
        assert handle.exportable is False and handle.version == "00"
        # A handle has no field that could hold the key's bytes.
        assert set(type(handle).__slots__) == {
            "label", "algorithm", "usage", "kcv", "version", "exportable"
        }  # fmt: skip
    so.destroy_key(made[KeyAlgorithm.AES_128])
    with pytest.raises(KeyNotFoundError):
        so.get_key(made[KeyAlgorithm.AES_128].label)
    with pytest.raises(HsmError, match="already exists"):
        so.generate_key("k-aes-256", KeyAlgorithm.AES_256, KeyUsage.KEK)


def test_bad_labels_and_versions_are_refused(hsm: Harness) -> None:
    for label in ("", " x", "a" * 65, "new\nline", "k;drop"):
        with pytest.raises(HsmError, match="label"):
            hsm.officer.generate_key(label, KeyAlgorithm.AES_128, KeyUsage.MAC)
    with pytest.raises(HsmError, match="version"):
        hsm.officer.generate_key("v", KeyAlgorithm.AES_128, KeyUsage.MAC, version="1")


def test_forged_or_stale_handles_are_refused(hsm: Harness, kit: Kit) -> None:
    from dataclasses import replace

    dp = hsm.session(Role.DATAPREP)
    # A handle claiming MAC usage for the PIN key changes nothing: the stored usage rules.
    forged = replace(kit.zpk, usage=KeyUsage.MAC)
    with pytest.raises(HsmError):
        dp.generate_mac(forged, b"data")
    with pytest.raises(KeyNotFoundError):
        dp.generate_mac(replace(kit.mac, kcv="000000"), b"data")
    with pytest.raises(KeyNotFoundError):
        dp.generate_mac(replace(kit.mac, label="nope"), b"data")


def test_tdes_keys_have_odd_parity_and_kcvs_match_the_published_method(hsm: Harness) -> None:
    handle = hsm.load("kcv-check", KeyAlgorithm.TDES_2KEY, KeyUsage.MAC, CLEAR["km-tdes"])
    # E(0) under 0123456789ABCDEFFEDCBA9876543210 begins 08D7B4 (X9.24-1 legacy KCV).
    assert handle.kcv == "08D7B4"
    aes = hsm.load("kcv-aes", KeyAlgorithm.AES_128, KeyUsage.MAC, CLEAR["km-aes"])
    assert aes.kcv == aes_cmac(CLEAR["km-aes"], bytes(16))[:3].hex().upper()


# -- card keys ----------------------------------------------------------------------------


def test_kd_aes_is_sp800_108_cmac_of_the_serial(hsm: Harness, kit: Kit) -> None:
    init = hsm.session(Role.INITIALIZATION)
    kd = init.kd_for_initialization(kit.km_aes, SERIAL)
    assert kd.reveal() == kbkdf(CLEAR["km-aes"], b"cardperso KD", SERIAL, 16)
    kd256 = init.kd_for_initialization(kit.km_aes256, SERIAL)
    assert kd256.reveal() == kbkdf(CLEAR["km-aes256"], b"cardperso KD", SERIAL, 32)
    assert "redacted" in repr(kd) and CLEAR["km-aes"].hex() not in repr(kd)


def test_card_cryptograms_match_the_simulated_card(hsm: Harness, kit: Kit) -> None:
    """KD from the HSM loaded into a simulated card: the card's answers match the HSM's."""
    init = hsm.session(Role.INITIALIZATION)
    qc = hsm.session(Role.QC)
    reader = virtual_reader(7, serial=SERIAL)
    reader.reset()

    def send(apdu: bytes) -> bytes:
        r = reader.transmit(apdu)
        assert r[-2:] == b"\x90\x00", r[-2:].hex()
        return r[:-2]

    serial = tlv.to_dict(send(cos.get_data(0xDF01)))[0xDF01]
    assert serial == SERIAL
    kd = init.kd_for_initialization(kit.km_aes, serial)
    send(cos.create_file(cos.fcp_df(0x3F00)))
    send(cos.put_key(1, cos.ALG_AES128, cos.USE_EXT_AUTH | cos.USE_INT_AUTH, kd.reveal()))
    challenge = bytes(range(32))
    response = send(cos.internal_authenticate(1, challenge))
    assert qc.card_cryptogram(kit.km_aes, serial, challenge) == response
    assert qc.verify_card_cryptogram(kit.km_aes, serial, challenge, response)
    assert not qc.verify_card_cryptogram(kit.km_aes, serial, challenge, bytes(32))
    card_challenge = send(cos.get_challenge(16))
    send(
        cos.external_authenticate(
            1, qc.external_auth_cryptogram(kit.km_aes, serial, card_challenge)
        )
    )


def test_card_cryptogram_is_cmac_of_88_and_the_challenge_under_kd(hsm: Harness, kit: Kit) -> None:
    pers = hsm.session(Role.PERSONALIZATION)
    kd = kbkdf(CLEAR["km-aes"], b"cardperso KD", SERIAL, 16)
    challenge = bytes(range(48))
    expected = aes_cmac(kd, b"\x88" + challenge)
    assert pers.card_cryptogram(kit.km_aes, SERIAL, challenge) == expected
    ext = pers.external_auth_cryptogram(kit.km_aes, SERIAL, challenge[:16])
    assert ext == AES(kd).encrypt_ecb(challenge[:16])
    # The answer to INTERNAL AUTHENTICATE never doubles as an EXTERNAL AUTHENTICATE one.
    assert pers.card_cryptogram(kit.km_aes, SERIAL, challenge[:16]) != ext
    for bad in (b"", bytes(65)):
        with pytest.raises(HsmError, match="challenge"):
            pers.card_cryptogram(kit.km_aes, SERIAL, bad)
    with pytest.raises(HsmError, match="16 bytes"):
        pers.external_auth_cryptogram(kit.km_aes, SERIAL, bytes(8))


def test_kd_tdes_is_emv_option_a_over_the_serial(hsm: Harness, kit: Kit) -> None:
    from cardperso.payments.emv_keys import derive_icc_mk_a

    init = hsm.session(Role.INITIALIZATION)
    kd = init.kd_for_initialization(kit.km_tdes, H("1234567890123445"))
    assert kd.reveal() == derive_icc_mk_a(TDES(CLEAR["km-tdes"]), "12345678901234", "45")
    pers = hsm.session(Role.PERSONALIZATION)
    kd = TDES(init.kd_for_initialization(kit.km_tdes, SERIAL).reveal())
    assert pers.card_cryptogram(kit.km_tdes, SERIAL, bytes(16)) == cmac(kd, b"\x88" + bytes(16))
    with pytest.raises(HsmError, match="8-byte"):
        pers.card_cryptogram(kit.km_tdes, bytes(7), bytes(8))


def test_translate_to_card(hsm: Harness, kit: Kit) -> None:
    """Issuer data under the transport key comes out encrypted and MACed under KD keys."""
    data = b"issuer record: track 2 equivalent, ICC private key parts ..."
    issuer_ct = aes_cbc(CLEAR["transport"], pad_iso9797(data, 16, 2), IV)
    for role in (Role.PERSONALIZATION, Role.DATAPREP):
        sealed = hsm.session(role).translate_to_card(
            kit.transport, issuer_ct, IV, kit.km_aes, SERIAL
        )
        kd = kbkdf(CLEAR["km-aes"], b"cardperso KD", SERIAL, 16)
        k_enc = kbkdf(kd, b"cardperso KD ENC", b"", 16)
        k_mac = kbkdf(kd, b"cardperso KD MAC", b"", 16)
        assert sealed.cryptogram == aes_cbc(k_enc, pad_iso9797(data, 16, 2))
        assert sealed.mac == aes_cmac(k_mac, sealed.cryptogram)[:8]
        cryptogram, mac = sealed  # it is also a (cryptogram, mac) pair
        assert len(mac) == 8 and cryptogram == sealed.cryptogram
    # 3DES KD: K_ENC/K_MAC are 2-key TDES from the same KDF with TDES-CMAC.
    sealed = hsm.session(Role.PERSONALIZATION).translate_to_card(
        kit.transport, issuer_ct, IV, kit.km_tdes, SERIAL
    )
    kd_t = TDES(
        hsm.session(Role.INITIALIZATION).kd_for_initialization(kit.km_tdes, SERIAL).reveal()
    )
    k_enc = TDES(sp800_108_counter_cmac(kd_t, b"cardperso KD ENC", b"", 16))
    assert unpad_m2(k_enc.decrypt_cbc(sealed.cryptogram), 8) == data


def test_translate_refuses_bad_ciphertext(hsm: Harness, kit: Kit) -> None:
    pers = hsm.session(Role.PERSONALIZATION)
    bad_padding = aes_cbc(CLEAR["transport"], bytes(32), IV)
    for ct, iv in ((bad_padding, IV), (bytes(15), IV), (b"", IV), (bad_padding, bytes(8))):
        with pytest.raises(HsmError):
            pers.translate_to_card(kit.transport, ct, iv, kit.km_aes, SERIAL)


def test_encrypt_and_decrypt_data_round_trip(hsm: Harness, kit: Kit) -> None:
    dp = hsm.session(Role.DATAPREP)
    ct = dp.encrypt_data(kit.transport, b"name and address", IV)
    assert ct == aes_cbc(CLEAR["transport"], pad_iso9797(b"name and address", 16, 2), IV)
    assert dp.decrypt_data(kit.transport, ct, IV) == b"name and address"


def test_emv_cryptogram_of_known_card(hsm: Harness, kit: Kit) -> None:
    # pyemv-hsm-option-a-psn (tests/vectors/payments_emv_keys.json)
    ac = hsm.session(Role.QC).emv_cryptogram(
        kit.imk, "12345678901234567", "45", H("1234567890123456"),
        H("0123456789ABCDEF0123456789ABCDEF"),
    )  # fmt: skip
    assert ac == H("19C1FBC83EBDC0D5")
    with pytest.raises(HsmError, match="A or B"):
        hsm.session(Role.QC).emv_cryptogram(
            kit.imk, "1234567890123456", "00", bytes(8), b"", method="C"
        )


# -- ECDH ----------------------------------------------------------------------------------


def test_ecdh_agreement_with_static_and_ephemeral_keys(hsm: Harness, kit: Kit) -> None:
    pers = hsm.session(Role.PERSONALIZATION)
    card_d = H("7d7dc5f71eb29ddaf80d6214632eeae03d9058af1fb6d22ed80badb62bc1a534")
    card_q = p256_public_key(card_d)
    bureau_q = pers.public_key(kit.ec)
    for static in (True, False):
        keys = pers.ecdh_agree(card_q, key=kit.ec if static else None, context=b"job 1")
        if static:
            assert keys.host_public == bureau_q
        # The card's side of the same agreement (documented KDF) gives the same keys.
        z = p256_ecdh(card_d, keys.host_public)
        kdk = cmac(AES(bytes(16)), z)
        info = keys.host_public + card_q + b"job 1"
        enc = kbkdf(kdk, b"cardperso ECDH ENC", info, 16)
        mac = kbkdf(kdk, b"cardperso ECDH MAC", info, 16)
        assert keys.enc.kcv == key_check_value(KeyAlgorithm.AES_128, enc)
        assert keys.mac.kcv == key_check_value(KeyAlgorithm.AES_128, mac)
        assert keys.enc.usage is KeyUsage.SESSION_ENC and keys.mac.usage is KeyUsage.SESSION_MAC
        data = b"personalization data for one card"
        ct = aes_cbc(CLEAR["transport"], pad_iso9797(data, 16, 2), IV)
        sealed = pers.translate_to_session(kit.transport, ct, IV, keys)
        assert sealed.cryptogram == aes_cbc(enc, pad_iso9797(data, 16, 2))
        assert sealed.mac == aes_cmac(mac, sealed.cryptogram)[:8]
    # Session keys are not stored keys and die with the session.
    assert not any(h.label.startswith("session/") for h in pers.list_keys())
    other = hsm.hsm.session(Role.PERSONALIZATION, "other station")
    with pytest.raises(KeyNotFoundError):
        other.translate_to_session(kit.transport, ct, IV, keys)
    pers.destroy_key(keys.enc)
    with pytest.raises(KeyNotFoundError):
        pers.translate_to_session(kit.transport, ct, IV, keys)
    with pytest.raises(PermissionDeniedError):
        pers.destroy_key(kit.km_aes)  # personalization destroys only its session keys


def test_ecdh_refuses_invalid_points(hsm: Harness, kit: Kit) -> None:
    pers = hsm.session(Role.PERSONALIZATION)
    off_curve = b"\x04" + bytes(31) + b"\x01" + bytes(31) + b"\x01"
    for point in (off_curve, b"\x04" + bytes(64), b"", bytes(65)):
        with pytest.raises(HsmError):
            pers.ecdh_agree(point, key=kit.ec)


# -- PINs ---------------------------------------------------------------------------------


def clear_pin(block: bytes, key: str, fmt: PinBlockFormat, pan: str | None = PAN) -> str:
    cipher = AES(CLEAR[key]) if fmt is F4 else TDES(CLEAR[key])
    return watch_pin(pinblock.decrypt_pin_block(cipher, fmt, block, pan))


@pytest.mark.parametrize("fmt", [F0, F1, F3, F4])
@pytest.mark.parametrize("length", [4, 6, 12])
def test_generate_pin(hsm: Harness, kit: Kit, fmt: PinBlockFormat, length: int) -> None:
    dp = hsm.session(Role.DATAPREP)
    key, name = (kit.zpk_aes, "zpk-aes") if fmt is F4 else (kit.zpk, "zpk")
    blocks = {dp.generate_pin(key, PAN, fmt, length=length) for _ in range(5)}
    assert len(blocks) == 5
    pins = [clear_pin(b, name, fmt) for b in blocks]
    assert all(len(p) == length and p.isdecimal() for p in pins)


def test_generate_pin_refuses_bad_lengths(hsm: Harness, kit: Kit) -> None:
    dp = hsm.session(Role.DATAPREP)
    for length in (3, 13, 0):
        with pytest.raises(HsmError, match="4 to 12"):
            dp.generate_pin(kit.zpk, PAN, F0, length=length)
    with pytest.raises(HsmError, match="TDES"):
        dp.generate_pin(kit.zpk_aes, PAN, F0)  # an AES key cannot make a format 0 block


def test_pvv_offset_and_translation(hsm: Harness, kit: Kit) -> None:
    from cardperso.payments import ibm3624
    from cardperso.payments.pvv import pvv

    dp, qc = hsm.session(Role.DATAPREP), hsm.session(Role.QC)
    block = dp.generate_pin(kit.zpk, PAN, F0, length=6)
    pin = clear_pin(block, "zpk", F0)
    value = dp.pvv(kit.pvk, kit.zpk, block, PAN, F0, "1")
    assert value == pvv(TDES(CLEAR["pvk"]), PAN, "1", pin)
    assert qc.verify_pvv(kit.pvk, kit.zpk, block, PAN, F0, "1", value)
    wrong = f"{(int(value) + 1) % 10000:04d}"
    assert not qc.verify_pvv(kit.pvk, kit.zpk, block, PAN, F0, "1", wrong)
    table = "0123456789012345"
    offset = dp.ibm3624_offset(kit.pvk, kit.zpk, block, PAN, F0, PAN[-12:], table)
    assert offset == ibm3624.offset_from_pin(TDES(CLEAR["pvk"]), PAN[-12:], table, pin)
    assert qc.verify_ibm3624(kit.pvk, kit.zpk, block, PAN, F0, PAN[-12:], table, offset)
    natural = dp.ibm3624_pin(kit.pvk, kit.zpk, PAN, F3, PAN[-12:], table, pin_length=6)
    assert clear_pin(natural, "zpk", F3) == ibm3624.natural_pin(
        TDES(CLEAR["pvk"]), PAN[-12:], table, 6
    )
    again = dp.ibm3624_pin(kit.pvk, kit.zpk, PAN, F0, PAN[-12:], table, pin_length=6, offset=offset)
    assert clear_pin(again, "zpk", F0) == pin
    with pytest.raises(HsmError, match="pin_length"):
        dp.ibm3624_pin(kit.pvk, kit.zpk, PAN, F0, PAN[-12:], table, pin_length=4, offset=offset)
    # Translate to format 4 under the AES key and back: the PIN survives.
    four = dp.translate_pin_block(kit.zpk, kit.zpk_aes, block, PAN, F0, F4)
    assert clear_pin(four, "zpk-aes", F4) == pin
    three = hsm.session(Role.PERSONALIZATION).translate_pin_block(
        kit.zpk_aes, kit.zpk, four, PAN, F4, F3
    )
    assert clear_pin(three, "zpk", F3) == pin


def test_translation_into_format_1_from_a_pan_bound_block_is_refused(
    hsm: Harness, kit: Kit
) -> None:
    dp = hsm.session(Role.DATAPREP)
    block = dp.generate_pin(kit.zpk, PAN, F0)
    with pytest.raises(HsmError, match="format 1"):
        dp.translate_pin_block(kit.zpk, kit.zpk, block, PAN, F0, F1)
    one = dp.generate_pin(kit.zpk, None, F1)
    assert len(dp.translate_pin_block(kit.zpk, kit.zpk, one, PAN, F1, F0)) == 8


def test_pin_block_decoding_failures_give_one_message(hsm: Harness, kit: Kit) -> None:
    dp = hsm.session(Role.DATAPREP)
    messages = set()
    for garbage in (bytes(8), b"\xff" * 8, H("0123456789ABCDEF")):
        with pytest.raises(HsmError) as info:
            dp.pvv(kit.pvk, kit.zpk, garbage, PAN, F0, "1")
        messages.add(str(info.value))
    assert len(messages) == 1  # no oracle on which check failed


def test_pin_mailer_is_the_one_clear_pin_exit(hsm: Harness, kit: Kit) -> None:
    dp = hsm.session(Role.DATAPREP)
    block = dp.generate_pin(kit.zpk, PAN, F0, length=8)
    pin = clear_pin(block, "zpk", F0)
    seen: list[SecretStr] = []

    def render(p: SecretStr) -> bytes:
        seen.append(p)
        return b"%PDF-1.7 PIN letter " + p.reveal().encode()

    lettershop = hsm.session(Role.LETTERSHOP)
    doc = lettershop.print_pin_mailer(kit.zpk, block, PAN, F0, render)
    assert doc.endswith(pin.encode()) and seen[0] == pin and "redacted" in repr(seen[0])

    def broken(p: SecretStr) -> bytes:
        raise RuntimeError(f"printer jammed while printing {p.reveal()}")

    with pytest.raises(HsmError, match="renderer failed") as info:
        lettershop.print_pin_mailer(kit.zpk, block, PAN, F0, broken)
    assert pin not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    with pytest.raises(HsmError, match="bytes"):
        lettershop.print_pin_mailer(kit.zpk, block, PAN, F0, lambda p: "text")  # type: ignore[arg-type,return-value]
    for role in Role:
        if role is not Role.LETTERSHOP:
            with pytest.raises(PermissionDeniedError):
                hsm.session(role).print_pin_mailer(kit.zpk, block, PAN, F0, render)


# -- CVV and MAC -----------------------------------------------------------------------


def test_cvv_and_mac(hsm: Harness, kit: Kit) -> None:
    from cardperso.crypto.ciphers import DES
    from cardperso.payments.cvv import cvv

    dp, qc = hsm.session(Role.DATAPREP), hsm.session(Role.QC)
    value = dp.generate_cvv(kit.cvk, PAN, "2812", "101")
    assert value == cvv(DES(CLEAR["cvk"][:8]), TDES(CLEAR["cvk"]), PAN, "2812", "101")
    assert qc.verify_cvv(kit.cvk, PAN, "2812", "101", value)
    assert not qc.verify_cvv(kit.cvk, PAN, "2812", "101", f"{(int(value) + 1) % 1000:03d}")
    mac = dp.generate_mac(kit.mac, b"batch header")
    assert mac == aes_cmac(CLEAR["mac-aes"], b"batch header")[:8]
    assert qc.verify_mac(kit.mac, b"batch header", mac)
    assert qc.verify_mac(kit.mac, b"batch header", mac[:4])
    assert not qc.verify_mac(kit.mac, b"batch header!", mac)
    assert len(dp.generate_mac(kit.mac, b"x", length=16)) == 16
    with pytest.raises(HsmError, match="MAC length"):
        dp.generate_mac(kit.mac, b"x", length=3)
    with pytest.raises(HsmError, match="MAC length"):
        qc.verify_mac(kit.mac, b"x", b"abc")
    from cardperso.hsm import MacAlgorithm

    retail = dp.generate_mac(kit.mac_tdes, b"x", algorithm=MacAlgorithm.RETAIL)
    assert qc.verify_mac(kit.mac_tdes, b"x", retail, algorithm=MacAlgorithm.RETAIL)


def test_recipe_input_errors_arrive_as_hsm_errors(hsm: Harness, kit: Kit) -> None:
    dp = hsm.session(Role.DATAPREP)
    with pytest.raises(HsmError) as info:
        dp.generate_cvv(kit.cvk, "12AB", "2812", "101")
    assert info.value.operation == "generate_cvv"
    with pytest.raises(HsmError):
        dp.generate_pin(kit.zpk, PAN, 2)  # type: ignore[arg-type]


# -- sessions and threads ------------------------------------------------------------------


def test_closed_sessions_refuse_work(hsm: Harness, kit: Kit) -> None:
    s = hsm.hsm.session(Role.DATAPREP, "short-lived")
    s.close()
    with pytest.raises(HsmError, match="closed"):
        s.generate_mac(kit.mac, b"x")
    with pytest.raises(HsmError, match="operator"):
        hsm.hsm.session(Role.DATAPREP, "")
    live = hsm.hsm.session(Role.DATAPREP, "still open")
    hsm.hsm.close()
    with pytest.raises(HsmError, match="closed"):
        live.generate_mac(kit.mac, b"x")


def test_threads_share_one_hsm(hsm: Harness, kit: Kit) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            so = hsm.hsm.session(Role.SECURITY_OFFICER, f"officer {n}")
            dp = hsm.hsm.session(Role.DATAPREP, f"dataprep {n}")
            for i in range(10):
                so.generate_key(f"t{n}-{i}", KeyAlgorithm.AES_128, KeyUsage.MAC)
                dp.generate_pin(kit.zpk, PAN, F0)
                dp.generate_mac(kit.mac, b"%d" % i)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    labels = {h.label for h in hsm.officer.list_keys()}
    assert {f"t{n}-{i}" for n in range(6) for i in range(10)} <= labels
