"""Per-call host CPU of the hot paths of the line: MACs, secure messaging, the audit record.

Prints one JSON object. Each entry gives ``us_per_call`` through cardperso,
``floor_us_per_call`` for the same work done as directly as the platform allows,
measured in the same run (DESIGN.md §7), and ``ratio_to_floor``. Both sides run in
alternating rounds; the medians are reported.

* ``cmac`` - :func:`cardperso.crypto.mac.cmac` of 32 bytes under a kept AES key;
  floor: ``cryptography``'s CMAC over the same algorithm object, one context a call.
* ``session_mac`` - :func:`cardperso.securemsg.session_mac` (AES, key bytes given
  each call); floor: a new AES algorithm object and CMAC of the M2-padded data.
* ``sm_command_response`` - one protected command wrapped and its protected
  response unwrapped by an :class:`~cardperso.securemsg.SmChannel` (40 data
  bytes); floor: the primitives alone - the IV (one ECB block), a CBC encryption,
  two CMACs - each on a fresh ``cryptography`` context.
* ``audit_append`` - one :meth:`~cardperso.hsm.audit.AuditLog.append`; floor: the
  I/O and hashing a hash-chained, multi-process-safe record cannot avoid (flock,
  size check, one write of a line of the same length, unlock, SHA-256).
* ``hsm_sm_pair`` - ``card_sm_wrap`` + ``card_sm_unwrap`` through a soft HSM
  session (role check, channel lookup, two audit records); floor: the
  ``sm_command_response`` floor plus two ``audit_append`` floors.

    python bench/hsm_call.py
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import cmac as c_cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from _kit import us_per_call
from cardperso import securemsg, tlv
from cardperso.apdu import CommandAPDU
from cardperso.crypto.ciphers import AES
from cardperso.crypto.mac import cmac, pad_iso9797
from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretStr
from cardperso.hsm import KeyAlgorithm, KeyUsage, Role, SoftHsm
from cardperso.hsm.audit import AuditLog

ROUNDS = 3
ROUND_SECONDS = 0.3
KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
K_MAC = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
DATA = bytes(range(32))
SERIAL = bytes.fromhex("C0DE00000000A001")
HEADER = bytes([0x00, 0xDA, 0x01, 0x02])
PAYLOAD = bytes(range(40))
BATCH = 500


def us_per_batched_call(
    prepare: Callable[[int], object], fn: Callable[[], object], seconds: float
) -> float:
    """Like :func:`us_per_call`, with ``prepare(BATCH)`` run untimed before each batch."""
    n, spent = 0, 0.0
    while spent < seconds:
        prepare(BATCH)
        start = time.perf_counter()
        for _ in range(BATCH):
            fn()
        spent += time.perf_counter() - start
        n += BATCH
    return spent * 1e6 / n


def raw_cmac(key: bytes, data: bytes) -> bytes:
    m = c_cmac.CMAC(algorithms.AES(key))
    m.update(data)
    return m.finalize()


def main() -> None:
    t0 = time.perf_counter()
    aes = AES(KEY)
    algo = algorithms.AES(KEY)
    k_enc, k_mac = bytes(range(16)), bytes(range(16, 32))
    alg_enc = algorithms.AES(k_enc)

    def floor_cmac() -> bytes:
        m = c_cmac.CMAC(algo)
        m.update(DATA)
        return m.finalize()

    host = securemsg.SmChannel("AES", k_enc, k_mac)
    card = securemsg.SmChannel("AES", k_enc, k_mac)
    command = CommandAPDU(HEADER[0], HEADER[1], HEADER[2], HEADER[3], PAYLOAD, 0)
    responses: list[bytes] = []

    def prepare_responses(n: int) -> None:
        responses.clear()
        card.ssc = host.ssc + 1
        for _ in range(n):
            responses.append(card.wrap_response(b"", 0x9000))
            card.ssc += 1
        responses.reverse()

    def sm_round() -> None:
        host.wrap_command(command)
        host.unwrap_response(responses.pop(), 0x9000)

    def floor_sm() -> bytes:
        ecb = Cipher(alg_enc, modes.ECB()).encryptor()
        iv = ecb.update(bytes(16))
        enc = Cipher(alg_enc, modes.CBC(iv)).encryptor()
        ct = enc.update(pad_iso9797(PAYLOAD, 16, 2)) + enc.finalize()
        raw_cmac(k_mac, pad_iso9797(bytes(16) + HEADER + ct, 16, 2))
        return raw_cmac(k_mac, pad_iso9797(bytes(16) + b"\x99\x02\x90\x00", 16, 2))

    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "audit.jsonl")
        keys = [("KM.DEBIT.PERSO", "1A2B3C")]
        detail = {"channel": "card-sm/17"}

        def append() -> None:
            log.append("card_sm_wrap", "personalization", "line/module-1", keys, "ok", detail)

        append()
        line_length = log.path.stat().st_size
        fd = os.open(Path(tmp) / "floor.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        line = b"x" * (line_length - 1) + b"\n"

        def floor_audit() -> str:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                os.lseek(fd, 0, os.SEEK_END)
                os.write(fd, line)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            return hashlib.sha256(line).hexdigest()

        hsm = SoftHsm.create(
            Path(tmp) / "bench.cpks",
            SecretStr("bench passphrase"),
            rng=SeededRandom("bench hsm_call"),
            scrypt_n=2**10,
        )
        so = hsm.session(Role.SECURITY_OFFICER, "bench")
        km = so.generate_key("km", KeyAlgorithm.AES_128, KeyUsage.KD_MASTER)
        # The card's side: KD as initialization loads it, then the session keys.
        kd = AES(
            hsm.session(Role.INITIALIZATION, "bench").kd_for_initialization(km, SERIAL).reveal()
        )
        rh, rc = bytes(16), bytes(range(16))
        sk_enc, sk_mac = securemsg.derive_session(kd, "AES", 16, rh, rc)
        cc = securemsg.card_cryptogram("AES", sk_mac, rh, rc)
        pers = hsm.session(Role.PERSONALIZATION, "bench")
        channel = pers.card_sm_open(
            km, SERIAL, rh, tlv.encode(0x7C, tlv.encode(0x82, rc) + tlv.encode(0x83, cc))
        )
        card_end = securemsg.SmChannel("AES", sk_enc, sk_mac)
        answers: list[bytes] = []
        pairs_done = [0]

        def prepare_answers(n: int) -> None:
            answers.clear()
            card_end.ssc = 2 * pairs_done[0] + 1
            for _ in range(n):
                answers.append(card_end.wrap_response(b"", 0x9000) + b"\x90\x00")
                card_end.ssc += 1
            answers.reverse()
            pairs_done[0] += n

        def hsm_pair() -> None:
            pers.card_sm_wrap(channel, HEADER, PAYLOAD)
            pers.card_sm_unwrap(channel, answers.pop())

        cases: dict[str, tuple[Callable[[], float], Callable[[], float]]] = {
            "cmac": (
                lambda: us_per_call(lambda: cmac(aes, DATA), ROUND_SECONDS),
                lambda: us_per_call(floor_cmac, ROUND_SECONDS),
            ),
            "session_mac": (
                lambda: us_per_call(
                    lambda: securemsg.session_mac("AES", K_MAC, DATA), ROUND_SECONDS
                ),
                lambda: us_per_call(
                    lambda: raw_cmac(K_MAC, pad_iso9797(DATA, 16, 2)), ROUND_SECONDS
                ),
            ),
            "sm_command_response": (
                lambda: us_per_batched_call(prepare_responses, sm_round, ROUND_SECONDS),
                lambda: us_per_call(floor_sm, ROUND_SECONDS),
            ),
            "audit_append": (
                lambda: us_per_call(append, ROUND_SECONDS),
                lambda: us_per_call(floor_audit, ROUND_SECONDS),
            ),
            "hsm_sm_pair": (
                lambda: us_per_batched_call(prepare_answers, hsm_pair, ROUND_SECONDS),
                lambda: (
                    us_per_call(floor_sm, ROUND_SECONDS)
                    + 2 * us_per_call(floor_audit, ROUND_SECONDS)
                ),
            ),
        }
        samples: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in cases}
        for _ in range(ROUNDS):
            for name, (measured, floor) in cases.items():
                samples[name][0].append(measured())
                samples[name][1].append(floor())
        os.close(fd)
        log.close()
        hsm.close()
    result = {
        "benchmark": "hsm_call",
        "rounds": ROUNDS,
        "calls": {
            name: {
                "us_per_call": round(statistics.median(m), 2),
                "floor_us_per_call": round(statistics.median(f), 2),
                "ratio_to_floor": round(statistics.median(m) / statistics.median(f), 3),
            }
            for name, (m, f) in samples.items()
        },
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
