"""Soft HSM throughput against bare ``cryptography`` doing the same primitive work.

Prints one JSON object. For each operation: ``ops_per_s`` through the soft HSM
(session, role check, key lookup, usage check, recipe, audit record written to a
file) and ``ratio_to_floor`` = that rate / the rate of the same primitive work done
with direct ``cryptography`` calls on in-process keys, measured in the same run
(DESIGN.md §7). Both sides run in alternating rounds; the medians are reported.

The floors, per operation:

* kd_derivation - KBKDFCMAC (SP 800-108 counter mode, AES-CMAC) of the serial;
* random_pin_block - 8 random bytes, a format-0 block, one TDES-ECB encryption;
* pvv - TDES-ECB decryption of the PIN block, TDES-ECB encryption of the TSP;
* cvv - one DES-ECB and one TDES-ECB encryption;
* translate_pin_block - TDES-ECB decryption and encryption;
* translate_to_card - AES-CBC decryption, three KBKDFCMAC derivations (KD, K_ENC,
  K_MAC), AES-CBC encryption and an AES-CMAC;
* ecdh - P-256 ECDH with a loaded private key, then AES-CMAC extraction and two
  KBKDFCMAC expansions.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import cmac as c_cmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFCMAC, CounterLocation, Mode
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from _kit import load_known_key, rate
from cardperso.crypto.ec import p256_public_key
from cardperso.crypto.mac import pad_iso9797
from cardperso.crypto.secret import SecretStr
from cardperso.hsm import (
    KeyAlgorithm,
    KeyUsage,
    PinBlockFormat,
    Role,
    SoftHsm,
)

ROUNDS = 3
ROUND_SECONDS = 0.35
PAN = "4444333322221111"
SERIAL = bytes.fromhex("C0DE00000000A001")
IV = bytes(range(16))
F0 = PinBlockFormat.ISO_0
KEYS = {
    "km": bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C"),
    "transport": bytes.fromhex("000102030405060708090A0B0C0D0E0F"),
    "zpk": bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"),
    "pvk": bytes.fromhex("FEDCBA98765432100123456789ABCDEF"),
    "cvk": bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")[::-1],
}


def kbkdf(key: bytes, label: bytes, context: bytes, length: int = 16) -> bytes:
    return KBKDFCMAC(
        algorithms.AES, Mode.CounterMode, length, 4, 4, CounterLocation.BeforeFixed,
        label, context, None,
    ).derive(key)  # fmt: skip


def ecb(algo: algorithms.AES | TripleDES, data: bytes, decrypt: bool = False) -> bytes:
    c = Cipher(algo, modes.ECB())
    ctx = c.decryptor() if decrypt else c.encryptor()
    return ctx.update(data) + ctx.finalize()


def cbc(key: bytes, data: bytes, iv: bytes, decrypt: bool = False) -> bytes:
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    ctx = c.decryptor() if decrypt else c.encryptor()
    return ctx.update(data) + ctx.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    m = c_cmac.CMAC(algorithms.AES(key))
    m.update(data)
    return m.finalize()


def main() -> None:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        hsm = SoftHsm.create(
            Path(tmp) / "bench.cpks", SecretStr("bench passphrase"), scrypt_n=2**10
        )
        so = hsm.session(Role.SECURITY_OFFICER, "bench")
        t2, a128 = KeyAlgorithm.TDES_2KEY, KeyAlgorithm.AES_128
        km = load_known_key(so, "km", a128, KeyUsage.KD_MASTER, KEYS["km"])
        transport = load_known_key(so, "transport", a128, KeyUsage.TRANSPORT, KEYS["transport"])
        zpk = load_known_key(so, "zpk", t2, KeyUsage.PIN_ENCRYPTION, KEYS["zpk"])
        pvk = load_known_key(so, "pvk", t2, KeyUsage.PIN_VERIFICATION, KEYS["pvk"])
        cvk = load_known_key(so, "cvk", t2, KeyUsage.CVK, KEYS["cvk"])
        ec_key = so.generate_key("bureau-ec", KeyAlgorithm.EC_P256, KeyUsage.KEY_AGREEMENT)
        init = hsm.session(Role.INITIALIZATION, "bench")
        dp = hsm.session(Role.DATAPREP, "bench")
        pers = hsm.session(Role.PERSONALIZATION, "bench")
        block = dp.generate_pin(zpk, PAN, F0)
        issuer_ct = cbc(KEYS["transport"], pad_iso9797(b"issuer record " * 6, 16, 2), IV)
        card_public = p256_public_key(bytes(31) + b"\x2a")

        # Floors: the same primitives with keys in process.
        tdes_zpk, tdes_pvk, tdes_cvk = (
            TripleDES(KEYS[k] + KEYS[k][:8]) for k in ("zpk", "pvk", "cvk")
        )
        des_a = TripleDES(KEYS["cvk"][:8] * 3)
        ec_private = ec.derive_private_key(7, ec.SECP256R1())
        ec_public = ec_private.public_key().public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint
        )

        def floor_pin() -> bytes:
            digits = os.urandom(8)
            pin = "".join(str(b % 10) for b in digits[:4])
            field = int(f"04{pin}FFFFFFFFFF", 16) ^ int("0000" + PAN[-13:-1], 16)
            return ecb(tdes_zpk, field.to_bytes(8, "big"))

        def floor_translate() -> bytes:
            cbc(KEYS["transport"], issuer_ct, IV, decrypt=True)
            kd = kbkdf(KEYS["km"], b"cardperso KD", SERIAL)
            k_enc = kbkdf(kd, b"cardperso KD ENC", b"")
            k_mac = kbkdf(kd, b"cardperso KD MAC", b"")
            out = cbc(k_enc, issuer_ct, bytes(16))
            return aes_cmac(k_mac, out)

        def floor_ecdh() -> bytes:
            peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), card_public)
            z = ec_private.exchange(ec.ECDH(), peer)
            kdk = aes_cmac(bytes(16), z)
            info = ec_public + card_public
            return kbkdf(kdk, b"cardperso ECDH ENC", info) + kbkdf(kdk, b"cardperso ECDH MAC", info)

        pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
            "kd_derivation": (
                lambda: init.kd_for_initialization(km, SERIAL),
                lambda: kbkdf(KEYS["km"], b"cardperso KD", SERIAL),
            ),
            "random_pin_block": (
                lambda: dp.generate_pin(zpk, PAN, F0),
                floor_pin,
            ),
            "pvv": (
                lambda: dp.pvv(pvk, zpk, block, PAN, F0, "1"),
                lambda: (
                    ecb(tdes_zpk, block, True),
                    ecb(tdes_pvk, bytes.fromhex(PAN[4:15] + "11234")),
                ),
            ),
            "cvv": (
                lambda: dp.generate_cvv(cvk, PAN, "2812", "101"),
                lambda: ecb(tdes_cvk, ecb(des_a, bytes.fromhex(PAN))),
            ),
            "translate_pin_block": (
                lambda: dp.translate_pin_block(zpk, zpk, block, PAN, F0, PinBlockFormat.ISO_3),
                lambda: ecb(tdes_zpk, ecb(tdes_zpk, block, True)),
            ),
            "translate_to_card": (
                lambda: pers.translate_to_card(transport, issuer_ct, IV, km, SERIAL),
                floor_translate,
            ),
            "ecdh": (
                lambda: pers.ecdh_agree(card_public, key=ec_key),
                floor_ecdh,
            ),
        }
        samples: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in pairs}
        for _ in range(ROUNDS):
            for name, (through_hsm, floor) in pairs.items():
                samples[name][0].append(rate(through_hsm, ROUND_SECONDS))
                samples[name][1].append(rate(floor, ROUND_SECONDS))
        audit_records = hsm.audit_anchor()[1]
        hsm.close()
    result = {
        "benchmark": "hsm",
        "backend": "soft",
        "rounds": ROUNDS,
        "operations": {
            name: {
                "ops_per_s": round(statistics.median(h), 1),
                "floor_ops_per_s": round(statistics.median(f), 1),
                "ratio_to_floor": round(statistics.median(h) / statistics.median(f), 4),
            }
            for name, (h, f) in samples.items()
        },
        "audit_records_written": audit_records,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
