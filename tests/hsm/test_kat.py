"""Known-answer tests through the HSM: every recipe with its published vectors.

The vectors are the ones the recipe tests use (tests/vectors/*.json, each with its
source); here each one goes in through the HSM's own API - keys entered by a
ceremony or a TR-31 key block, PINs only ever as PIN blocks - and the HSM's answer
must be the published one.
"""

from __future__ import annotations

from typing import Any

import pytest

from cardperso.crypto.ciphers import AES, TDES
from cardperso.crypto.kdf import sp800_108_counter_cmac
from cardperso.crypto.mac import cmac
from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretBytes
from cardperso.hsm import (
    HsmError,
    KeyAlgorithm,
    KeyHandle,
    KeyUsage,
    PinBlockFormat,
    Role,
    SoftHsm,
)
from cardperso.hsm.ceremony import key_check_value
from cardperso.hsm.keystore import Keystore, StoredKey
from cardperso.payments import pinblock

from .conftest import PASSPHRASE
from .support import H, Harness, TickClock, load_vectors, vid, watch_key, watch_pin

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EMV = load_vectors("payments_emv_keys")
PVV = load_vectors("payments_pvv")
CVV = load_vectors("payments_cvv")
IBM = [v for v in load_vectors("payments_ibm3624") if v["function"] != "decimalize_table"]
PINBLOCK = load_vectors("payments_pinblock")
CMAC = load_vectors("crypto_cmac")
TR31 = load_vectors("payments_tr31", "key_blocks")
ECDH = load_vectors("crypto_ec", "ecdh")

T2, T3 = KeyAlgorithm.TDES_2KEY, KeyAlgorithm.TDES_3KEY
A128, A256 = KeyAlgorithm.AES_128, KeyAlgorithm.AES_256
ZPK = H("C1D0F8FB4958670DBA40AB1F3752EF0D")  # any TDES key: carries vector PINs in
F0, F1, F3, F4 = (PinBlockFormat(n) for n in (0, 1, 3, 4))


def sym(clear: bytes) -> KeyAlgorithm:
    return {16: T2, 24: T3}[len(clear)]


def double(key: str) -> bytes:
    """A single-length DES key as the equivalent 2-key TDES key K||K."""
    raw = H(key)
    return raw + raw if len(raw) == 8 else raw


def pin_block_in(pin: str, pan: str, fmt: PinBlockFormat = F0) -> bytes:
    """What the issuer would send: the vector PIN in a block under the ZPK."""
    watch_pin(pin)
    return pinblock.encrypt_pin_block(TDES(ZPK), fmt, pin, pan, SeededRandom(pin))


@pytest.fixture
def zpk(hsm: Harness) -> KeyHandle:
    return hsm.load("zpk", T2, KeyUsage.PIN_ENCRYPTION, ZPK)


# -- EMV: ICC master key (Option A over the chip serial) and application cryptograms --------


@pytest.mark.parametrize("v", [v for v in EMV if v["method"] == "A" and "icc_mk" in v], ids=vid)
def test_emv_option_a_kd(hsm: Harness, v: dict[str, Any]) -> None:
    km = hsm.load("km", T2, KeyUsage.KD_MASTER, H(v["imk"]))
    serial = H((v["pan"] + v["psn"])[-16:].rjust(16, "0"))
    kd = hsm.session(Role.INITIALIZATION).kd_for_initialization(km, serial)
    assert kd.reveal() == H(v["icc_mk"])


@pytest.mark.parametrize("v", [v for v in EMV if "ac" in v], ids=vid)
def test_emv_application_cryptogram(hsm: Harness, v: dict[str, Any]) -> None:
    imk = hsm.load("imk", T2, KeyUsage.EMV_IMK, H(v["imk"]))
    ac = hsm.session(Role.QC).emv_cryptogram(
        imk, v["pan"], v["psn"], H(v["r"]), H(v["ac_data"]),
        method=v["method"], padding=v["ac_padding"],
    )  # fmt: skip
    assert ac == H(v["ac"])


# -- PINs -------------------------------------------------------------------------------


@pytest.mark.parametrize("v", PVV, ids=vid)
def test_pvv(hsm: Harness, zpk: KeyHandle, v: dict[str, Any]) -> None:
    pvk = hsm.load("pvk", T2, KeyUsage.PIN_VERIFICATION, H(v["key"]))
    block = pin_block_in(v["pin"], v["pan"])
    dp = hsm.session(Role.DATAPREP)
    assert dp.pvv(pvk, zpk, block, v["pan"], F0, v["pvki"]) == v["pvv"]
    assert hsm.session(Role.QC).verify_pvv(pvk, zpk, block, v["pan"], F0, v["pvki"], v["pvv"])


