"""No clear PIN or key in anything data preparation writes, nor on the personalization line.

Batches of every product (and the lab profile) are prepared on two workers. Then
the test gathers every clear secret those cards hold - each PIN (read from the PIN
mailer through the lettershop, or unwrapped from the issuer's response data),
each card key (unwrapped from the response data, decrypted from the issuer's
cryptograms, or derived on the test's side from the known master keys) and every
key in the keystore - and searches the output folders, the HSM audit log and the
APDU trace of personalizing some of the cards for them: raw, as hex in either
case, and PINs as the format-2 block the card stores or as a JSON value. Zero hits.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
from perso_station import Station
from prep_kit import KEYS, Keystore, clear_key, lab_profile, make_keystore
from test_prepare_batch import lab_file, lab_resolver
from test_prepare_e2e import lab_record

from cardperso.crypto.ciphers import AES, TDES
from cardperso.crypto.kdf import sp800_108_counter_cmac
from cardperso.crypto.secret import SecretStr
from cardperso.dataprep.batch import prepare_file
from cardperso.dataprep.generator import write_issuer_file
from cardperso.dataprep.init_script import InitScript
from cardperso.dataprep.prepared import PreparedCard
from cardperso.dataprep.secrets import EMV_PSN
from cardperso.hsm import PinBlockFormat, Role
from cardperso.payments import pinblock, tr31
from cardperso.payments.emv_keys import derive_icc_mk_a
from cardperso.profiles.loader import load_builtin
from cardperso.readers.virtual import virtual_reader

TODAY = date(2026, 3, 15)


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Keystore:
    return make_keystore(tmp_path_factory.mktemp("keys"))


def key_spellings(value: bytes) -> list[bytes]:
    h = value.hex()
    return [value, h.encode(), h.upper().encode()]


def pin_spellings(pin: str) -> list[bytes]:
    f2 = f"2{len(pin):X}{pin}".ljust(16, "F")
    out = [f2.encode(), f2.lower().encode(), bytes.fromhex(f2), f'"{pin}"'.encode()]
    if len(pin) >= 6:  # long enough that a chance match in hex or digits is negligible
        out.append(pin.encode())
    return out


def test_no_clear_pin_or_key_anywhere(keystore: Keystore, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cards: list[tuple[str, PreparedCard, dict[str, str]]] = []
    folders = []
    for product, count in (("debit", 40), ("sim", 30), ("employee", 20)):
        src = tmp_path / f"{product}.csv"
        write_issuer_file(load_builtin(product), src, count, 11, TODAY, batch_id=f"LEAK-{product}")
        r = prepare_file(src, out, hsm=keystore.open, today=TODAY, workers=2, chunk_size=16)
        folders.append(r.folder)
        recs = _records(src)
        lines = (r.folder / "cards.jsonl").read_text().splitlines()
        cards += [(product, PreparedCard.from_line(x), recs[i]) for i, x in enumerate(lines)]
    issuer_keys = [bytes([n] * 16) for n in range(1, 11)]
    lab = [lab_record(f"{n:04d}", issuer_keys[n - 1], n) for n in range(1, 11)]
    r = prepare_file(lab_file(tmp_path / "lab.jsonl", lab), out, hsm=keystore.open,
                     today=TODAY, resolver=lab_resolver, workers=2, chunk_size=4)  # fmt: skip
    folders.append(r.folder)
    lines = (r.folder / "cards.jsonl").read_text().splitlines()
    cards += [("lab", PreparedCard.from_line(x), lab[i]) for i, x in enumerate(lines)]

    # -- every secret these cards hold ------------------------------------------------
    pins: set[str] = {
        rec["pin_block"] and _lab_pin(rec) for _, _, rec in cards if "pin_block" in rec
    }
    keys: set[bytes] = {clear_key(label) for label in KEYS} | set(issuer_keys)
    hsm = keystore.open()
    mail = hsm.session(Role.LETTERSHOP, "lettershop")
    for product, card, rec in cards:
        if card.mailer is not None:
            for p in card.mailer.pins:
                if not p.block:
                    continue  # a PIN the card generates: only the line has its block
                seen: list[str] = []

                def render(pin: SecretStr, seen: list[str] = seen) -> bytes:
                    seen.append(pin.reveal())
                    return b"letter"

                fmt = PinBlockFormat(p.format)
                mail.print_pin_mailer(mail.get_key(p.key), p.block, rec.get("pan"), fmt, render)
                pins.add(seen[0])
        for rp in card.response_pins:
            if not rp.block:
                continue
            zpk = TDES(clear_key(rp.key))
            pins.add(pinblock.decrypt_pin_block(zpk, PinBlockFormat(rp.format), rp.block, None))
        for rk in card.response_keys:
            keys.add(tr31.unwrap(AES(clear_key(rk.kek)), rk.block)[1])
        if product == "debit":
            for imk in ("IMK.DEBIT.AC", "IMK.DEBIT.SMI", "IMK.DEBIT.SMC"):
                keys.add(derive_icc_mk_a(TDES(clear_key(imk)), rec["pan"], EMV_PSN))
        if product == "sim":
            kek = AES(clear_key("KEK.MNO"))
            keys |= {kek.decrypt_ecb(bytes.fromhex(rec[f])) for f in ("ki", "opc")}
            adm = AES(clear_key("KM.SIM.ADM"))
            keys.add(sp800_108_counter_cmac(adm, b"cardperso KD", rec["iccid"].encode(), 16))
    assert len(pins) > 150 and len(keys) > 200

    # -- personalize some cards and keep the APDU trace ----------------------------------
    station = Station(hsm)
    for n, (product, card, _rec) in enumerate(cards[::9]):
        folder = next(f for f in folders if f.name == card.batch_id)
        script = InitScript.from_json(json.loads((folder / "init.json").read_text()))
        reader = virtual_reader(n, serial=bytes.fromhex(f"C0DE0000{n:08X}"))
        station.make(reader, script, card)
        assert product
    hsm.close()
    trace = b"\n".join(station.trace)

    # -- search ---------------------------------------------------------------------------
    blobs = {str(p.relative_to(tmp_path)): p.read_bytes() for f in folders for p in f.iterdir()}
    audit = keystore.path.with_name(keystore.path.name + ".audit.jsonl")
    blobs["audit log"] = audit.read_bytes()
    blobs["personalization APDU trace"] = trace
    # Status words are 4 digits too: take them out before looking for 4-digit PINs.
    blobs = {k: re.sub(rb'"expect_sw": ?"[0-9A-F]{4}"', b"", v) for k, v in blobs.items()}
    hits = [
        f"{where}: a {len(k)}-byte key"
        for where, blob in blobs.items()
        for k in keys
        if any(s in blob for s in key_spellings(k))
    ]
    hits += [
        f"{where}: a PIN of {len(p)} digits"
        for where, blob in blobs.items()
        for p in pins
        if any(s in blob for s in pin_spellings(p))
    ]
    assert hits == []


def _records(src: Path) -> list[dict[str, str]]:
    import csv

    lines = src.read_text(encoding="utf-8").splitlines()[1:]
    return list(csv.DictReader(lines))


def _lab_pin(rec: dict[str, str]) -> str:
    block = bytes.fromhex(rec["pin_block"])
    return pinblock.decrypt_pin_block(
        TDES(clear_key("ZPK.LAB")), PinBlockFormat.ISO_0, block, rec["pan"]
    )


def test_the_spellings_would_find_a_leak() -> None:
    """The search above finds a PIN or key that is there (it is not vacuous)."""
    key = bytes(range(16))
    blob = b'{"x":"' + key.hex().upper().encode() + b'"}'
    assert any(s in blob for s in key_spellings(key))
    assert any(s in b'"data":"24123' + b'4FFFFFFFFFF"' for s in pin_spellings("1234"))
    assert any(s in b'{"pin":"1234"}' for s in pin_spellings("1234"))
    assert re.search(rb"[0-9A-F]{32}", blob)
    assert lab_profile().id == "lab"
