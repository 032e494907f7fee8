"""Data preparation throughput: a debit issuer file through ``prepare_file`` on both cores.

Prints one JSON object (DESIGN.md §7):

* ``records_per_s`` - records per second of wall time for ``prepare_file`` on a
  synthetic debit file of ``--records`` records (default 1,000,000): read and
  validate every record (this process), prepare the cards in ``--workers`` worker
  processes (each with its own soft HSM on the same keystore: batch calls
  ``card_secrets`` and ``generate_cvvs`` per chunk, audited), write JSON Lines in
  record order, then the manifest; start-up (three keystore openings) included;
* ``floor_records_per_s`` - the bare cryptography of the same records with
  ``cryptography`` and keys in process, on the same number of processes: per record
  the IBM 3624 PIN (TDES), the PUT PIN data field sealed (AES-CBC + HMAC-SHA256),
  the PIN mailer block (ISO 0, TDES), the PVV (TDES), CVV and iCVV (DES + TDES
  each), three EMV Option A card keys (TDES) each sealed (AES-CBC + HMAC-SHA256);
  one cipher context per operation, as straightforward code does;
* ``ratio_to_floor`` = ``records_per_s / floor_records_per_s``;
* ``peak_rss_mb`` - the highest sum of resident memory of this process and its
  worker processes, sampled every 50 ms while ``prepare_file`` runs (the file
  generation and the floor are not in it); ``peak_rss_mb_main`` this process alone.

The targets of issue 4 (at least 5,000 records/s and under 500 MB for a
1,000,000-record file) are reported as booleans. The soft HSM draws from the
system's random generator as in production. Usage::

    python bench/dataprep.py                 # 1,000,000 records: several minutes
    python bench/dataprep.py --records 20000 # a quick run
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import hmac
import json
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cardperso.crypto.secret import SecretStr
from cardperso.dataprep.batch import prepare_file
from cardperso.dataprep.generator import write_issuer_file
from cardperso.hsm import KeyAlgorithm, KeyUsage, Role, SoftHsm
from cardperso.profiles.loader import load_builtin

TODAY = date(2026, 3, 15)
PASSPHRASE = SecretStr("bench passphrase, not secret")
A128, T2 = KeyAlgorithm.AES_128, KeyAlgorithm.TDES_2KEY
KEYS = {
    "CARD.SECRET": (A128, KeyUsage.CARD_SECRET),
    "ZPK.PRINT": (T2, KeyUsage.PIN_ENCRYPTION),
    "KM.DEBIT.PERSO": (A128, KeyUsage.KD_MASTER),
    "KM.DEBIT.ADMIN": (A128, KeyUsage.KD_MASTER),
    "IMK.DEBIT.AC": (T2, KeyUsage.KD_MASTER),
    "IMK.DEBIT.SMI": (T2, KeyUsage.KD_MASTER),
    "IMK.DEBIT.SMC": (T2, KeyUsage.KD_MASTER),
    "PDK.DEBIT": (T2, KeyUsage.PIN_VERIFICATION),
    "PVK.DEBIT": (T2, KeyUsage.PIN_VERIFICATION),
    "CVK.DEBIT": (T2, KeyUsage.CVK),
}


def make_keystore(directory: Path) -> Path:
    path = directory / "bench.cpks"
    hsm = SoftHsm.create(path, PASSPHRASE, scrypt_n=2**14)
    with hsm.session(Role.SECURITY_OFFICER, "bench") as so:
        for label, (algorithm, usage) in KEYS.items():
            so.generate_key(label, algorithm, usage)
    hsm.close()
    return path


# -- the floor: the same cryptography, keys in process ------------------------------------


def _ecb(algo: algorithms.AES | TripleDES, data: bytes) -> bytes:
    ctx = Cipher(algo, modes.ECB()).encryptor()
    return ctx.update(data) + ctx.finalize()


def _seal(k_enc: bytes, k_mac: bytes, header: bytes, plain: bytes) -> bytes:
    iv = os.urandom(16)
    padded = plain + b"\x80" + bytes(15 - len(plain) % 16)
    ctx = Cipher(algorithms.AES(k_enc), modes.CBC(iv)).encryptor()
    ct = ctx.update(padded) + ctx.finalize()
    return ct + hmac.new(k_mac, header + iv + ct, hashlib.sha256).digest()[:16]


def _decimal(block: bytes, n: int) -> str:
    digits = [c for c in block.hex() if c.isdigit()]
    digits += [str(int(c, 16) - 10) for c in block.hex() if not c.isdigit()]
    return "".join(digits[:n])


def _parity(key: bytes) -> bytes:
    return bytes(b & 0xFE | (bin(b >> 1).count("1") + 1) % 2 for b in key)


def _floor_worker(args: tuple[str, int, int]) -> float:
    path, index, workers = args
    pairs: list[tuple[str, str]] = []
    with open(path, encoding="utf-8", newline="") as fh:
        next(fh)
        for n, row in enumerate(csv.DictReader(fh)):
            if n % workers == index:
                pairs.append((row["pan"], row["expiry"]))
    key = hashlib.sha256

    def t2(seed: bytes) -> TripleDES:  # a 2-key TDES key, given as K1 K2 K1
        k = key(seed).digest()[:16]
        return TripleDES(k + k[:8])

    tdes = {name: t2(name.encode()) for name in ("pdk", "zpk", "pvk")}
    imks = [t2(f"imk{i}".encode()) for i in range(3)]
    cvk_a, cvk_ab = TripleDES(bytes(range(8)) * 3), t2(b"cvk")
    k_enc, k_mac = key(b"enc").digest()[:16], key(b"mac").digest()
    start = time.perf_counter()
    for pan, expiry in pairs:
        pin = _decimal(_ecb(tdes["pdk"], bytes.fromhex(pan[3:15] + "FFFF")), 4)
        f2 = bytes.fromhex(f"24{pin}FFFFFFFFFF")
        _seal(k_enc, k_mac, b"\x80\xd8\x01\x01", bytes(15) + b"\x8f\x08" + f2)
        field = int(f"04{pin}FFFFFFFFFF", 16) ^ int("0000" + pan[-13:-1], 16)
        _ecb(tdes["zpk"], field.to_bytes(8, "big"))
        _decimal(_ecb(tdes["pvk"], bytes.fromhex(pan[4:15] + "1" + pin)), 4)
        for code in ("201", "999"):
            data = bytes.fromhex((pan + expiry + code).ljust(32, "0"))
            left = _ecb(cvk_a, data[:8])
            _ecb(cvk_ab, bytes(a ^ b for a, b in zip(left, data[8:], strict=True)))
        y = bytes.fromhex((pan + "00")[-16:])
        for imk in imks:
            kd = _parity(_ecb(imk, y + bytes(b ^ 0xFF for b in y)))
            _seal(k_enc, k_mac, b"\x80\xd8\x00\x03", bytes(12) + b"\x8f\x10" + kd)
    return time.perf_counter() - start


def floor_rate(path: Path, records: int, workers: int) -> float:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        elapsed = pool.map(_floor_worker, [(str(path), i, workers) for i in range(workers)])
    return records / max(elapsed)


# -- memory sampling ------------------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """Highest sum of resident memory of this process and its children."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_total = 0
        self.peak_main = 0
        self._halt = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self._halt.wait(0.05):
            main = _rss_kb(me)
            total = main + sum(_rss_kb(p.pid or 0) for p in multiprocessing.active_children())
            self.peak_main = max(self.peak_main, main)
            self.peak_total = max(self.peak_total, total)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=500)
    ap.add_argument("--keep", help="keep the work folder here instead of a temporary one")
    args = ap.parse_args()
    t0 = time.perf_counter()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-dataprep-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        keystore = make_keystore(work)
        src = work / "debit.csv"
        t = time.perf_counter()
        write_issuer_file(load_builtin("debit"), src, args.records, 2026, TODAY)
        generate_s = time.perf_counter() - t
        sampler = RssSampler()
        sampler.start()
        t = time.perf_counter()
        result = prepare_file(
            src,
            work / "out",
            hsm=functools.partial(SoftHsm.open, keystore, PASSPHRASE, operator="bench"),
            today=TODAY,
            workers=args.workers,
            chunk_size=args.chunk,
        )
        seconds = time.perf_counter() - t
        sampler.stop()
        assert result.prepared == args.records
        cards_bytes = (result.folder / "cards.jsonl").stat().st_size
        audit = SoftHsm.default_audit_path(keystore)
        with open(audit, "rb") as fh:
            audit_records = sum(1 for _ in fh)
        shutil.rmtree(work / "out")
        floor = floor_rate(src, args.records, max(1, args.workers))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    rate = args.records / seconds
    out = {
        "benchmark": "dataprep",
        "product": "debit",
        "records": args.records,
        "workers": args.workers,
        "chunk_size": args.chunk,
        "cpus": os.cpu_count(),
        "seconds": round(seconds, 2),
        "records_per_s": round(rate, 1),
        "floor_records_per_s": round(floor, 1),
        "ratio_to_floor": round(rate / floor, 4),
        "peak_rss_mb": round(sampler.peak_total / 1024, 1),
        "peak_rss_mb_main": round(sampler.peak_main / 1024, 1),
        "output_bytes_per_card": round(cards_bytes / args.records, 1),
        "hsm_audit_records": audit_records,
        "generate_seconds": round(generate_s, 1),
        "target_records_per_s_met": rate >= 5000,
        "target_rss_met": sampler.peak_total / 1024 < 500,
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
