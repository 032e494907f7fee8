"""Image initialization (the chapter's cloning) as a host procedure, through a Reader only.

Logical initialization sends every card the profile's file-management commands
(:mod:`cardperso.dataprep.init_script`). Image initialization instead writes, at
physical addresses, the memory a card holds after those commands - the *image* -
and then loads what differs per card. The card OS side is docs/card-os.md §7; this
module is the host side of its §7.3 procedure:

**The image** (:class:`ImagePlan`) comes from one of two places, both giving the
same bytes (the tests prove it for every shipped product):

* :meth:`ImagePlan.offline` - the card vendor's image builder
  (:mod:`cardperso.card.vendor`) runs the structure steps on its own model of the
  OS. No golden card, so no card carrying a dump routine anywhere in the facility;
  this is what the line uses (one image per run);
* :meth:`ImagePlan.golden` / :func:`make_golden_image` - a blank card gets the
  structure by logical commands, reports its OS version and layout (GET DATA
  ``DF03``/``DF05``), takes the vendor's dump routine (LOAD DUMP ROUTINE) and is read
  out (READ MEMORY) range by range; power off deletes the routine. With
  ``retire=True`` the golden card is then terminated, which blows its lock fuse, so
  it can never be read out again. This is the route for a card whose vendor ships
  no image builder.

**What is in the image.** Only steps that are the same on every card and that the
vendor's builder accepts: CREATE FILE, SELECT and the constant file contents. PUT
KEY and PUT PIN never go in: the builder refuses their instruction (``80 D8``)
because KD is per card, and a transport PIN shares that instruction, so the
profile's transport PINs are loaded logically right after the image
(:attr:`ImagePlan.objects`, see :func:`split_structure`). After that come the
record's own ``init_steps`` (if any), KD by PUT KEY (``kd_for_initialization``,
initialization role only) and SET LIFECYCLE INITIALIZED - the
:meth:`ImagePlan.steps_after` a :class:`~cardperso.line.chip.StepRunner` runs. In
that order the card's memory ends up the same as after logical initialization.

**Writing an image into a card** (:func:`write_image`):

1. GET DATA ``DF02``, ``DF03``, ``DF05``, ``DF06``: the card must be blank
   (MANUFACTURED, lock not set) and report the image's OS version and memory layout;
   otherwise :class:`ImageRefused`, before anything is written. A card left
   *damaged* by an image write cut short (``DF02`` answers ``6581``) whose lock is
   still open is accepted: rewriting the image is what repairs it;
2. WRITE MEMORY of every page that differs from a blank card's: the image's
   non-zero pages of the directory, bitmap and heap (blank EEPROM is zero there),
   in page-aligned pieces of at most 255 bytes (short APDUs; a piece never
   programs a page twice). The system page is not written: a blank card's is the
   same MANUFACTURED page as the image's, and step 3 proves it;
3. CHECKSUM MEMORY over each image range, compared (constant time) with SHA-256 of
   the image's bytes. A mismatch rewrites the mismatched ranges whole, every page,
   once; a second mismatch fails the card;
4. reset (the RAM state of the writing session goes), GET DATA ``DF01``: the chip
   serial must be the one the card reported before.

Errors are :class:`ImageInitError` (the card failed) or :class:`ImageRefused` (the
card does not fit the image); neither quotes memory contents.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from cardperso import tlv
from cardperso.card.vendor import Layout, MemoryImage, build_image, dump_routine
from cardperso.dataprep.init_script import InitScript
from cardperso.dataprep.prepared import Step, StepKind
from cardperso.errors import CardpersoError, ReaderError
from cardperso.readers import Reader, cos, exchange

__all__ = [
    "CardFacts",
    "ImageInitError",
    "ImagePlan",
    "ImageRefused",
    "ImageWrite",
    "check_fits",
    "image_pieces",
    "make_golden_image",
    "read_facts",
    "split_structure",
    "write_image",
]

MAX_SHORT_LC = 255
"""Largest command data field of a short APDU (ISO/IEC 7816-4 §5.1)."""
READ_CHUNK = 256
"""READ MEMORY piece: the largest short Le."""


class ImageInitError(CardpersoError):
    """A card failed during image initialization (names the step and SW, never data)."""

    exit_code = 4


class ImageRefused(ImageInitError):
    """The card does not fit the image (state, lock, OS version or memory layout)."""


@dataclass(frozen=True, slots=True)
class CardFacts:
    """What a card reports about itself before an image goes in."""

    state: int | None
    """Life cycle (``DF02``); None when the card answers ``6581`` (damaged memory)."""
    os_version: bytes
    layout: Layout
    locked: bool


def _get_data(reader: Reader, tag: int) -> bytes | None:
    """The value of a GET DATA object; None for ``6581`` (damaged card)."""
    r = exchange(reader, cos.get_data(tag))
    if r.sw == 0x6581:
        return None
    if r.sw != 0x9000:
        raise ImageInitError(f"GET DATA {tag:04X} answered {r.sw:04X}")
    try:
        return tlv.to_dict(r.data)[tag]
    except (tlv.TlvError, KeyError):
        raise ImageInitError(f"GET DATA {tag:04X}: malformed answer") from None


def _layout(value: bytes) -> Layout:
    if len(value) != 10:
        raise ImageInitError("GET DATA DF05: the layout is not 10 bytes")
    try:
        return Layout(
            int.from_bytes(value[:4], "big"),
            int.from_bytes(value[4:6], "big"),
            value[6],
            value[7],
            value[8],
            value[9],
        )
    except ValueError as e:
        raise ImageInitError(f"GET DATA DF05: not a usable layout ({e})") from None


def read_facts(reader: Reader) -> CardFacts:
    """GET DATA ``DF02``, ``DF03``, ``DF05`` and ``DF06`` (ImageInitError if unreadable)."""
    state = _get_data(reader, 0xDF02)
    osv = _get_data(reader, 0xDF03)
    lay = _get_data(reader, 0xDF05)
    lock = _get_data(reader, 0xDF06)
    if osv is None or lay is None or lock is None:
        raise ImageInitError("the card's memory is damaged beyond its manufacturer page")
    return CardFacts(state[0] if state else None, osv, _layout(lay), lock != b"\x00")


def _describe(lay: Layout) -> str:
    return (
        f"{lay.eeprom_size} bytes, {lay.page_size}-byte pages, {lay.journal_pages} journal "
        f"pages, {lay.dump_pages} dump pages, {lay.dir_entries} entries, {lay.block}-byte blocks"
    )


def check_fits(facts: CardFacts, image: MemoryImage) -> None:
    """Refuse (:class:`ImageRefused`) a card the image must not be written into."""
    if facts.locked:
        raise ImageRefused("the card's lock is set: its physical memory is closed for good")
    if facts.state is not None and facts.state != cos.MANUFACTURED:
        raise ImageRefused(f"the card is not blank (life cycle {facts.state:02X})")
    if facts.os_version != image.os_version:
        raise ImageRefused(
            f"the image is for OS version {image.os_version.decode('ascii', 'replace')}, "
            f"the card runs {facts.os_version.decode('ascii', 'replace')}"
        )
    if facts.layout != image.layout:
        raise ImageRefused(
            f"the image is for memory layout ({_describe(image.layout)}), "
            f"the card has ({_describe(facts.layout)})"
        )


# -- the image and its plan ----------------------------------------------------------------


def _is_object_step(step: Step) -> bool:
    """PUT KEY / PUT PIN (``80 D8``): never part of an image."""
    a = step.apdu
    return len(a) >= 2 and a[0] & 0xF3 == 0x80 and a[1] == 0xD8


def split_structure(structure: Sequence[Step]) -> tuple[tuple[Step, ...], tuple[Step, ...]]:
    """The structure steps that make the image, and the object steps (transport PINs)
    loaded logically after it; :class:`ImageInitError` for a step that is not a
    plain APDU."""
    image: list[Step] = []
    objects: list[Step] = []
    for s in structure:
        if s.kind is not StepKind.APDU or s.sm:
            raise ImageInitError(f"{s.note}: only plain APDUs belong to a card's structure")
        (objects if _is_object_step(s) else image).append(s)
    return tuple(image), tuple(objects)


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """Image initialization of one profile version: the image and the steps after it."""

    script: InitScript
    image: MemoryImage
    objects: tuple[Step, ...]
    source: str
    """``vendor`` (offline builder) or ``golden`` (dumped from a golden card)."""

    @classmethod
    def offline(
        cls,
        script: InitScript,
        *,
        layout: Layout | None = None,
        os_version: bytes | None = None,
    ) -> ImagePlan:
        """The image from the card vendor's offline builder (no golden card)."""
        steps, objects = split_structure(script.structure)
        kw = {} if os_version is None else {"os_version": os_version}
        try:
            image = build_image([s.apdu for s in steps], layout=layout, **kw)
        except ValueError as e:  # the vendor's ImageError
            raise ImageInitError(f"the image builder refused the structure: {e}") from None
        return cls(script, image, objects, "vendor")

    @classmethod
    def golden(cls, reader: Reader, script: InitScript, *, retire: bool = True) -> ImagePlan:
        """The image dumped from a golden card in ``reader`` (:func:`make_golden_image`)."""
        steps, objects = split_structure(script.structure)
        return cls(script, make_golden_image(reader, steps, retire=retire), objects, "golden")

    def steps_after(self, per_card: tuple[Step, ...] = ()) -> tuple[Step, ...]:
        """What a card gets once the image is in: transport PINs, the record's own
        initialization data, KD, SET LIFECYCLE INITIALIZED."""
        return self.objects + per_card + self.script.keys + self.script.finish


