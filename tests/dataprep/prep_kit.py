"""A bureau keystore with every key the built-in profiles and the lab profile name.

Keys are entered by a two-custodian ceremony with *known* values (derived from the
label), so tests can play the issuer (make PIN blocks, TR-31 blocks and Ki
cryptograms) and check the response data, and so the keystore - and with a
:class:`~cardperso.hsm.RequestSeededRandom` every prepared card - is the same on
every run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cardperso.crypto.ciphers import AES, TDES
from cardperso.crypto.parity import adjust_des_parity
from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretBytes, SecretStr
from cardperso.hsm import (
    KeyAlgorithm,
    KeyUsage,
    PinBlockFormat,
    RequestSeededRandom,
    Role,
    SoftHsm,
)
from cardperso.hsm.ceremony import key_check_value
from cardperso.payments import pinblock, tr31
from cardperso.payments._digits import luhn_check_digit
from cardperso.profiles.loader import parse_profile
from cardperso.profiles.schema import Profile

A128, A256, T2 = KeyAlgorithm.AES_128, KeyAlgorithm.AES_256, KeyAlgorithm.TDES_2KEY
U = KeyUsage
PASSPHRASE = SecretStr("dataprep tests, not secret")
FAST_SCRYPT = 2**10
SEED = "dataprep golden"

KEYS: dict[str, tuple[KeyAlgorithm, KeyUsage]] = {
    # the bureau's own
    "CARD.SECRET": (A128, U.CARD_SECRET),
    "ZPK.PRINT": (T2, U.PIN_ENCRYPTION),
    # debit
    "KM.DEBIT.PERSO": (A128, U.KD_MASTER),
    "KM.DEBIT.ADMIN": (A128, U.KD_MASTER),
    "IMK.DEBIT.AC": (T2, U.KD_MASTER),
    "IMK.DEBIT.SMI": (T2, U.KD_MASTER),
    "IMK.DEBIT.SMC": (T2, U.KD_MASTER),
    "PDK.DEBIT": (T2, U.PIN_VERIFICATION),
    "PVK.DEBIT": (T2, U.PIN_VERIFICATION),
    "CVK.DEBIT": (T2, U.CVK),
    # sim
    "KEK.MNO": (A128, U.KEK),
    "KM.SIM.ADM": (A128, U.KD_MASTER),
    "KM.SIM.PERSO": (A128, U.KD_MASTER),
    "ZPK.MNO": (T2, U.PIN_ENCRYPTION),
    # employee
    "KM.EMPLOYEE.ADMIN": (A128, U.KD_MASTER),
    "ZPK.HR": (T2, U.PIN_ENCRYPTION),
    # an issuer's envelope keys
    "TRANSPORT.ACME": (A128, U.TRANSPORT),
    "MAC.ACME": (A128, U.MAC),
    # lab (tests only)
    "KM.LAB.PERSO": (A128, U.KD_MASTER),
    "ZPK.LAB": (T2, U.PIN_ENCRYPTION),
    "KEK.LAB": (A256, U.KEK),
    "ISSUER.KEK.LAB": (A256, U.ISSUER_KEK),
}

LENGTH = {A128: 16, A256: 32, T2: 16}


def clear_key(label: str) -> bytes:
    """The known value of a test key (never a real key)."""
    algorithm, _ = KEYS[label]
    raw = hashlib.sha256(b"cardperso test key|" + label.encode()).digest()[: LENGTH[algorithm]]
    return adjust_des_parity(raw) if algorithm is T2 else raw


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 15, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass(frozen=True)
class Keystore:
    path: Path

    def open(self, operator: str = "tests") -> SoftHsm:
        return SoftHsm.open(
            self.path, PASSPHRASE, operator=operator, rng=RequestSeededRandom(SEED), clock=Clock()
        )


def make_keystore(directory: Path) -> Keystore:
    """A keystore holding :data:`KEYS` with their known values."""
    path = directory / "bureau.cpks"
    hsm = SoftHsm.create(
        path, PASSPHRASE, rng=RequestSeededRandom(SEED), clock=Clock(), scrypt_n=FAST_SCRYPT
    )
    with hsm.session(Role.SECURITY_OFFICER, "officer") as so:
        for label, (algorithm, usage) in KEYS.items():
            value = clear_key(label)
            first = hashlib.sha256(b"component|" + label.encode()).digest()[: len(value)]
            second = bytes(a ^ b for a, b in zip(value, first, strict=True))
            c = so.begin_ceremony(label, algorithm, usage)
            for name, part in (("alice", first), ("bob", second)):
                c.add_component(name, SecretBytes(part), key_check_value(algorithm, part))
            c.complete()
    hsm.close()
    return Keystore(path)


LAB_YAML = """
id: lab
version: 1
title: Lab card (tests only)
description: Issuer PIN blocks, a PIN the card generates, a bureau-generated key
  returned to the issuer, an issuer-supplied key in a TR-31 block.
