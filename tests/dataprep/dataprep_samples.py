"""Hand-written issuer records and file writers shared by the data-preparation tests."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import date
from typing import Any

TODAY = date(2026, 3, 15)


def _pbm(w: int = 16, h: int = 16) -> str:
    rows = bytes([0xF0, 0x0F] * (w // 8 // 2 * h)) if w == 16 else bytes((w + 7) // 8 * h)
    return base64.b64encode(f"P4\n{w} {h}\n".encode() + rows).decode()


PHOTO = _pbm()

DEBIT = [
    {
        "pan": "4761739001010010",
        "expiry": "2812",
        "embossed_name": "JUERGEN MUELLER",
        "given_name": "Jürgen",
        "family_name": "Müller",
        "address_line1": "Hauptstraße 5",
        "address_line2": "",
        "postal_code": "10115",
        "city": "Berlin",
        "country": "DE",
    },
    {
        "pan": "4761739001010028",
        "expiry": "2901",
        "embossed_name": "SIOBHAN O'BRIEN",
        "given_name": "Siobhán",
        "family_name": "O'Brien",
        "address_line1": "12 High Street",
        "address_line2": "Flat 2",
        "postal_code": "SW1A 1AA",
        "city": "London",
        "country": "GB",
    },
    {
        "pan": "4761739001010036",
        "expiry": "3006",
        "embossed_name": "ANOUK DE VRIES",
        "given_name": "Anouk",
        "family_name": "de Vries",
        "address_line1": "Kerkstraat 7",
        "address_line2": "",
        "postal_code": "1012 AB",
        "city": "Amsterdam",
        "country": "NL",
    },
]

SIM = [
    {
        "iccid": "8949001000000000017",
        "imsi": "001010000000001",
        "ki": "000102030405060708090A0B0C0D0E0F",
        "opc": "F0E0D0C0B0A090807060504030201000",
        "given_name": "Camille",
        "family_name": "Lefèvre",
        "address_line1": "3 rue Pasteur",
        "address_line2": "",
        "postal_code": "75005",
        "city": "Paris",
        "country": "FR",
    },
    {
        "iccid": "8949001000000000025",
        "imsi": "001010000000002",
        "ki": "101112131415161718191A1B1C1D1E1F",
        "opc": "E0E1E2E3E4E5E6E7E8E9EAEBECEDEEEF",
        "given_name": "James",
        "family_name": "Miller",
        "address_line1": "1200 Main Street",
        "address_line2": "Apt 4B",
        "postal_code": "60601-1234",
        "city": "Chicago, IL",
        "country": "US",
    },
]

EMPLOYEE = [
    {
        "staff_number": "10000001",
        "given_name": "Greta",
        "family_name": "Schäfer",
        "department": "Research & Development",
        "valid_until": "2902",
        "photo": PHOTO,
        "address_line1": "Werkstraße 1",
        "postal_code": "80331",
        "city": "München",
        "country": "DE",
    },
]

PROFILE_RECORDS = {"debit": DEBIT, "sim": SIM, "employee": EMPLOYEE}


def header(profile: str, count: int, over: dict[str, Any] | None = None) -> dict[str, Any]:
    h: dict[str, Any] = {
        "format": "cardperso-issuer/1",
        "issuer": "ACME-BANK",
        "batch_id": "B0001",
        "profile": profile,
        "profile_version": 1,
        "record_count": count,
    }
    h.update(over or {})
    return h


def render_jsonl(head: dict[str, Any] | None, records: list[dict[str, Any]]) -> bytes:
    lines = [json.dumps(head, ensure_ascii=False)] if head is not None else []
    lines += [json.dumps(r, ensure_ascii=False) for r in records]
    return ("\n".join(lines) + "\n").encode("utf-8")


def render_csv(
    head: dict[str, Any] | None, records: list[dict[str, Any]], columns: list[str] | None = None
) -> bytes:
    out = io.StringIO()
    if head is not None:
        out.write("# " + " ".join(f"{k}={v}" for k, v in head.items()) + "\n")
    cols = columns if columns is not None else list(records[0])
    w = csv.writer(out, lineterminator="\n")
    w.writerow(cols)
    for r in records:
        w.writerow([r.get(c, "") for c in cols])
    return out.getvalue().encode("utf-8")


def copy_records(profile: str) -> list[dict[str, Any]]:
    return [dict(r) for r in PROFILE_RECORDS[profile]]
