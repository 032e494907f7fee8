"""Cryptographic primitives only (the "hazmat" layer); recipes live in payments/."""

from cardperso.crypto.ciphers import AES, DES, TDES, BlockCipher, CipherError
from cardperso.crypto.ec import (
    P256_ORDER,
    p256_ecdh,
    p256_generate_scalar,
    p256_public_key,
    p256_sign,
    p256_verify,
)
from cardperso.crypto.kcv import kcv, kcv_cmac
from cardperso.crypto.kdf import counter_mode_cmac, sp800_108_counter_cmac
from cardperso.crypto.mac import (
    cmac,
    mac_alg1,
    mac_alg3,
    pad_iso9797,
    retail_mac,
    unpad_m2,
    verify_mac,
)
from cardperso.crypto.parity import adjust_des_parity, has_odd_parity
from cardperso.crypto.rand import RandomSource, SeededRandom, SystemRandom
from cardperso.crypto.secret import SecretBytes, SecretStr

__all__ = [
    "AES",
    "DES",
    "P256_ORDER",
    "TDES",
    "BlockCipher",
    "CipherError",
    "RandomSource",
    "SecretBytes",
    "SecretStr",
    "SeededRandom",
    "SystemRandom",
    "adjust_des_parity",
    "cmac",
    "counter_mode_cmac",
    "has_odd_parity",
    "kcv",
    "kcv_cmac",
    "mac_alg1",
    "mac_alg3",
    "p256_ecdh",
    "p256_generate_scalar",
    "p256_public_key",
    "p256_sign",
    "p256_verify",
    "pad_iso9797",
    "retail_mac",
    "sp800_108_counter_cmac",
    "unpad_m2",
    "verify_mac",
]