input:
  unique: [pan]
  fields:
    - {name: pan, rule: pan, min_length: 16, max_length: 16, sample_prefix: "999999"}
    - {name: expiry, rule: expiry}
    - {name: given_name, rule: name, max_length: 40, meaning: given_name}
    - {name: family_name, rule: name, max_length: 40, meaning: family_name}
    - {name: address_line1, rule: text, max_length: 40, meaning: address_line}
    - {name: postal_code, rule: postal_code, country_field: country}
    - {name: city, rule: text, max_length: 30, meaning: city}
    - {name: country, rule: country}
    - {name: pin_block, rule: hex, min_length: 16, max_length: 16, meaning: pin_block}
    - {name: card_key, rule: hex, max_length: 400, meaning: key_cryptogram,
       description: "TR-31 key block under KEK.LAB, its ASCII in hex"}
files:
  - {name: MF, fid: "3F00", type: df}
  - name: EF.ID
    fid: "2F01"
    type: transparent
    parent: MF
    size: 32
    access: {read: always, update: "sm+key:1"}
data:
  - file: EF.ID
    content:
      - {tag: "5A", encoding: cn, field: pan}
pins:
  - {name: PIN, ref: 1, method: issuer_pin_block, length: 4, mailer: true,
     issuer: {field: pin_block, format: iso0, key: ZPK.LAB}}
  - {name: PIN2, ref: 2, method: card_generated, length: 6, min_length: 6, max_length: 8,
     mailer: true, return_to_issuer: {key: ZPK.LAB, format: iso1}}
keys:
  - {name: KD_PERSO, ref: 1, route: derived_kd, algorithm: aes128, usage: [ext_auth, sm],
     master_key: KM.LAB.PERSO}
  - {name: BANK_KEY, ref: 2, route: bureau_random, algorithm: aes128,
     usage: [ext_auth, int_auth], return_to_issuer: ISSUER.KEK.LAB, version: 3}
  - {name: ISSUER_KEY, ref: 3, route: issuer_supplied, algorithm: aes128, usage: [int_auth],
     field: card_key, transport_key: KEK.LAB}
loading: {method: logical, protection: kd, key: KD_PERSO}
letters:
  carrier:
    address: ["{given_name} {family_name}", "{address_line1}", "{postal_code} {city}"]
  pin_mailer:
    address: ["{given_name} {family_name}", "{address_line1}", "{postal_code} {city}"]
    pins: [PIN, PIN2]
"""


def lab_profile() -> Profile:
    return parse_profile(LAB_YAML, "lab.yaml")


def lab_record(pin: str, card_key: bytes, n: int = 1) -> dict[str, str]:
    """A lab-profile record: the issuer's PIN block under ZPK.LAB and its key in TR-31."""
    pan = f"99999900000{n:04d}"
    pan = pan + luhn_check_digit(pan)
    block = pinblock.encrypt_pin_block(
        TDES(clear_key("ZPK.LAB")), PinBlockFormat.ISO_0, pin, pan, SeededRandom(n)
    )
    header = tr31.KeyBlockHeader("D", "E6", "A", "N", "01", "N")
    key_block = tr31.wrap(AES(clear_key("KEK.LAB")), header, card_key, SeededRandom(n))
    return {
        "pan": pan,
        "expiry": "2912",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "address_line1": "12 St James's Square",
        "postal_code": "SW1Y 4JH",
        "city": "London",
        "country": "GB",
        "pin_block": block.hex().upper(),
        "card_key": key_block.encode().hex().upper(),
    }
