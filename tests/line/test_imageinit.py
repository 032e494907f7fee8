"""Image initialization as a host procedure, for every shipped product.

* the image a golden card yields (logical commands, dump routine, READ MEMORY) is
  byte-identical to the card vendor's offline build;
* a card initialized from the image holds, in every image range, the same bytes as
  a card of the same serial initialized logically, and personalizes and passes the
  chip check like it;
* cards that do not fit the image (another OS version, another memory size, not
  blank) are refused before anything is written; a failed checksum rewrites once,
  then fails; a card damaged by an image write cut short is repaired by the retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cardperso.card import new_card
from cardperso.card.vendor import Layout
from cardperso.crypto.rand import SeededRandom
from cardperso.dataprep.init_script import InitScript, build_init_script
from cardperso.dataprep.issuer_file import IssuerFileReader
from cardperso.dataprep.prepare import CardPreparer
from cardperso.dataprep.prepared import PreparedCard
from cardperso.dataprep.usecases import generate_issuer_file
from cardperso.errors import ReaderError
from cardperso.hsm import Role, SoftHsm
from cardperso.line.chip import KeyCache, StepRunner
from cardperso.line.feeder import DEFAULT_TA1, SimulatedFeeder
from cardperso.line.imageinit import (
    ImageInitError,
    ImagePlan,
    ImageRefused,
    image_pieces,
    read_facts,
    write_image,
)
from cardperso.line.orchestrator import LineConfig
from cardperso.line.stations import chip_check_steps
from cardperso.line.usecases import run_batch
from cardperso.production.db import Database
from cardperso.production.models import Attempt
from cardperso.profiles.loader import load_builtin
from cardperso.profiles.schema import LoadingMethod
from cardperso.readers import cos, exchange
from cardperso.readers.virtual import VirtualReader
from production.support import Staff

from .kit import TODAY, import_product, stock_seed

PRODUCTS = ("debit", "sim", "employee")


def _reader(serial: str, **kw: object) -> VirtualReader:
    card = new_card(bytes.fromhex(serial), seed=serial, **kw)  # type: ignore[arg-type]
    return VirtualReader(card, ta1=DEFAULT_TA1)


def _script(product: str) -> InitScript:
    return build_init_script(load_builtin(product))


@pytest.mark.parametrize("product", PRODUCTS)
def test_golden_card_dump_equals_the_offline_image(product: str) -> None:
    script = _script(product)
    offline = ImagePlan.offline(script)
    golden_reader = _reader("601D000000000001")
    golden = ImagePlan.golden(golden_reader, script, retire=False)
    assert golden.image == offline.image  # segments, OS version and layout
    assert golden.image.sha256 == offline.image.sha256
    assert golden.objects == offline.objects
    golden_reader.reset()  # one reset later the dump routine is gone
    assert golden_reader.transmit(cos.read_memory(0x09C0, 16)) == b"\x6d\x00"
    assert read_facts(golden_reader).state == cos.MANUFACTURED


def test_a_retired_golden_card_can_never_be_read_out_again() -> None:
    reader = _reader("601D000000000002")
    ImagePlan.golden(reader, _script("debit"), retire=True)
    reader.reset()
    facts = read_facts(reader)
    assert facts.state == cos.TERMINATED and facts.locked
    assert exchange(reader, cos.load_dump_routine(b"DUMP")).sw in (0x6985, 0x6986)


def test_transport_pins_are_loaded_after_the_image_not_in_it() -> None:
    plan = ImagePlan.offline(_script("employee"))
    assert [s.note for s in plan.objects] == ["PUT PIN PIN (transport PIN, ref 1)"]
    assert plan.steps_after()[0] is plan.objects[0]
    assert plan.steps_after()[-1].note == "SET LIFECYCLE INITIALIZED"


# -- end to end per product -----------------------------------------------------------


@pytest.fixture(scope="module")
def module_hsm(
    tmp_path_factory: pytest.TempPathFactory, keystore_template: Path
) -> Iterator[SoftHsm]:
    """The bureau keystore, a private copy for this module (its audit log grows)."""
    import shutil

    from .kit import open_hsm

    target = tmp_path_factory.mktemp("imageinit") / "ks"
    shutil.copytree(keystore_template.parent, target)
    h = open_hsm(target / keystore_template.name)
    yield h
    h.close()


@pytest.fixture(scope="module")
def prepared(
    tmp_path_factory: pytest.TempPathFactory, module_hsm: SoftHsm
) -> dict[str, PreparedCard]:
    out: dict[str, PreparedCard] = {}
    with module_hsm.session(Role.DATAPREP, "tests") as dp:
        for product in PRODUCTS:
            path = tmp_path_factory.mktemp(product) / f"{product}.csv"
            generate_issuer_file(product, path, 1, 5, today=TODAY)
            with IssuerFileReader(path, today=TODAY) as r:
                rec = next(iter(r))
                preparer = CardPreparer(r.profile, dp, batch_id="IMG-1", file=path.name)
                cards, problems = preparer.prepare([(1, rec.line, rec.values)])
            assert not problems
            out[product] = PreparedCard.from_line(cards[0].to_line())
    return out


def _image_ranges(reader: VirtualReader) -> list[bytes]:
    ee = reader.card.eeprom
    return [ee.read(a, n) for a, n in Layout().image_ranges()]


@pytest.mark.parametrize("product", PRODUCTS)
def test_image_initialized_card_matches_a_logical_one_and_personalizes(
    product: str, prepared: dict[str, PreparedCard], module_hsm: SoftHsm
) -> None:
    card = prepared[product]
    script = _script(product)
    plan = ImagePlan.offline(script)
    serial = bytes.fromhex("C10E0000000000A1")
    init = KeyCache(module_hsm.session(Role.INITIALIZATION, "init"))
    logical, cloned = _reader(serial.hex()), _reader(serial.hex())
    logical.reset()
    StepRunner("init", logical, init, serial, SeededRandom(1)).run(script.steps(card.init_steps))
    cloned.reset()
    t0 = cloned.elapsed
    done = write_image(cloned, plan.image, serial=serial)
    StepRunner("init", cloned, init, serial, SeededRandom(1)).run(plan.steps_after(card.init_steps))
    assert cloned.elapsed > t0 and done.rewrites == 0
    assert done.pieces == len(image_pieces(plan.image))
    # Same serial, same KD: the two initialization routes leave the same memory.
    assert _image_ranges(cloned) == _image_ranges(logical)
    facts = read_facts(cloned)
    assert facts.state == cos.INITIALIZED and facts.locked
    perso = KeyCache(module_hsm.session(Role.PERSONALIZATION, "perso"))
    qc = KeyCache(module_hsm.session(Role.QC, "qc"))
    for reader in (cloned, logical):
        StepRunner("perso", reader, perso, serial, SeededRandom(2)).run(card.script)
        StepRunner("chip_check", reader, qc, serial, SeededRandom(3)).resume(
            chip_check_steps(card.script), 0
        )
        assert read_facts(reader).state == cos.PERSONALIZED
        # a personalized card cannot be dumped: its physical memory is closed
        r = exchange(reader, cos.load_dump_routine(b"DUMP"))
        assert r.sw == 0x6986
        assert exchange(reader, cos.read_memory(0x0000, 64)).sw == 0x6D00


# -- refusals and faults ----------------------------------------------------------------


def test_an_image_for_another_os_version_is_refused_before_writing() -> None:
    plan = ImagePlan.offline(_script("debit"))
    reader = _reader("C10E0000000000B1", os_version=b"CPOS0200")
    reader.reset()
    before = reader.card.eeprom.page_writes
    with pytest.raises(ImageRefused, match="OS version CPOS0100, the card runs CPOS0200"):
        write_image(reader, plan.image)
    assert reader.card.eeprom.page_writes == before


def test_an_image_for_another_memory_size_is_refused_before_writing() -> None:
    plan = ImagePlan.offline(_script("sim"))
    reader = _reader("C10E0000000000B2", layout=Layout(eeprom_size=16 * 1024))
    reader.reset()
    before = reader.card.eeprom.page_writes
    with pytest.raises(ImageRefused, match=r"memory layout .*16384 bytes"):
        write_image(reader, plan.image)
    assert reader.card.eeprom.page_writes == before


def test_an_image_built_for_that_layout_fits_it() -> None:
    lay = Layout(eeprom_size=16 * 1024, dir_entries=32)
    plan = ImagePlan.offline(_script("sim"), layout=lay)
    reader = _reader("C10E0000000000B3", layout=lay)
    reader.reset()
    assert write_image(reader, plan.image).rewrites == 0


def test_an_initialized_card_is_refused(module_hsm: SoftHsm) -> None:
    script = _script("debit")
    plan = ImagePlan.offline(script)
    serial = bytes.fromhex("C10E0000000000B4")
    reader = _reader(serial.hex())
    reader.reset()
    init = KeyCache(module_hsm.session(Role.INITIALIZATION, "init"))
    StepRunner("init", reader, init, serial, SeededRandom(1)).run(script.steps())
    with pytest.raises(ImageRefused, match="lock is set"):
        write_image(reader, plan.image)


class _Corrupting:
    """A reader that flips one bit of the first ``times`` WRITE MEMORY pieces."""

    def __init__(self, inner: VirtualReader, times: int) -> None:
        self.inner, self.left = inner, times

    name = "corrupting"

    def reset(self) -> bytes:
        return self.inner.reset()

    def transmit(self, apdu: bytes) -> bytes:
        if apdu[:2] == b"\x80\xd0" and self.left > 0:
            self.left -= 1
            apdu = apdu[:-1] + bytes([apdu[-1] ^ 0x01])
        return self.inner.transmit(apdu)

    @property
    def elapsed(self) -> float:
        return self.inner.elapsed

    def close(self) -> None:
        self.inner.close()


def test_a_checksum_mismatch_rewrites_once_then_fails() -> None:
    plan = ImagePlan.offline(_script("debit"))
    ok = _Corrupting(_reader("C10E0000000000C1"), times=1)
    ok.reset()
    done = write_image(ok, plan.image)
    assert done.rewrites == 1 and done.ranges_rewritten == [1]
    assert done.checksums == 4
    bad = _Corrupting(_reader("C10E0000000000C2"), times=10_000)
    bad.reset()
    with pytest.raises(ImageInitError, match="still differs from the image after a rewrite"):
        write_image(bad, plan.image)


def test_a_card_damaged_by_a_cut_image_write_is_repaired_by_writing_again() -> None:
    plan = ImagePlan.offline(_script("employee"))
    reader = _reader("C10E0000000000D1")
    reader.reset()
    reader.card.eeprom.arm_power_loss(1)  # the second page of the first piece
    with pytest.raises(ImageInitError, match="mute"):
        write_image(reader, plan.image)
    reader.close()
    reader.reset()
    assert write_image(reader, plan.image).rewrites == 0


def test_a_dead_card_is_an_image_error_not_a_crash() -> None:
    plan = ImagePlan.offline(_script("debit"))

    class Dead(_Corrupting):
        def transmit(self, apdu: bytes) -> bytes:
            raise ReaderError("contact failure")

    reader = Dead(_reader("C10E0000000000D2"), 0)
    reader.reset()
    with pytest.raises(ImageInitError, match="contact failure"):
        write_image(reader, plan.image)


# -- through the line ---------------------------------------------------------------------


@pytest.mark.parametrize("product", PRODUCTS)
def test_the_line_initializes_blank_stock_by_image(
    product: str, sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    staff = Staff(sqlite_db)
    batch_id = import_product(sqlite_db, hsm, staff, product, 6, tmp_path, spare=0.0)
    result = run_batch(
        sqlite_db,
        hsm,
        batch_id,
        by=staff.operator,
        feeder=SimulatedFeeder(stock_seed(product)),
        config=LineConfig(modules=2, seed="image", init_method=LoadingMethod.IMAGE),
    )
    assert result.batch_done and result.good == 6 and not result.rejected
    with sqlite_db.reader() as s:
        atts = s.scalars(select(Attempt).where(Attempt.batch_id == batch_id)).all()
    for a in atts:
        chip = next(e for e in a.station_results if e["station"] == "chip_module")
        init = chip["detail"]["stations"]["init"]
        assert init["method"] == "image" and init["rewrites"] == 0 and init["t"] > 0
