"""The scripted single-card session that ``make demo`` runs until the batch line
exists: one blank simulated card, initialized by logical commands, personalized
with the trivial-PIN method, locked, and shown refusing what it must refuse.

It prints every APDU with its status word and modeled time, then the totals at
the default 9,600 bit/s and after PPS. The demo key below is a fixed test value
used only here (the HSM issue replaces it with a key handle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cardperso.apdu import sw_text
from cardperso.crypto.ciphers import AES
from cardperso.crypto.mac import cmac
from cardperso.readers import cos
from cardperso.readers.base import Reader
from cardperso.readers.virtual import virtual_reader

__all__ = ["DemoResult", "run_card_demo"]

DEMO_KD = bytes.fromhex("000102030405060708090A0B0C0D0E0F")  # public test key, demo only
DEMO_ADMIN = bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F")  # public test key, demo only
AID = bytes.fromhex("F0000000C0FFEE01")


@dataclass
class DemoResult:
    serial: str
    apdus: int
    modeled_s_9600: float
    modeled_s_fast: float
    baud_fast: float
    failures: list[str]


def _session(reader: Reader, log: Callable[[str], None]) -> list[str]:
    failures: list[str] = []

    def send(label: str, apdu: bytes, want: int = 0x9000, show: bool = True) -> bytes:
        t0 = reader.elapsed
        r = reader.transmit(apdu)
        sw = int.from_bytes(r[-2:], "big")
        dt = (reader.elapsed - t0) * 1000
        if show:
            shown = apdu.hex().upper() if len(apdu) <= 24 else apdu[:22].hex().upper() + "…"
            log(f"  {label:<34} {shown:<46} -> {sw:04X} {dt:7.1f} ms  {sw_text(sw)}")
        if sw != want:
            failures.append(f"{label}: SW {sw:04X}, expected {want:04X}")
        return r[:-2]

    kd = AES(DEMO_KD)
    user_ac = cos.ac(read=cos.ALWAYS, update=cos.key_sc(1), append=cos.NEVER)
    log("Initialization (logical file commands):")
    send(
        "CREATE MF",
        cos.create_file(cos.fcp_df(0x3F00, sec=cos.ac(update=cos.key_sc(1), append=cos.key_sc(1)))),
    )
    send("CREATE DF application", cos.create_file(cos.fcp_df(0x5000, AID)))
    send(
        "CREATE EF cardholder (transparent)",
        cos.create_file(cos.fcp_transparent(0x5001, 96, sfi=1, sec=user_ac)),
    )
    send(
        "CREATE EF log (linear fixed)",
        cos.create_file(
            cos.fcp_linear(
                0x5002, 16, 5, sfi=2, sec=cos.ac(update=cos.pin_sc(1), append=cos.pin_sc(1))
            )
        ),
    )
    send(
        "PUT KEY 1 (KD, AES-128)",
        cos.put_key(
            1,
            cos.ALG_AES128,
            cos.USE_EXT_AUTH | cos.USE_INT_AUTH | cos.USE_SM,
            DEMO_KD,
            tries=10,
        ),
    )
    send(
        "PUT KEY 2 (admin key, AES-128)",
        cos.put_key(2, cos.ALG_AES128, cos.USE_EXT_AUTH | cos.USE_ADMIN, DEMO_ADMIN, tries=5),
    )
    send(
        "PUT PIN 1 (transport PIN 0000)",
        cos.put_pin(1, cos.format2("0000"), tries=3, transport=True),
    )
    send("SET LIFECYCLE INITIALIZED", cos.set_lifecycle(cos.INITIALIZED))
    log("Personalization:")
    send("SELECT by AID", cos.select_name(AID))
    send("UPDATE BINARY unauthenticated", cos.update_binary(b"X", sfi=1), want=0x6982)
    rc = send("GET CHALLENGE", cos.get_challenge(16))
    send("EXTERNAL AUTHENTICATE key 1", cos.external_authenticate(1, kd.encrypt_ecb(rc)))
    send(
        "UPDATE BINARY cardholder", cos.update_binary(b"DEMO/CARDHOLDER MS".ljust(96, b" "), sfi=1)
    )
    send("SET LIFECYCLE PERSONALIZED", cos.set_lifecycle(cos.PERSONALIZED))
    log("Checks (what a personalized card must refuse or demand):")
    send("READ MEMORY (no dump routine)", cos.read_memory(0x0000, 16), want=0x6D00)
    send("WRITE MEMORY after the lock", cos.write_memory(0x0100, b"\x00"), want=0x6986)
    send("VERIFY transport PIN", cos.verify(1, cos.format2("0000")), want=0x6984)
    send(
        "CHANGE REFERENCE DATA 0000->4321",
        cos.change_reference_data(1, cos.format2("0000"), cos.format2("4321")),
    )
    send("VERIFY wrong PIN", cos.verify(1, cos.format2("1111")), want=0x63C2)
    send("VERIFY new PIN", cos.verify(1, cos.format2("4321")))
    send("APPEND RECORD (PIN verified)", cos.append_record(b"first use".ljust(16, b"."), sfi=2))
    send("READ BINARY cardholder", cos.read_binary(0, 18, sfi=1))
    challenge = bytes(range(16))
    resp = send("INTERNAL AUTHENTICATE key 1", cos.internal_authenticate(1, challenge))
    if resp != cmac(kd, b"\x88" + challenge):
        failures.append("INTERNAL AUTHENTICATE: response does not verify")
    send("DEPERSONALIZE (no admin key auth)", cos.depersonalize(), want=0x6982)
    return failures


def run_card_demo(log: Callable[[str], None] = print, seed: int = 2026) -> DemoResult:
    """Run the session twice on identical cards: at 9,600 bit/s and after PPS."""
    slow = virtual_reader(seed, serial=bytes.fromhex("C0DE000000000001"))
    atr = slow.reset()
    log(f"ATR {atr.hex().upper()}  (T=1, {slow.baud:,.0f} bit/s)")
    failures = _session(slow, log)
    fast = virtual_reader(seed, serial=bytes.fromhex("C0DE000000000001"), ta1=0x96)
    fast.reset()
    failures += _session(fast, lambda _msg: None)
    n = slow.card.commands_processed
    result = DemoResult("C0DE000000000001", n, slow.elapsed, fast.elapsed, fast.baud, failures)
    log("")
    log(
        f"{n} APDUs; modeled card time {slow.elapsed:.3f} s at 9,600 bit/s, "
        f"{fast.elapsed:.3f} s at {fast.baud:,.0f} bit/s after PPS (TA1=96)"
    )
    log("all checks passed" if not failures else "FAILURES:\n  " + "\n  ".join(failures))
    return result