def _expect(reader: Reader, apdu: bytes, what: str, sw: int = 0x9000) -> bytes:
    r = exchange(reader, apdu)
    if r.sw != sw:
        raise ImageInitError(f"{what}: SW {r.sw:04X}, expected {sw:04X}")
    return r.data


def make_golden_image(
    reader: Reader, steps: Sequence[Step], *, retire: bool = False
) -> MemoryImage:
    """Make a golden card of the blank card in ``reader`` and read its image out.

    Runs ``steps`` (plain APDUs, no PUT KEY / PUT PIN: nothing card-specific), records
    OS version and layout, loads the dump routine, reads the image ranges, powers the
    card off (the routine deletes itself at the next power-up). ``retire`` then
    terminates the golden card, which closes its physical memory for good.
    """
    reader.reset()
    facts = read_facts(reader)
    if facts.locked or facts.state != cos.MANUFACTURED:
        raise ImageRefused("a golden card must be a blank card (MANUFACTURED, lock not set)")
    for s in steps:
        if s.kind is not StepKind.APDU or s.sm or _is_object_step(s):
            raise ImageInitError(f"golden card: {s.note} has no place on a golden card")
        _expect(reader, s.apdu, f"golden card: {s.note}", s.expect_sw)
    facts = read_facts(reader)
    routine = dump_routine()
    _expect(reader, cos.load_dump_routine(routine), "golden card: LOAD DUMP ROUTINE")
    segments: list[tuple[int, bytes]] = []
    for start, n in facts.layout.image_ranges():
        data = bytearray()
        while len(data) < n:
            want = min(READ_CHUNK, n - len(data))
            got = _expect(
                reader, cos.read_memory(start + len(data), want), "golden card: READ MEMORY"
            )
            if len(got) != want:
                raise ImageInitError("golden card: READ MEMORY returned a short piece")
            data += got
        segments.append((start, bytes(data)))
    reader.close()
    if retire:
        reader.reset()
        _expect(reader, cos.set_lifecycle(cos.TERMINATED), "golden card: SET LIFECYCLE TERMINATED")
        reader.close()
    return MemoryImage(facts.os_version, facts.layout, tuple(segments))


