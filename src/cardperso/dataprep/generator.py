"""Synthetic issuer files for any profile, byte-for-byte repeatable from a seed.

Records look like an issuer's: given and family names of five countries (with
their accents and apostrophes), street addresses written the way each country
writes them, postal codes spread over 64 postal regions (DE Leitregionen, FR
departements, GB postcode areas, US sectional centers, NL regions), unique
Luhn-valid PANs under the profile's test BIN, unique ICCIDs and IMSIs, expiries
two to five years ahead, staff numbers, key cryptograms and small black-and-white
photos (binary PBM, drawn here: nothing is downloaded).

What a field receives follows its profile rule and, for generic text/digits/hex
fields, its ``meaning``. Unique numbers come from an affine permutation of the
record index (``(a*i + b) mod 10^k`` with ``a`` prime to 10), so a million
records never collide. All randomness comes from one
:class:`~cardperso.crypto.rand.SeededRandom`; records are written as they are
made, so memory does not grow with ``count``.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import IO

from cardperso.crypto.rand import RandomSource, SeededRandom
from cardperso.dataprep.issuer_file import BatchHeader
from cardperso.dataprep.text import transliterate
from cardperso.payments._digits import luhn_check_digit
from cardperso.profiles.schema import FieldRule, InputField, Meaning, Profile

__all__ = ["GeneratedFile", "Person", "generate_records", "write_issuer_file"]


class _Draw:
    """Uniform choices from a RandomSource, read in 4 KiB chunks (one AES call each)."""

    def __init__(self, rng: RandomSource) -> None:
        self._rng = rng
        self._buf = b""
        self._pos = 0

    def _bytes(self, n: int) -> bytes:
        if self._pos + n > len(self._buf):
            self._buf = self._buf[self._pos :] + self._rng.random_bytes(4096)
            self._pos = 0
        out = self._buf[self._pos : self._pos + n]
        self._pos += n
        return out

    def below(self, n: int) -> int:
        """Uniform integer in [0, n) by rejection (no modulo bias)."""
        if n <= 1:
            return 0
        size = (n.bit_length() + 7) // 8
        space = 1 << (8 * size)
        limit = space - space % n
        while True:
            v = int.from_bytes(self._bytes(size), "big")
            if v < limit:
                return v % n

    def choice(self, items: Sequence[str]) -> str:
        return items[self.below(len(items))]

    def digits(self, k: int) -> str:
        return "".join(str(self.below(10)) for _ in range(k))

    def chance(self, percent: int) -> bool:
        return self.below(100) < percent

    def raw(self, n: int) -> bytes:
        return self._bytes(n)


# -- people and places ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Country:
    code: str
    share: int  # percent of records
    given: tuple[str, ...]
    family: tuple[str, ...]
    streets: tuple[str, ...]
    number_first: bool
    regions: tuple[tuple[str, str], ...]  # (postal prefix, city)


def _t(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


def _regions(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((r.split(" ", 1)[0], r.split(" ", 1)[1]) for r in text.split("|"))


_COUNTRIES = (
    _Country(
        "DE",
        30,
        _t(
            "Jürgen|Anna|Lukas|Sophie|Maximilian|Marie|Jörg|Käthe|Felix|Lena|Matthias|Hannah"
            "|Björn|Ute|Sebastian|Greta|Özlem|Tobias"
        ),
        _t(
            "Müller|Schmidt|Schneider|Fischer|Weber|Meyer|Wagner|Becker|Schulz|Hoffmann|Koch"
            "|Bauer|Richter|Klein|Wolf|Schröder|Neumann|Groß|Yılmaz|Schäfer"
        ),
        _t(
            "Hauptstraße|Bahnhofstraße|Schillerstraße|Goethestraße|Lindenallee|Gartenweg"
            "|Kirchplatz|Am Markt|Bergstraße|Friedrich-Ebert-Straße"
        ),
        False,
        _regions(
            "10 Berlin|20 Hamburg|30 Hannover|40 Düsseldorf|50 Köln|60 Frankfurt am Main"
            "|70 Stuttgart|80 München|90 Nürnberg|01 Dresden|04 Leipzig|28 Bremen|44 Dortmund"
            "|24 Kiel"
        ),
    ),
    _Country(
        "FR",
        20,
        _t(
            "François|Camille|Léa|Hugo|Chloé|Théo|Zoé|Gaël|Inès|Noël|Amélie|Jérôme|Hélène"
            "|Mathéo|Clémence"
        ),
        _t(
            "Martin|Bernard|Dubois|Lefèvre|Moreau|Girard|Rousseau|Fournier|Mercier|Bonnet"
            "|Lambert|Faure|Chevalier|Garçon|D'Amico|Boucher"
        ),
        _t(
            "rue de la République|avenue Victor Hugo|boulevard Saint-Michel|rue des Lilas"
            "|place de la Mairie|chemin des Vignes|rue Pasteur|allée des Tilleuls"
            "|impasse du Moulin"
        ),
        True,
        _regions(
            "75 Paris|13 Marseille|69 Lyon|31 Toulouse|06 Nice|44 Nantes|67 Strasbourg"
            "|34 Montpellier|33 Bordeaux|59 Lille|35 Rennes|51 Reims"
        ),
    ),
    _Country(
        "GB",
        20,
        _t(
            "Oliver|Amelia|George|Isla|Harry|Ava|Siobhán|Jack|Niamh|Rhys|Eilidh|Callum|Freya"
            "|Owen|Poppy"
        ),
        _t(
            "Smith|Jones|Taylor|Brown|Williams|Wilson|Davies|Evans|O'Brien|McDonald|Thomas"
            "|Roberts|Walker|Wright|Hughes|Ashworth-Lee"
        ),
        _t(
            "High Street|Station Road|Church Lane|Victoria Road|Mill Lane|The Crescent"
            "|Park Avenue|Queens Road|Green Lane"
        ),
        True,
        _regions(
            "SW1A London|EC1A London|M1 Manchester|B1 Birmingham|LS1 Leeds|G1 Glasgow"
            "|EH1 Edinburgh|CF10 Cardiff|BS1 Bristol|L1 Liverpool|NE1 Newcastle upon Tyne"
            "|BT1 Belfast|OX1 Oxford|CB2 Cambridge"
        ),
    ),
    _Country(
        "US",
        15,
        _t(
            "James|Mary|Robert|Patricia|Michael|Jennifer|José|Maria|David|Linda|Mei|Darnell"
            "|Aaliyah|Ethan|Sofia"
        ),
        _t(
            "Johnson|Garcia|Miller|Davis|Rodriguez|Martinez|Hernández|Lopez|Anderson|Nguyen"
            "|Jackson|White|Harris|Clark|Lewis"
        ),
        _t(
            "Main Street|Oak Avenue|Maple Drive|Elm Street|Washington Boulevard|Cedar Lane"
            "|Sunset Boulevard|Lakeview Drive|Pine Street"
        ),
        True,
        _regions(
            "100 New York, NY|606 Chicago, IL|900 Los Angeles, CA|941 San Francisco, CA"
            "|021 Boston, MA|331 Miami, FL|770 Houston, TX|981 Seattle, WA|303 Atlanta, GA"
            "|802 Denver, CO|191 Philadelphia, PA|850 Phoenix, AZ"
        ),
    ),
    _Country(
        "NL",
        15,
        _t("Daan|Emma|Sem|Julia|Lucas|Tess|Bram|Fenna|Joëlle|Ruben|Anouk|Thijs|Femke|Jeroen|Sanne"),
        _t(
            "de Jong|Jansen|de Vries|van den Berg|van Dijk|Bakker|Janssen|Visser|Smit|Meijer"
            "|de Boer|Mulder|van 't Hof|Bosch|Vos"
        ),
        _t(
            "Kerkstraat|Dorpsstraat|Molenweg|Stationsplein|Prinsengracht|Julianalaan"
            "|Schoolstraat|Beatrixlaan|Nieuwstraat"
        ),
        False,
        _regions(
            "10 Amsterdam|30 Rotterdam|25 Den Haag|35 Utrecht|56 Eindhoven|97 Groningen"
            "|65 Nijmegen|50 Tilburg|20 Haarlem|23 Leiden|68 Arnhem|75 Enschede"
        ),
    ),
)

_GB_INWARD = "ABDEFGHJLNPQRSTUWXYZ"
_DEPARTMENTS = _t(
    "Finance|Research & Development|Logistics|Human Resources|Production|Quality Assurance"
    "|Sales|IT Operations|Legal|Facilities|Procurement|Customer Service"
)
_EXTRAS = {
    "DE": ("c/o Familie {f}", "Hinterhaus", "2. OG"),
    "FR": ("Bâtiment B", "Appartement 12", "Résidence Les Pins"),
    "GB": ("Flat 2", "Rose Cottage", "Unit 5"),
    "US": ("Apt 4B", "Suite 210", "Unit 7"),
    "NL": ("2e etage", "Achterhuis", "bus 3"),
}


@dataclass(frozen=True, slots=True)
class Person:
    """A synthetic cardholder."""

    given: str
    family: str
    address_line1: str
    address_line2: str
    postal_code: str
    city: str
    country: str


def _country(d: _Draw) -> _Country:
    r = d.below(100)
    for c in _COUNTRIES:
        if r < c.share:
            return c
        r -= c.share
    return _COUNTRIES[-1]


def _postal(d: _Draw, c: _Country, prefix: str) -> str:
    if c.code in ("DE",):
        return prefix + d.digits(3)
    if c.code == "FR":
        return prefix + "0" + d.digits(2)
    if c.code == "GB":
        return f"{prefix} {d.below(10)}{d.choice(_GB_INWARD)}{d.choice(_GB_INWARD)}"
    if c.code == "US":
        base = prefix + d.digits(2)
        return f"{base}-{d.digits(4)}" if d.chance(25) else base
    letters = "ABCDEFGHJKLMNPRTVWXZ"  # NL: avoids SA, SD, SS
    return f"{prefix}{d.digits(2)} {d.choice(letters)}{d.choice(letters)}"


def _person(d: _Draw) -> Person:
    c = _country(d)
    given, family = d.choice(c.given), d.choice(c.family)
    number = str(1 + d.below(199 if c.code != "US" else 9899))
    street = d.choice(c.streets)
    line1 = f"{number} {street}" if c.number_first else f"{street} {number}"
    line2 = ""
    if d.chance(20):
        line2 = d.choice(_EXTRAS[c.code]).replace("{f}", family)
    prefix, city = c.regions[d.below(len(c.regions))]
    return Person(given, family, line1, line2, _postal(d, c, prefix), city, c.code)


# -- photos -----------------------------------------------------------------------

_PHOTO_W, _PHOTO_H = 48, 64


@lru_cache(maxsize=64)
def _silhouette(radius: int, dx: int) -> bytes:
    """Packed 1-bit rows of a head-and-shoulders outline (1 = black)."""
    rows = bytearray()
    cx, cy = _PHOTO_W // 2 + dx, 22
    for y in range(_PHOTO_H):
        bits = 0
        for x in range(_PHOTO_W):
            head = (x - cx) ** 2 * 100 + (y - cy) ** 2 * 70 <= radius * radius * 100
            neck = 30 <= y < 44 and abs(x - cx) <= 3
            shoulders = y >= 44 and abs(x - cx) <= 8 + (y - 44) * 1.2
            frame = y in (0, _PHOTO_H - 1) or x in (0, _PHOTO_W - 1)
            bits = bits << 1 | int(head or neck or shoulders or frame)
        rows += bits.to_bytes(_PHOTO_W // 8, "big")
    return bytes(rows)


def _photo(d: _Draw) -> str:
    """Base64 of a 48x64 binary PBM (P4) with a per-person silhouette and speckle."""
    body = bytearray(_silhouette(9 + d.below(5), d.below(7) - 3))
    for _ in range(12):
        body[d.below(len(body))] ^= 1 << d.below(8)
    header = f"P4\n{_PHOTO_W} {_PHOTO_H}\n".encode("ascii")
    return base64.b64encode(header + bytes(body)).decode("ascii")


# -- unique numbers ---------------------------------------------------------------


class _Permutation:
    """i -> (a*i + b) mod 10^k: distinct k-digit numbers for distinct i < 10^k."""

    def __init__(self, d: _Draw, k: int) -> None:
        self.k = k
        self.mod = 10**k
        a = 0
        while a % 2 == 0 or a % 5 == 0:
            a = 1 + d.below(self.mod - 1) if self.mod > 2 else 1
        self.a, self.b = a, d.below(self.mod)

    def __call__(self, i: int) -> str:
        return str((self.a * i + self.b) % self.mod).rjust(self.k, "0")


def _luhn_number(prefix: str, length: int, perm: _Permutation, i: int) -> str:
    body = (prefix + perm(i))[: length - 1]
    return body + luhn_check_digit(body)


def _add_months(today: date, months: int) -> str:
    m = today.month - 1 + months
    return f"{(today.year + m // 12) % 100:02d}{m % 12 + 1:02d}"


# -- records ----------------------------------------------------------------------


def _embossed(p: Person, limit: int) -> str:
    full = transliterate(f"{p.given} {p.family}")
    if len(full) <= limit:
        return full
    short = transliterate(f"{p.given[:1]} {p.family}")
    return short[:limit].rstrip()


class _FieldMaker:
    def __init__(self, profile: Profile, d: _Draw, today: date) -> None:
        self.d = d
        self.today = today
        self.perms: dict[str, _Permutation] = {}
        for f in profile.input.fields:
            k = self._serial_digits(f)
            if k:
                self.perms[f.name] = _Permutation(d, k)

    @staticmethod
    def _length(f: InputField, default: int) -> int:
        return f.max_length or f.min_length or default

    def _serial_digits(self, f: InputField) -> int:
        prefix = f.sample_prefix or ""
        if f.rule == FieldRule.PAN:
            return self._length(f, 16) - 1 - len(prefix or "999999")
        if f.rule == FieldRule.ICCID:
            return 18 - len(prefix or "8999")
        if f.rule == FieldRule.IMSI:
            return 15 - len(prefix or "00101")
        if f.rule == FieldRule.DIGITS and f.meaning == Meaning.STAFF_NUMBER:
            return self._length(f, 8) - len(prefix)
        return 0

    def value(self, f: InputField, i: int, p: Person) -> str:
        d = self.d
        rule, meaning = f.rule, f.meaning
        if rule == FieldRule.PAN:
            return _luhn_number(
                f.sample_prefix or "999999", self._length(f, 16), self.perms[f.name], i
            )
        if rule == FieldRule.ICCID:
            return _luhn_number(f.sample_prefix or "8999", 19, self.perms[f.name], i)
        if rule == FieldRule.IMSI:
            return (f.sample_prefix or "00101") + self.perms[f.name](i)
        if rule == FieldRule.EXPIRY:
            return _add_months(self.today, 24 + d.below(37))
        if rule == FieldRule.EMBOSS:
            return _embossed(p, min(f.max_length or 27, 27))
        if rule == FieldRule.POSTAL_CODE:
            return p.postal_code
        if rule == FieldRule.COUNTRY:
            return p.country
        if rule == FieldRule.PHOTO:
            return _photo(d)
        if rule == FieldRule.BASE64:
            return base64.b64encode(d.raw(max(1, f.min_length or 16))).decode("ascii")
        if rule == FieldRule.HEX:
            n = self._length(f, 16 if meaning == Meaning.PIN_BLOCK else 32)
            return d.raw(n // 2).hex().upper()
        if rule == FieldRule.DIGITS:
            if f.name in self.perms:
                return (f.sample_prefix or "") + self.perms[f.name](i)
            return d.digits(self._length(f, 4 if meaning == Meaning.PIN_OFFSET else 8))
        if rule == FieldRule.NAME:
            return p.family if meaning == Meaning.FAMILY_NAME else p.given
        by_meaning = {
            Meaning.GIVEN_NAME: p.given,
            Meaning.FAMILY_NAME: p.family,
            Meaning.ADDRESS_LINE: p.address_line1,
            Meaning.ADDRESS_EXTRA: p.address_line2,
            Meaning.CITY: p.city,
        }
        if meaning == Meaning.DEPARTMENT:
            return d.choice(_DEPARTMENTS)
        text = by_meaning.get(meaning, "") if meaning else ""
        if not text and f.required:
            text = "TEST"
        return text[: f.max_length] if f.max_length else text


def generate_records(
    profile: Profile, count: int, seed: int | str | bytes, today: date
) -> Iterator[dict[str, str]]:
    """``count`` synthetic records for ``profile`` (field name -> value), lazily."""
    d = _Draw(SeededRandom(seed).fork(profile.id))
    maker = _FieldMaker(profile, d, today)
    for name, perm in maker.perms.items():
        if count > perm.mod:
            raise ValueError(f"field {name!r} has room for {perm.mod} unique values, not {count}")
    for i in range(count):
        p = _person(d)
        yield {f.name: maker.value(f, i, p) for f in profile.input.fields}


@dataclass(frozen=True, slots=True)
class GeneratedFile:
    """What :func:`write_issuer_file` wrote."""

    header: BatchHeader
    format: str
    records: int
    bytes_written: int


def _seed_text(seed: int | str | bytes) -> str:
    return seed.hex() if isinstance(seed, bytes) else str(seed)


def write_issuer_file(
    profile: Profile,
    out: str | Path | IO[bytes],
    count: int,
    seed: int | str | bytes,
    today: date,
    *,
    fmt: str = "csv",
    issuer: str = "ACME-ISSUER",
    batch_id: str | None = None,
) -> GeneratedFile:
    """Write a synthetic issuer file (header, then ``count`` records) in ``fmt``."""
    if fmt not in ("csv", "jsonl"):
        raise ValueError("format must be csv or jsonl")
    if count < 0:
        raise ValueError("count must be >= 0")
    header = BatchHeader(
        issuer=issuer,
        batch_id=batch_id or f"{profile.id.upper()}-{_seed_text(seed)}",
        profile=profile.id,
        profile_version=profile.version,
        record_count=count,
    )
    if isinstance(out, str | Path):
        with open(out, "wb") as fh:
            return _write(profile, fh, count, seed, today, fmt, header)
    return _write(profile, out, count, seed, today, fmt, header)


def _write(
    profile: Profile,
    fh: IO[bytes],
    count: int,
    seed: int | str | bytes,
    today: date,
    fmt: str,
    header: BatchHeader,
) -> GeneratedFile:
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="", write_through=False)
    written = 0
    try:
        names = [f.name for f in profile.input.fields]
        if fmt == "jsonl":
            text.write(header.jsonl_line() + "\n")
            for rec in generate_records(profile, count, seed, today):
                text.write(json.dumps(rec, ensure_ascii=False, separators=(", ", ": ")) + "\n")
        else:
            text.write(header.csv_line() + "\n")
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(names)
            for rec in generate_records(profile, count, seed, today):
                writer.writerow([rec[n] for n in names])
        text.flush()
        written = fh.tell() if fh.seekable() else 0
    finally:
        text.detach()
    return GeneratedFile(header, fmt, count, written)
