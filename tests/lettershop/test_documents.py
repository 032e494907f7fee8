"""Golden carriers and PIN mailers, read back with poppler's ``pdftotext``.

One fixed letter is printed as a carrier and as a PIN mailer (its PIN block made here
under a print key entered by key ceremony, so the PIN is known). The extracted text
must equal the golden files in ``golden/`` (``pdftotext -layout``); the words' boxes
(``-bbox``) and crops (``-x -y -W -H``) show where things are: the address in the
address field, the PIN only in the blind-print area. The carrier's Code 128 is read
back from its bars.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from cardperso.crypto.ciphers import TDES
from cardperso.crypto.rand import SeededRandom
from cardperso.crypto.secret import SecretBytes, SecretStr
from cardperso.errors import HsmError
from cardperso.hsm import (
    HsmSession,
    KeyAlgorithm,
    KeyUsage,
    PinBlockFormat,
    RequestSeededRandom,
    Role,
    SoftHsm,
)
from cardperso.hsm.ceremony import key_check_value
from cardperso.lettershop.carrier import CarrierPrinter
from cardperso.lettershop.config import CarrierLayout, MailerLayout, Rect
from cardperso.lettershop.layout import FontSet
from cardperso.lettershop.mailer import MailerPrinter
from cardperso.lettershop.pieces import Letter, MailerBlock, carrier_code
from cardperso.payments.pinblock import encrypt_pin_block

from . import code128
from .support import crop_text, page_text, pages_words, pdftotext

GOLDEN = Path(__file__).parent / "golden"
DAY = date(2026, 3, 9)
PAN = "4761739999999990"
ZPK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
KNOWN_PINS = {"PIN1": "4821", "PUK1": "73910264", "PIN2": "0550", "PUK2": "18260937"}
pytestmark = pytest.mark.realcomponent


def letter(pins: tuple[MailerBlock, ...] = ()) -> Letter:
    return Letter(
        batch_id=12,
        seq=345,
        record_ref="DEBIT-7/0000345",
        pan_masked="476173******9990",
        chip_serial="823C5DA900000159",
        presort=("DE", "80", "331"),
        card_offset_mm=85.0,
        address=("Greta Yılmaz", "Goethestraße 7", "Hinterhaus", "80331 München", "DE"),
        greeting="Dear Greta Yılmaz,",
        carrier_template="carrier-debit",
        mailer_address=("Greta Yılmaz", "Goethestraße 7", "Hinterhaus", "80331 München", "DE"),
        mailer_template="pin-mailer-standard",
        mailer_delay_days=3,
        pins=pins,
        pan=PAN,
    )


@pytest.fixture
def print_key(tmp_path: Path) -> Iterator[tuple[SoftHsm, HsmSession]]:
    """A bureau HSM whose print key was entered in clear by two custodians (known here)."""
    hsm = SoftHsm.create(
        tmp_path / "k.cpks",
        SecretStr("documents test, not secret"),
        rng=RequestSeededRandom("docs"),
        scrypt_n=2**10,
    )
    first = SeededRandom("component").random_bytes(16)
    second = bytes(a ^ b for a, b in zip(ZPK, first, strict=True))
    with hsm.session(Role.SECURITY_OFFICER, "officer") as so:
        c = so.begin_ceremony("ZPK.PRINT", KeyAlgorithm.TDES_2KEY, KeyUsage.PIN_ENCRYPTION)
        for name, part in (("alice", first), ("bob", second)):
            c.add_component(name, SecretBytes(part), key_check_value(KeyAlgorithm.TDES_2KEY, part))
        c.complete()
    session = hsm.session(Role.LETTERSHOP, "lettershop")
    yield hsm, session
    session.close()
    hsm.close()


def block(pin: str, fmt: PinBlockFormat = PinBlockFormat.ISO_0) -> bytes:
    return encrypt_pin_block(TDES(ZPK), fmt, pin, PAN, SeededRandom("pad"))


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if not path.exists():  # first run: write it for review, and fail
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        pytest.fail(f"golden file {path} written: review it")
    assert text == path.read_text(encoding="utf-8")


def print_carrier(tmp_path: Path, layout: CarrierLayout | None = None) -> Path:
    printer = CarrierPrinter(layout or CarrierLayout(), FontSet(), "ACME-ISSUER", DAY)
    x = letter()
    assert printer.check(x) is None
    assert printer.add(x, carrier_code(12, 345, x.chip_serial)) == 1
    path = tmp_path / "carrier.pdf"
    path.write_bytes(printer.finish())
    return path


def test_golden_carrier_name_and_address_in_the_window(poppler: str, tmp_path: Path) -> None:
    path = print_carrier(tmp_path)
    golden("carrier.txt", pdftotext(path, "-layout"))
    window = CarrierLayout().address
    text = crop_text(path, 1, window)
    assert [line for line in text.splitlines() if line.strip()][1:] == list(letter().address)
    words = pages_words(path)[0]
    for w in ("Greta", "Yılmaz", "Goethestraße", "Hinterhaus", "80331", "München"):
        boxes = [x for x in words if x.text == w]
        assert boxes and boxes[0].inside(window), w
    assert "4761739999999990" not in page_text(path, 1)  # never the PAN


def test_the_carriers_code_reads_back_as_batch_record_and_chip_serial(
    poppler: str, tmp_path: Path
) -> None:
    path = print_carrier(tmp_path)
    assert code128.read_code(path) == "CP1:12:345:823C5DA900000159"
    assert "CP1:12:345:823C5DA900000159" in crop_text(path, 1, CarrierLayout().code)


def test_the_card_sits_where_the_settings_put_it(poppler: str, tmp_path: Path) -> None:
    def label_top(layout: CarrierLayout) -> float:
        words = pages_words(print_carrier(tmp_path, layout))[0]
        return next(w for w in words if w.text == "ending").y1

    moved = label_top(CarrierLayout(card_y_mm=90)) - label_top(CarrierLayout())
    assert moved == pytest.approx(5 * 72 / 25.4, abs=0.05)  # 85 mm -> 90 mm


def test_code128_table_agrees_with_the_drawing_library() -> None:
    from reportlab.graphics.barcode import code128 as rl

    width = {c: str(i) for i, c in enumerate("abcd", 1)}
    for value, pattern in rl._patterns.items():
        ours = code128.STOP if value == 106 else code128.PATTERNS[value]
        assert "".join(width[ch.lower()] for ch in pattern) == ours, value


def test_golden_pin_mailer_the_pin_only_in_the_blind_area(
    poppler: str, tmp_path: Path, print_key: tuple[SoftHsm, HsmSession]
) -> None:
    _hsm, session = print_key
    x = letter((MailerBlock("PIN", "ZPK.PRINT", 0, block("4821")),))
    printer = MailerPrinter(session, MailerLayout(), FontSet(), "ACME-ISSUER")
    path = tmp_path / "mailer.pdf"
    path.write_bytes(printer.print(x, "M12-0000345", DAY))
    golden("pin-mailer.txt", pdftotext(path, "-layout"))
    blind = MailerLayout().blind
    words = pages_words(path)[0]
    pins = [w for w in words if "4821" in w.text]
    assert len(pins) == 1 and pins[0].text == "4821" and pins[0].inside(blind)
    inside = [w.text for w in words if w.inside(blind)]
    assert inside == ["Inner", "sheet", "PIN", "4821"]
    assert "4821" in crop_text(path, 1, blind)
    above = Rect(x_mm=0, y_mm=0, w_mm=210, h_mm=blind.y_mm)
    below = Rect(x_mm=0, y_mm=blind.bottom_mm, w_mm=210, h_mm=297 - blind.bottom_mm)
    assert "4821" not in crop_text(path, 1, above) + crop_text(path, 1, below)
    assert "Greta Yılmaz" in crop_text(path, 1, MailerLayout().address)
    assert code128.read_code(path) == "M12-0000345"  # the envelope id, no card data


def test_a_sim_mailer_prints_four_pins_each_beside_its_name(
    poppler: str, tmp_path: Path, print_key: tuple[SoftHsm, HsmSession]
) -> None:
    _hsm, session = print_key
    pins = tuple(
        MailerBlock(name, "ZPK.PRINT", 1, block(pin, PinBlockFormat.ISO_1))
        for name, pin in KNOWN_PINS.items()
    )
    printer = MailerPrinter(session, MailerLayout(), FontSet(), "MNO")
    path = tmp_path / "sim.pdf"
    path.write_bytes(printer.print(letter(pins), "M1-0000001", DAY))
    blind = MailerLayout().blind
    lines = [ln.split() for ln in crop_text(path, 1, blind, "-layout").splitlines() if ln.strip()]
    assert lines[1:] == [[name, pin] for name, pin in KNOWN_PINS.items()]
    words = pages_words(path)[0]
    for pin in KNOWN_PINS.values():
        assert [w.inside(blind) for w in words if w.text == pin] == [True]
    audit = (tmp_path / "k.cpks.audit.jsonl").read_text(encoding="utf-8")
    assert audit.count('"print_pin_mailer"') == 4  # one audited HSM call per PIN


def test_the_mailers_length_says_nothing_about_the_pins_digits(
    tmp_path: Path, print_key: tuple[SoftHsm, HsmSession]
) -> None:
    _hsm, session = print_key
    printer = MailerPrinter(session, MailerLayout(), FontSet(), "ACME-ISSUER")
    sizes = {
        len(printer.print(letter((MailerBlock("PIN", "ZPK.PRINT", 0, block(p)),)), "M-1", DAY))
        for p in ("0000", "1111", "8888", "4821")
    }
    assert len(sizes) == 1


def test_a_failing_renderer_quotes_no_pin(
    tmp_path: Path, print_key: tuple[SoftHsm, HsmSession]
) -> None:
    _hsm, session = print_key
    narrow = MailerLayout(code=Rect(x_mm=20, y_mm=268, w_mm=4, h_mm=16))  # no room for a code
    printer = MailerPrinter(session, narrow, FontSet(), "ACME-ISSUER")
    x = letter((MailerBlock("PIN", "ZPK.PRINT", 0, block("4821")),))
    with pytest.raises(HsmError, match="renderer failed") as caught:
        printer.print(x, "M12-0000345", DAY)
    told = "".join(traceback.format_exception(caught.value))
    assert "4821" not in told and caught.value.__cause__ is None
