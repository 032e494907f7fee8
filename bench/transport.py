"""What the real-component paths cost: an APDU through pcscd, an HSM call through PKCS#11.

Prints one JSON object with two parts, each the same work done two ways in one
process, in alternating rounds (medians reported):

* **APDU transport.** ``inproc_us`` - one APDU round trip through the in-process
  simulated reader (:func:`cardperso.readers.virtual.virtual_reader`: ``reset()``
  once, then ``transmit()``); ``pcsc_us`` - the same APDUs through a private pcscd
  (:class:`~cardperso.readers.pcscd.PcscdRig`) to a simulated card served into a
  vpcd slot (:class:`~cardperso.readers.vpcd.VpcdSlot`), sent by
  :class:`~cardperso.readers.pcsc.PcscReader`: the path the line takes with
  ``PcscFeeder``. The served card runs the same in-process simulation, so
  ``pcsc_us`` is ``inproc_us`` plus the transport (pyscard, the pcscd socket, vpcd's
  TCP link and the card-side relay thread): ``pcsc_overhead_us`` is the difference of
  the medians, ``pcsc_to_inproc`` their ratio. The APDUs are cheap ones, so the
  transport dominates: GET DATA DF01 (the chip serial) and SELECT MF
  (:func:`cardperso.readers.cos.get_data`, :func:`cardperso.readers.cos.select_mf`),
  alternated, on a blank card (which answers SELECT MF with 6A82, file not found: a
  round trip all the same; ``transport.sw`` gives each APDU's status word, and every
  answer must carry it). Each APDU is timed by itself (``time.perf_counter``), giving medians
  and 90th percentiles, overall and per APDU.
* **HSM calls.** ``soft_ops_per_s`` and ``pkcs11_ops_per_s`` - calls per second of
  the same calls with the same known keys (entered by two-custodian ceremonies) on
  :class:`~cardperso.hsm.SoftHsm` and on :class:`~cardperso.hsm.pkcs11.Pkcs11Hsm`
  over a throwaway SoftHSM2 token (:func:`cardperso.hsm.softhsm.init_token`); both
  write one audit record per call to a file. ``pkcs11_to_soft`` = PKCS#11 rate /
  soft rate. ``hsm_same_answers`` checks that the deterministic calls answer alike
  on both backends. The calls:

  - ``generate_cvv`` - a CVV under a TDES-2KEY CVK (dataprep);
  - ``card_cryptogram`` - INTERNAL AUTHENTICATE's answer under KD derived from an
    AES-128 KM and the chip serial (personalization);
  - ``translate_pin_block`` - a format-0 PIN block from one TDES-2KEY ZPK to a
    format-3 block under another (dataprep);
  - ``generate_mac`` - AES-CMAC of 32 bytes under an AES-128 MAC key (dataprep).

A part whose component is missing (pcscd or vpcd, SoftHSM2) or fails to start is
reported as null with the reason in ``pcsc_unavailable`` / ``pkcs11_unavailable``.

    python bench/transport.py
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _kit import load_known_key, rate
from cardperso.crypto.secret import SecretStr
from cardperso.errors import CardpersoError
from cardperso.hsm import (
    Hsm,
    KeyAlgorithm,
    KeyUsage,
    PinBlockFormat,
    Role,
    SoftHsm,
)
from cardperso.readers import Reader, cos
from cardperso.readers.virtual import virtual_reader

ROUNDS = 3
INPROC_ROUND_SECONDS = 0.4
PCSC_ROUND_SECONDS = 0.8
HSM_ROUND_SECONDS = 0.5
WARMUP_APDUS = 20
CARD_SEED = "bench transport"
CARD_SERIAL = b"BENCHTR1"
APDUS = {"get_data_df01": cos.get_data(0xDF01), "select_mf": cos.select_mf()}

PAN = "4444333322221111"
SERIAL = bytes.fromhex("C0DE00000000A001")
CHALLENGE = bytes(range(16))
MAC_DATA = bytes(range(32))
KEYS = {
    "km": bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C"),
    "zpk-in": bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"),
    "zpk-out": bytes.fromhex("FEDCBA98765432100123456789ABCDEF"),
    "cvk": bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")[::-1],
    "mac": bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F"),
}
F0, F3 = PinBlockFormat.ISO_0, PinBlockFormat.ISO_3


# -- measuring ----------------------------------------------------------------------------


def time_apdus(
    reader: Reader, seconds: float, expected: dict[str, bytes], out: dict[str, list[float]]
) -> None:
    """Send the APDUs of :data:`APDUS` in turn for about ``seconds``, appending each
    round trip (µs) to ``out[name]``. RuntimeError on a status word other than
    ``expected[name]``."""
    clock = time.perf_counter
    items = list(APDUS.items())
    end = clock() + seconds
    while clock() < end:
        for name, apdu in items:
            t0 = clock()
            response = reader.transmit(apdu)
            t1 = clock()
            if response[-2:] != expected[name]:
                raise RuntimeError(f"{name} via {reader.name}: SW {response[-2:].hex().upper()}")
            out[name].append((t1 - t0) * 1e6)


def p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[8]


def summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    """Median and p90 (µs) per APDU and over all of them."""
    pooled = [x for xs in samples.values() for x in xs]
    return {
        "median_us": round(statistics.median(pooled), 2),
        "p90_us": round(p90(pooled), 2),
        "apdus": len(pooled),
        "per_apdu": {
            name: {"median_us": round(statistics.median(xs), 2), "p90_us": round(p90(xs), 2)}
            for name, xs in samples.items()
        },
    }


# -- APDU transport -----------------------------------------------------------------------


class PcscPath:
    """A private pcscd with one vpcd slot, a served simulated card in it, and a
    :class:`~cardperso.readers.pcsc.PcscReader` on it; :meth:`close` undoes it all."""

    def __init__(self) -> None:
        from cardperso.readers.pcscd import PcscdRig

        self.rig = PcscdRig(1, label=f"cardperso-bench-{os.getpid()}")
        self.slot: Any = None  # VpcdSlot, imported once the rig is up
        self.reader: Reader | None = None

    def open(self) -> Reader:
        """Start the rig, point this process at it (before its first PC/SC call),
        serve a fresh simulated card, wait until pcscd sees it, reset the reader."""
        from cardperso.errors import ConfigError, ReaderError

        try:
            self.rig.start()
        except ConfigError as e:
            raise ReaderError(f"pcscd rig did not start: {e}") from None
        self.rig.use_here()
        from cardperso.readers.pcsc import PcscReader, wait_for_card
        from cardperso.readers.vpcd import VpcdSlot

        (rig_slot,) = self.rig.slots
        card = virtual_reader(CARD_SEED, serial=CARD_SERIAL)
        self.slot = VpcdSlot(rig_slot.port, name=rig_slot.reader)
        self.slot.insert(card, card.card.atr)
        wait_for_card(rig_slot.reader, timeout=5.0)
        self.reader = PcscReader(rig_slot.reader)
        self.reader.reset()
        return self.reader

    @property
    def served(self) -> int:
        """Command APDUs the served card has answered."""
        return int(self.slot.apdus) if self.slot is not None else 0

    def close(self) -> None:
        try:
            if self.reader is not None:
                self.reader.close()
            if self.slot is not None:
                self.slot.remove()
        finally:
            self.rig.stop()


def bench_transport() -> dict[str, Any]:
    """In-process and, when a pcscd rig starts, PC/SC round trips in alternating rounds."""
    from cardperso.readers.pcscd import rig_available

    result: dict[str, Any] = {"pcsc_unavailable": None}
    local = virtual_reader(CARD_SEED, serial=CARD_SERIAL)
    local.reset()
    expected = {name: local.transmit(apdu)[-2:] for name, apdu in APDUS.items()}
    result["sw"] = {name: sw.hex().upper() for name, sw in expected.items()}
    inproc: dict[str, list[float]] = {name: [] for name in APDUS}
    pcsc: dict[str, list[float]] = {name: [] for name in APDUS}
    path: PcscPath | None = None
    remote: Reader | None = None
    missing = rig_available()
    if missing:
        result["pcsc_unavailable"] = f"pcscd/vpcd unavailable: {missing}"
    else:
        path = PcscPath()
    try:
        if path is not None:
            try:
                remote = path.open()
            except CardpersoError as e:
                result["pcsc_unavailable"] = f"pcscd rig or served card failed: {e}"
                remote = None
        for reader in (local, remote):
            for _ in range(WARMUP_APDUS):
                if reader is not None:
                    reader.transmit(cos.get_data(0xDF01))
        before = path.served if path is not None else 0
        for _ in range(ROUNDS):
            time_apdus(local, INPROC_ROUND_SECONDS, expected, inproc)
            if remote is not None:
                time_apdus(remote, PCSC_ROUND_SECONDS, expected, pcsc)
        if remote is not None and path is not None:
            result["pcsc_apdus_sent"] = sum(len(xs) for xs in pcsc.values())
            result["pcsc_apdus_served_by_card"] = path.served - before
            result["pcsc_same_responses"] = all(
                local.transmit(apdu) == remote.transmit(apdu) for apdu in APDUS.values()
            )
    finally:
        if path is not None:
            path.close()
        local.close()
    result["inproc"] = summary(inproc)
    result["pcsc"] = summary(pcsc) if all(pcsc.values()) else None
    return result


# -- HSM calls ----------------------------------------------------------------------------


def hsm_calls(hsm: Hsm) -> dict[str, Callable[[], object]]:
    """The measured calls on ``hsm``, its keys entered and its sessions opened."""
    so = hsm.session(Role.SECURITY_OFFICER, "bench")
    t2, a128 = KeyAlgorithm.TDES_2KEY, KeyAlgorithm.AES_128
    km = load_known_key(so, "km", a128, KeyUsage.KD_MASTER, KEYS["km"])
    zpk_in = load_known_key(so, "zpk-in", t2, KeyUsage.PIN_ENCRYPTION, KEYS["zpk-in"])
    zpk_out = load_known_key(so, "zpk-out", t2, KeyUsage.PIN_ENCRYPTION, KEYS["zpk-out"])
    cvk = load_known_key(so, "cvk", t2, KeyUsage.CVK, KEYS["cvk"])
    mac = load_known_key(so, "mac", a128, KeyUsage.MAC, KEYS["mac"])
    dp = hsm.session(Role.DATAPREP, "bench")
    pers = hsm.session(Role.PERSONALIZATION, "bench")
    block = dp.generate_pin(zpk_in, PAN, F0)
    return {
        "generate_cvv": lambda: dp.generate_cvv(cvk, PAN, "2812", "101"),
        "card_cryptogram": lambda: pers.card_cryptogram(km, SERIAL, CHALLENGE),
        "translate_pin_block": lambda: dp.translate_pin_block(zpk_in, zpk_out, block, PAN, F0, F3),
        "generate_mac": lambda: dp.generate_mac(mac, MAC_DATA),
    }


def bench_hsm(tmp: Path) -> dict[str, Any]:
    """The calls on the soft HSM and, when SoftHSM2 works, on PKCS#11, alternating."""
    from cardperso.hsm.softhsm import SoftHsmUnavailable, init_token

    result: dict[str, Any] = {"pkcs11_unavailable": None}
    backends: dict[str, Hsm] = {
        "soft": SoftHsm.create(tmp / "bench.cpks", SecretStr("bench passphrase"), scrypt_n=2**10)
    }
    try:
        token = init_token(tmp / "softhsm", label="cardperso-bench")
        from cardperso.hsm.pkcs11 import Pkcs11Hsm

        backends["pkcs11"] = Pkcs11Hsm.create(token.location, token.pin, tmp / "token.audit.jsonl")
    except SoftHsmUnavailable as e:
        result["pkcs11_unavailable"] = str(e)
    except CardpersoError as e:
        result["pkcs11_unavailable"] = f"PKCS#11 backend did not open: {e}"
    try:
        calls = {name: hsm_calls(hsm) for name, hsm in backends.items()}
        if "pkcs11" in calls:
            result["hsm_same_answers"] = {
                name: calls["soft"][name]() == calls["pkcs11"][name]()
                for name in ("generate_cvv", "card_cryptogram", "generate_mac")
            }
        rates: dict[str, dict[str, list[float]]] = {
            b: {name: [] for name in calls["soft"]} for b in calls
        }
        for _ in range(ROUNDS):
            for name in calls["soft"]:
                for b in calls:  # soft, then pkcs11, for each call in each round
                    rates[b][name].append(rate(calls[b][name], HSM_ROUND_SECONDS, max_batch=1024))
    finally:
        for hsm in backends.values():
            hsm.close()
    med = {b: {n: statistics.median(xs) for n, xs in per.items()} for b, per in rates.items()}
    result["soft_ops_per_s"] = {n: round(v, 1) for n, v in med["soft"].items()}
    result["pkcs11_ops_per_s"] = (
        {n: round(v, 1) for n, v in med["pkcs11"].items()} if "pkcs11" in med else None
    )
    result["pkcs11_to_soft"] = (
        {n: round(med["pkcs11"][n] / med["soft"][n], 3) for n in med["soft"]}
        if "pkcs11" in med
        else None
    )
    return result


