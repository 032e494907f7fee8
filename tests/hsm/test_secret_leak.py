"""No clear key or PIN in the keystore file, the audit log or any exception text.

A representative day at the bureau runs against a soft HSM with known keys (entered
by ceremony, imported as TR-31 blocks, generated), known card keys and PINs, and
every kind of refusal. Afterwards the keystore's own contents (opened with the
passphrase) give every clear key the HSM held, the test's side computes every KD,
session key and PIN, and all of them are searched for - raw, and in hex either case
- in the keystore bytes, the audit log bytes, and the text of every exception raised
(message, repr and the chain a traceback would show). Zero hits.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from cardperso.crypto.ciphers import AES, TDES
from cardperso.crypto.ec import p256_ecdh, p256_public_key
from cardperso.crypto.kdf import sp800_108_counter_cmac
from cardperso.crypto.mac import cmac, pad_iso9797
from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretBytes, SecretStr
from cardperso.errors import CardpersoError
from cardperso.hsm import KeyAlgorithm, KeyUsage, PinBlockFormat, Role, SoftHsm
from cardperso.hsm.ceremony import key_check_value
from cardperso.hsm.keystore import Keystore
from cardperso.payments import pinblock, tr31

from .conftest import PASSPHRASE
from .support import CLEAR, IV, PAN, SERIAL, TickClock, build_kit, leaks_in_bytes, leaks_in_text

F0, F1, F3, F4 = (PinBlockFormat(n) for n in (0, 1, 3, 4))
CARD_D = bytes.fromhex("7d7dc5f71eb29ddaf80d6214632eeae03d9058af1fb6d22ed80badb62bc1a534")


def exception_text(e: BaseException) -> str:
    """What a log line or traceback could show of ``e``: message, repr, displayed chain."""
    parts = [str(e), repr(e), *map(str, e.args)]
    parts += traceback.format_exception_only(type(e), e)
    chained = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    if chained is not None:
        parts.append(exception_text(chained))
    return "\n".join(parts)


def test_no_secret_reaches_files_or_errors(tmp_path: Path, raised_messages: list[str]) -> None:
    from .support import Harness

    path = tmp_path / "bureau.cpks"
    hsm = SoftHsm.create(path, PASSPHRASE, rng=SeededRandom("leak"), clock=TickClock(),
                         scrypt_n=2**10)  # fmt: skip
    h = Harness("soft", hsm, path, hsm.audit_path)
    kit = build_kit(h)
    keys: set[bytes] = set(CLEAR.values())
    pins: set[str] = set()
    texts: list[str] = []

    def refused(call: Callable[..., object], *args: object) -> None:
        with pytest.raises(CardpersoError) as info:
            call(*args)
        texts.append(exception_text(info.value))

    so, dp, init = h.officer, h.session(Role.DATAPREP), h.session(Role.INITIALIZATION)
    pers, qc, mail = h.session(Role.PERSONALIZATION), h.session(Role.QC), h.session(Role.LETTERSHOP)

    # Keys arriving as TR-31 blocks; generated keys leaving as TR-31 blocks.
    incoming = bytes.fromhex("5DB50B454F8389ADCE573BE50861F2BF")
    keys.add(incoming)
    block = tr31.wrap(AES(CLEAR["kek-aes"]), tr31.KeyBlockHeader("D", "P0", "T", "B", "00", "E"),
                      incoming, SeededRandom(5))  # fmt: skip
    imported = so.import_key_block(kit.kek, block, "issuer-zpk")
    so.export_key_block(kit.kek, imported)
    so.export_key_block(kit.issuer_kek, kit.exportable)
    refused(lambda: so.import_key_block(kit.kek, block[:-1] + "0", "tampered"))

    # A ceremony with a typing error on the way.
    parts = [bytes.fromhex("00112233445566778899AABBCCDDEEFF"), bytes(range(16, 32))]
    keys.update(parts)
    c = so.begin_ceremony("ceremony-key", KeyAlgorithm.AES_128, KeyUsage.MAC)
    refused(lambda: c.add_component("alice", SecretBytes(parts[0]), key_check_value(
        KeyAlgorithm.AES_128, parts[1])))  # fmt: skip
    c.add_component("alice", SecretBytes(parts[0]), key_check_value(KeyAlgorithm.AES_128, parts[0]))
    refused(lambda: c.add_component("alice", SecretBytes(parts[1]), "000000"))
    c.add_component("bob", SecretBytes(parts[1]), key_check_value(KeyAlgorithm.AES_128, parts[1]))
    c.complete()

    # A batch of cards: PINs, PVVs, offsets, CVVs, card data, cryptograms, mailers.
    issuer_data = b"ICC private key CRT components and track 2 equivalent data"
    ct = AES(CLEAR["transport"]).encrypt_cbc(pad_iso9797(issuer_data, 16, 2), IV)
    for n in range(12):
        serial = SERIAL[:-1] + bytes([n])
        pan = PAN[:-2] + f"{n:02d}"
        fmt, key, name = (F4, kit.zpk_aes, "zpk-aes") if n % 3 == 0 else (F0, kit.zpk, "zpk")
        block = dp.generate_pin(key, pan, fmt, length=6 + n % 7)
        cipher = AES(CLEAR[name]) if fmt is F4 else TDES(CLEAR[name])
        pins.add(pinblock.decrypt_pin_block(cipher, fmt, block, pan))
        dp.pvv(kit.pvk, key, block, pan, fmt, "1")
        dp.ibm3624_offset(kit.pvk, key, block, pan, fmt, pan[-12:], "0123456789012345")
        dp.generate_cvv(kit.cvk, pan, "2812", "101")
        three = dp.translate_pin_block(key, kit.zpk, block, pan, fmt, F3)
        mail.print_pin_mailer(kit.zpk, three, pan, F3, lambda p: b"%PDF blind letter")
        refused(mail.print_pin_mailer, kit.zpk, three, pan, F3, _leaky_renderer)
        refused(dp.translate_pin_block, kit.zpk, kit.zpk, three, pan, F3, F1)
        refused(dp.pvv, kit.pvk, kit.zpk, three, PAN[:-1] + "9", F0, "1")
        kd = init.kd_for_initialization(kit.km_aes, serial).reveal()
        keys.add(kd)
        keys.update(
            sp800_108_counter_cmac(AES(kd), label, b"", 16)
            for label in (b"cardperso KD ENC", b"cardperso KD MAC")
        )
        pers.translate_to_card(kit.transport, ct, IV, kit.km_aes, serial)
        qc.card_cryptogram(kit.km_aes, serial, bytes(16))
        keys.add(init.kd_for_initialization(kit.km_tdes, serial).reveal())
        pers.external_auth_cryptogram(kit.km_tdes, serial, bytes(8))
        agreed = pers.ecdh_agree(p256_public_key(CARD_D), key=kit.ec if n % 2 else None)
        kdk = AES(cmac(AES(bytes(16)), p256_ecdh(CARD_D, agreed.host_public)))
        info = agreed.host_public + p256_public_key(CARD_D)
        keys.update(
            sp800_108_counter_cmac(kdk, label, info, 16)
            for label in (b"cardperso ECDH ENC", b"cardperso ECDH MAC")
        )
        pers.translate_to_session(kit.transport, ct, IV, agreed)

    # Refusals of every kind.
    refused(lambda: dp.encrypt_data(kit.zpk, b"x", IV))
    refused(lambda: dp.generate_mac(kit.kek, b"x"))
    refused(lambda: so.export_key_block(kit.km_aes, kit.exportable))
    refused(lambda: pers.kd_for_initialization(kit.km_aes, SERIAL))
    refused(lambda: init.decrypt_data(kit.transport, ct, IV))
    refused(lambda: pers.translate_to_card(kit.transport, ct[:16], IV, kit.km_aes, SERIAL))
    refused(lambda: pers.ecdh_agree(b"\x04" + bytes(64), key=kit.ec))
    refused(lambda: dp.generate_cvv(kit.cvk, "not a pan", "2812", "101"))
    refused(lambda: dp.generate_pin(kit.zpk, PAN, F0, length=13))
    refused(lambda: Keystore.open(path, SecretStr("a wrong guess")))
    hsm.close()

    # Everything the keystore holds, in clear, from the file itself.
    _, stored = Keystore.open(path, PASSPHRASE)
    keys.update(k.value.reveal() for k in stored)
    assert len(stored) >= 18 and len(pins) == 12

    texts += raised_messages
    blobs = {"keystore": path.read_bytes(), "audit log": hsm.audit_path.read_bytes()}
    leftovers = [
        p.name for p in tmp_path.iterdir() if p.name not in (path.name, hsm.audit_path.name)
    ]
    assert leftovers == []
    for name, blob in blobs.items():
        assert leaks_in_bytes(blob, keys, pins) == [], name
    for text in texts:
        assert leaks_in_text(text, keys, pins) == []
    assert len(texts) > 40


def _leaky_renderer(pin: SecretStr) -> bytes:
    raise RuntimeError(f"printer out of paper while printing PIN {pin.reveal()}")


def test_the_search_finds_what_it_looks_for() -> None:
    key, pin = bytes(range(16)), "48213907"
    for text in (
        f"key {key.hex()}",
        f"KEY {key.hex().upper()}",
        f"pin={pin}",
        repr(key.hex()[:16]),
    ):
        assert leaks_in_text(text, {key}, {pin}) != []
    for blob in (b"x" + key, key.hex().encode(), pin.encode()):
        assert leaks_in_bytes(blob, {key}, {pin}) != []
    assert leaks_in_text(str(SecretBytes(key)) + str(SecretStr(pin)), {key}, {pin}) == []
    chained = ValueError(f"inner {pin}")
    try:
        try:
            raise chained
        except ValueError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as outer:
        assert pin in exception_text(outer)
