"""Initialization by logical commands versus by memory image, per shipped product.

Prints one JSON object. For each product (debit, sim, employee), two blank cards of
the same card model (same serial, same timing parameters) are initialized in one
run, one logically (the profile's file commands, transport PINs, KD, SET LIFECYCLE)
and one from the product's image (docs/card-os.md §7.3: checks, WRITE MEMORY of the
non-blank pages, CHECKSUM MEMORY of both image ranges, reset, serial, then transport
PINs, KD, SET LIFECYCLE), both through :func:`cardperso.line.initroom.initialize_one`
exactly as the initialization room and the line do it. Every figure is the card
model's (``reader.elapsed``), counted from the powered card whose serial the feeder
has checked, so the feeder's own reset is in neither:

* ``logical_s``, ``image_s`` - modeled seconds per card at the line's rate (PPS to
  223,200 bit/s, T=1); ``saving`` = 1 - image_s / logical_s (negative: the image is
  slower); ``at_9600_bps`` the same without PPS;
* ``logical`` / ``image`` - APDUs sent (a reset counts as none), EEPROM page writes,
  and seconds by command (``write``, ``verify``, ``reset``, ``checks``...);
* ``floor`` - measured in the same run (DESIGN.md §7): ``image_pages_s``, the
  EEPROM programming time of the image's non-blank pages alone (what any route must
  at least spend putting that structure into a chip), and each route's ratio to it.

The model's parameters are docs/card-os.md §9.2; none was tuned for this bench.
Why the result differs from the chapter's "up to 30 %": docs/initialization.md.

    python bench/init.py
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from cardperso.card import TimingParams, new_card
from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretStr
from cardperso.dataprep.init_script import InitScript, build_init_script
from cardperso.hsm import RequestSeededRandom, Role, SoftHsm
from cardperso.line.bureau import provision_demo_keys
from cardperso.line.chip import KeyCache, read_serial
from cardperso.line.feeder import DEFAULT_TA1
from cardperso.line.imageinit import ImagePlan, image_pieces
from cardperso.line.initroom import initialize_one
from cardperso.profiles.loader import load_builtin
from cardperso.readers import VirtualReader

PRODUCTS = ("debit", "sim", "employee")
PASS = SecretStr("bench only, not secret")
SERIAL = bytes.fromhex("B0E1C700000000F1")

_NAMES = {
    (0x00, 0xE0): "create",
    (0x00, 0xA4): "select",
    (0x00, 0xD6): "data",
    (0x00, 0xDC): "data",
    (0x00, 0xE2): "data",
    (0x80, 0xD8): "put_key_pin",
    (0x80, 0xF0): "set_lifecycle",
    (0x80, 0xD0): "write",
    (0x80, 0xB4): "verify",
    (0x00, 0xCA): "checks",
}


class Tally:
    """A reader that books the card model's time and page writes by command."""

    def __init__(self, inner: VirtualReader) -> None:
        self.inner = inner
        self.apdus = 0
        self.seconds: dict[str, float] = defaultdict(float)
        self.pages = 0

    @property
    def name(self) -> str:
        return self.inner.name

    def _book(self, label: str, t0: float, p0: int) -> None:
        self.seconds[label] += self.inner.elapsed - t0
        self.pages += self.inner.card.eeprom.page_writes - p0

    def reset(self) -> bytes:
        t0, p0 = self.inner.elapsed, self.inner.card.eeprom.page_writes
        try:
            return self.inner.reset()
        finally:
            self._book("reset", t0, p0)

    def transmit(self, apdu: bytes) -> bytes:
        t0, p0 = self.inner.elapsed, self.inner.card.eeprom.page_writes
        self.apdus += 1
        try:
            return self.inner.transmit(apdu)
        finally:
            self._book(_NAMES.get((apdu[0] & 0xF3, apdu[1]), "other"), t0, p0)

    @property
    def elapsed(self) -> float:
        return self.inner.elapsed

    def close(self) -> None:
        self.inner.close()


def _one(
    keys: KeyCache, script: InitScript, plan: ImagePlan | None, ta1: int | None
) -> dict[str, Any]:
    reader = VirtualReader(new_card(SERIAL, seed="bench init"), ta1=ta1)
    reader.reset()
    read_serial(reader)  # the feeder's check: powered, serial known
    tally = Tally(reader)
    t0 = reader.elapsed
    initialize_one(tally, SERIAL, keys, script, SeededRandom("bench init"), image=plan)
    reader.close()
    return {
        "s": reader.elapsed - t0,
        "apdus": tally.apdus,
        "page_writes": tally.pages,
        "by_command_s": {k: round(v, 4) for k, v in sorted(tally.seconds.items())},
    }


def _product(keys: KeyCache, product: str) -> dict[str, Any]:
    script = build_init_script(load_builtin(product))
    plan = ImagePlan.offline(script)
    pieces = image_pieces(plan.image)
    page = plan.image.layout.page_size
    floor_s = sum(len(d) for _, d in pieces) // page * TimingParams().eeprom_page_write_s
    out: dict[str, Any] = {}
    for rate, ta1 in (("line", DEFAULT_TA1), ("9600", None)):
        logical = _one(keys, script, None, ta1)
        image = _one(keys, script, plan, ta1)
        fig = {
            "logical_s": round(logical["s"], 4),
            "image_s": round(image["s"], 4),
            "saving": round(1 - image["s"] / logical["s"], 3),
        }
        if rate == "line":
            out.update(fig)
            out["logical"] = {k: v for k, v in logical.items() if k != "s"}
            out["image"] = {
                **{k: v for k, v in image.items() if k != "s"},
                "pieces": len(pieces),
                "bytes_written": sum(len(d) for _, d in pieces),
                "range_bytes_verified": sum(len(d) for _, d in plan.image.segments),
            }
            out["floor"] = {
                "image_pages_s": round(floor_s, 4),
                "ratio_logical_to_floor": round(logical["s"] / floor_s, 2),
                "ratio_image_to_floor": round(image["s"] / floor_s, 2),
            }
        else:
            out["at_9600_bps"] = fig
    return out


def main() -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cardperso-bench-init-"))
    hsm = SoftHsm.create(
        work / "k.cpks", PASS, rng=RequestSeededRandom("bench init"), scrypt_n=2**10
    )
    try:
        provision_demo_keys(hsm)
        with hsm.session(Role.INITIALIZATION, "bench init") as session:
            keys = KeyCache(session)
            products = {p: _product(keys, p) for p in PRODUCTS}
    finally:
        hsm.close()
    return {
        "bench": "init",
        "rate_bps": {"line": 223_200, "slow": 9_600},
        "protocol": "T=1",
        "products": products,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