# -- the report ---------------------------------------------------------------------------


def main() -> None:
    t0 = time.perf_counter()
    out: dict[str, Any] = {"benchmark": "transport", "rounds": ROUNDS}
    try:
        tr = bench_transport()
    except (CardpersoError, RuntimeError) as e:
        tr = {"pcsc_unavailable": f"transport bench failed: {e}", "inproc": None, "pcsc": None}
    inproc, pcsc = tr.pop("inproc"), tr.pop("pcsc")
    out["pcsc_unavailable"] = tr.pop("pcsc_unavailable")
    out["inproc_us"] = inproc["median_us"] if inproc else None
    out["pcsc_us"] = pcsc["median_us"] if pcsc else None
    out["pcsc_to_inproc"] = (
        round(pcsc["median_us"] / inproc["median_us"], 2) if inproc and pcsc else None
    )
    out["pcsc_overhead_us"] = (
        round(pcsc["median_us"] - inproc["median_us"], 2) if inproc and pcsc else None
    )
    out["inproc_p90_us"] = inproc["p90_us"] if inproc else None
    out["pcsc_p90_us"] = pcsc["p90_us"] if pcsc else None
    out["transport"] = {"inproc": inproc, "pcsc": pcsc, **tr}

    with tempfile.TemporaryDirectory(prefix="cardperso-bench-") as tmp:
        out.update(bench_hsm(Path(tmp)))

    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["notes"] = (
        "APDUs: GET DATA DF01 and SELECT MF alternated, each timed alone; pcsc_us goes "
        "PcscReader -> private pcscd -> vpcd -> a card-side thread -> the same simulated "
        "card, so pcsc_overhead_us is the transport alone. HSM: same known keys on both "
        "backends, one audit record per call to a file (no fsync); PKCS#11 runs on "
        "SoftHSM2 in process. Medians over alternating rounds; one machine, one process."
    )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