# -- writing ------------------------------------------------------------------------------


def _pieces(
    addr: int, data: bytes, page: int, *, skip_zero: bool, max_len: int
) -> list[tuple[int, bytes]]:
    """Page-aligned pieces of one range: runs of whole pages, each piece at most
    ``max_len`` bytes (one page if a page is larger), zero pages left out on request."""
    per = max(max_len // page, 1) * page
    out: list[tuple[int, bytes]] = []
    off, n = 0, len(data)
    while off < n:
        if skip_zero and not any(data[off : off + page]):
            off += page
            continue
        end = off + page
        while end < n and end - off < per and (not skip_zero or any(data[end : end + page])):
            end += page
        end = min(end, n)
        out.append((addr + off, data[off:end]))
        off = end
    return out


def image_pieces(image: MemoryImage, *, max_len: int = MAX_SHORT_LC) -> list[tuple[int, bytes]]:
    """The WRITE MEMORY pieces that turn a blank card into the image: the non-zero
    pages of every range after the system page (which a blank card already has)."""
    page = image.layout.page_size
    out: list[tuple[int, bytes]] = []
    for addr, data in image.segments:
        if addr == image.layout.system:
            continue
        out.extend(_pieces(addr, data, page, skip_zero=True, max_len=max_len))
    return out


@dataclass
class ImageWrite:
    """What writing an image into one card took."""

    pieces: int = 0
    bytes_written: int = 0
    checksums: int = 0
    rewrites: int = 0
    ranges_rewritten: list[int] = field(default_factory=list)


def _write(reader: Reader, pieces: Sequence[tuple[int, bytes]], report: ImageWrite) -> None:
    for addr, data in pieces:
        _expect(reader, cos.write_memory(addr, data), f"WRITE MEMORY at {addr:04X}")
        report.pieces += 1
        report.bytes_written += len(data)


def _mismatched(reader: Reader, image: MemoryImage, report: ImageWrite) -> list[int]:
    bad: list[int] = []
    for i, (addr, data) in enumerate(image.segments):
        got = _expect(reader, cos.checksum_memory(addr, len(data)), f"CHECKSUM MEMORY {addr:04X}")
        report.checksums += 1
        if not hmac.compare_digest(got, hashlib.sha256(data).digest()):
            bad.append(i)
    return bad


def write_image(
    reader: Reader,
    image: MemoryImage,
    *,
    serial: bytes | None = None,
    max_piece: int = MAX_SHORT_LC,
) -> ImageWrite:
    """Write ``image`` into the blank, powered card in ``reader`` (see the module notes).

    Returns what it took; raises :class:`ImageRefused` for a card that does not fit
    (nothing written) and :class:`ImageInitError` for a card that fails. ``serial``:
    the chip serial the card must still report after the closing reset.
    """
    try:
        check_fits(read_facts(reader), image)
        report = ImageWrite()
        _write(reader, image_pieces(image, max_len=max_piece), report)
        bad = _mismatched(reader, image, report)
        if bad:
            report.rewrites += 1
            report.ranges_rewritten = bad
            page = image.layout.page_size
            for i in bad:
                addr, data = image.segments[i]
                pieces = _pieces(addr, data, page, skip_zero=False, max_len=max_piece)
                _write(reader, pieces, report)
            if _mismatched(reader, image, report):
                raise ImageInitError(
                    "the card's memory still differs from the image after a rewrite"
                )
        reader.reset()
        got = _get_data(reader, 0xDF01)
    except ReaderError as e:
        raise ImageInitError(str(e)) from None
    if got is None or (serial is not None and not hmac.compare_digest(got, serial)):
        raise ImageInitError("after the reset the card reports another chip serial")
    return report