@pytest.mark.parametrize("v", IBM, ids=vid)
def test_ibm3624(hsm: Harness, zpk: KeyHandle, v: dict[str, Any]) -> None:
    pdk = hsm.load("pdk", T2, KeyUsage.PIN_VERIFICATION, double(v["key"]))
    dp = hsm.session(Role.DATAPREP)
    args = (v["validation_data"], v["decimalization_table"])
    pad = v["pad"]
    watch_pin(v["pin"])
    if v["function"] == "natural_pin":
        block = dp.ibm3624_pin(pdk, zpk, None, F1, *args, pin_length=v["pin_length"], pad=pad)
        assert pinblock.decrypt_pin_block(TDES(ZPK), F1, block, None) == v["pin"]
    elif v["function"] == "pin_from_offset":
        n = len(v["offset"])
        block = dp.ibm3624_pin(pdk, zpk, None, F1, *args, pin_length=n, offset=v["offset"], pad=pad)
        assert pinblock.decrypt_pin_block(TDES(ZPK), F1, block, None) == v["pin"]
    else:
        block = pin_block_in(v["pin"], "4000001234562", F3)
        assert (
            dp.ibm3624_offset(pdk, zpk, block, "4000001234562", F3, *args, pad=pad) == (v["offset"])
        )
        assert hsm.session(Role.QC).verify_ibm3624(
            pdk, zpk, block, "4000001234562", F3, *args, v["offset"], pad=pad
        )


FORMAT0_ENCODE = [v for v in PINBLOCK if v["function"] == "encode_format0"]
CLEAR_DECODES = [
    v for v in PINBLOCK if v["function"] in ("decode_format0", "decode_format1", "decode_format3")
]
FORMAT4_DECRYPT = [v for v in PINBLOCK if v["function"] == "decrypt_format4"]
FORMAT4_REJECT = [
    v for v in PINBLOCK if v["function"] == "reject_decrypt_format4" and len(v["key"]) in (32, 64)
]
CLEAR_REJECT = [
    v for v in PINBLOCK if v["function"] in ("reject_decode_format0", "reject_decode_format3")
]


@pytest.mark.parametrize("v", FORMAT0_ENCODE, ids=vid)
def test_translation_to_format_0_gives_the_published_block(
    hsm: Harness, zpk: KeyHandle, v: dict[str, Any]
) -> None:
    """A PIN arrives as a format 4 block; the HSM's format 0 block is the published one."""
    aes = H("00112233445566778899AABBCCDDEEFF")
    zpk4 = hsm.load("zpk4", A128, KeyUsage.PIN_ENCRYPTION, aes)
    watch_pin(v["pin"])
    four = pinblock.encrypt_format4(AES(aes), v["pin"], v["pan"], SeededRandom(1))
    out = hsm.session(Role.DATAPREP).translate_pin_block(zpk4, zpk, four, v["pan"], F4, F0)
    assert TDES(ZPK).decrypt_ecb(out) == H(v["block"])


@pytest.mark.parametrize("v", CLEAR_DECODES, ids=vid)
def test_published_clear_blocks_are_read(hsm: Harness, zpk: KeyHandle, v: dict[str, Any]) -> None:
    fmt = PinBlockFormat(int(v["function"][-1]))
    watch_pin(v["pin"])
    block = TDES(ZPK).encrypt_ecb(H(v["block"]))
    pan = v.get("pan", "4000001234562")
    aes = H("00112233445566778899AABBCCDDEEFF")
    zpk4 = hsm.load("zpk4", A128, KeyUsage.PIN_ENCRYPTION, aes)
    four = hsm.session(Role.DATAPREP).translate_pin_block(zpk, zpk4, block, pan, fmt, F4)
    assert pinblock.decrypt_format4(AES(aes), four, pan) == v["pin"]


@pytest.mark.parametrize("v", FORMAT4_DECRYPT, ids=vid)
def test_published_format4_blocks_are_read(hsm: Harness, zpk: KeyHandle, v: dict[str, Any]) -> None:
    key4 = hsm.load("k4", A128, KeyUsage.PIN_ENCRYPTION, H(v["key"]))
    watch_pin(v["pin"])
    out = hsm.session(Role.DATAPREP).translate_pin_block(key4, zpk, H(v["block"]), v["pan"], F4, F3)
    assert pinblock.decrypt_pin_block(TDES(ZPK), F3, out, v["pan"]) == v["pin"]


@pytest.mark.parametrize("v", FORMAT4_REJECT + CLEAR_REJECT, ids=vid)
def test_published_bad_blocks_are_refused_alike(
    hsm: Harness, zpk: KeyHandle, v: dict[str, Any]
) -> None:
    dp = hsm.session(Role.DATAPREP)
    if v["function"] == "reject_decrypt_format4":
        src, fmt, block = hsm.load("k4", A128, KeyUsage.PIN_ENCRYPTION, H(v["key"])), F4, v["block"]
    else:
        src, fmt = zpk, PinBlockFormat(int(v["function"][-1]))
        block = TDES(ZPK).encrypt_ecb(H(v["block"])).hex()
    with pytest.raises(
        HsmError, match=f"^HSM translate_pin_block: not a valid format {int(fmt)} PIN block$"
    ):
        dp.translate_pin_block(src, zpk, H(block), v["pan"], fmt, F0)


# -- card verification values and MACs ----------------------------------------------------


@pytest.mark.parametrize("v", CVV, ids=vid)
def test_cvv(hsm: Harness, v: dict[str, Any]) -> None:
    cvk = hsm.load("cvk", T2, KeyUsage.CVK, H(v["cvk_a"] + v["cvk_b"]))
    dp = hsm.session(Role.DATAPREP)
    assert dp.generate_cvv(cvk, v["pan"], v["expiry"], v["service_code"]) == v["cvv"]
    assert hsm.session(Role.QC).verify_cvv(cvk, v["pan"], v["expiry"], v["service_code"], v["cvv"])


@pytest.mark.parametrize("v", CMAC, ids=vid)
def test_cmac(hsm: Harness, v: dict[str, Any]) -> None:
    key = H(v["key"])
    alg = {("AES", 16): A128, ("AES", 32): A256}.get((v["algorithm"], len(key))) or sym(key)
    mac_key = hsm.load("mac", alg, KeyUsage.MAC, key)
    tag = H(v["tag"])
    out = hsm.session(Role.DATAPREP).generate_mac(mac_key, H(v["message"]), length=len(tag))
    assert out == tag
    assert hsm.session(Role.QC).verify_mac(mac_key, H(v["message"]), tag)


# -- TR-31 key blocks -------------------------------------------------------------------------

_IMPORTABLE_USAGES = {"P0": KeyUsage.PIN_ENCRYPTION, "K0": KeyUsage.KEK, "M3": KeyUsage.MAC,
                      "D0": KeyUsage.TRANSPORT}  # fmt: skip


@pytest.mark.parametrize("v", TR31, ids=vid)
def test_tr31_published_blocks_import(hsm: Harness, v: dict[str, Any]) -> None:
    kbpk, key = H(v["kbpk"]), watch_key(H(v["key"]))
    kek_alg = {16: T2, 24: T3, 32: A256}[len(kbpk)]
    kek = hsm.load("kbpk", kek_alg, KeyUsage.KEK, kbpk)
    code = v["block"][5:7]
    so = hsm.officer
    if code in _IMPORTABLE_USAGES and len(key) in (16, 24, 32):
        handle = so.import_key_block(kek, v["block"], "imported")
        assert handle.usage is _IMPORTABLE_USAGES[code]
        assert handle.kcv == key_check_value(handle.algorithm, key)
        assert handle.version == v["block"][9:11]
        assert handle.exportable is (v["block"][11] == "E")
    else:  # single-length DES keys and DUKPT base keys have no place in this HSM
        with pytest.raises(HsmError):
            so.import_key_block(kek, v["block"], "imported")
        assert "imported" not in {h.label for h in so.list_keys()}
    tampered = v["block"][:-1] + ("0" if v["block"][-1] != "0" else "1")
    with pytest.raises(HsmError, match="MAC"):
        so.import_key_block(kek, tampered, "tampered")


# -- ECDH (soft backend: the CAVS private key goes into the keystore file) ---------------------


@pytest.mark.parametrize("v", ECDH, ids=vid)
def test_ecdh_cavs(tmp_path: Any, v: dict[str, Any]) -> None:
    path = tmp_path / "ec.cpks"
    SoftHsm.create(path, PASSPHRASE, rng=SeededRandom(0), scrypt_n=2**10).close()
    d = watch_key(H(v["d_iut"]))
    store, keys = Keystore.open(path, PASSPHRASE)
    handle = KeyHandle("iut", KeyAlgorithm.EC_P256, KeyUsage.KEY_AGREEMENT,
                       key_check_value(KeyAlgorithm.EC_P256, d))  # fmt: skip
    store.save([*keys, StoredKey(handle, SecretBytes(d))], SeededRandom(1))
    with SoftHsm.open(path, PASSPHRASE, rng=SeededRandom(2), clock=TickClock()) as hsm:
        pers = hsm.session(Role.PERSONALIZATION, "kat")
        public = pers.public_key(handle)
        if "qiut_x" in v:
            assert public == b"\x04" + H(v["qiut_x"]) + H(v["qiut_y"])
        card = b"\x04" + H(v["qcavs_x"]) + H(v["qcavs_y"])
        agreed = pers.ecdh_agree(card, key=handle)
        kdk = AES(cmac(AES(bytes(16)), H(v["z"])))
        enc = sp800_108_counter_cmac(kdk, b"cardperso ECDH ENC", public + card, 16)
        assert agreed.enc.kcv == key_check_value(KeyAlgorithm.AES_128, enc)
