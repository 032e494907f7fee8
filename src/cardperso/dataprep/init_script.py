"""The logical initialization script of a profile: what every blank card gets first.

Initialization (the chapter's phase before personalization, Figure 10.63's first
room) loads the operating-system-level structure and the card-specific key KD.
For one profile it is the same script for every card except KD, so it is made
once per profile, not per record. The initialization station runs, on a blank
(MANUFACTURED) card, in this order:

1. :attr:`InitScript.structure` - CREATE FILE for every file of the profile's tree
   (each DF selected before its children are created), the data that is the same
   on every card (mappings with literal content only), and transport PINs (the
   same trivial value on every card, with the card's transport flag). This part
   holds nothing card-specific: it is also what a golden card gets before its
   memory image is read out (loading method ``image``, docs/card-os.md §7.3);
2. the record's own :attr:`~cardperso.dataprep.prepared.PreparedCard.init_steps`,
   if it has any: record data for files that personalization could no longer
   write (an update condition of ``never`` or a PIN, such as a SIM's EF.ICCID);
3. :attr:`InitScript.keys` - one ``load_kd`` step per key derived from the chip
   serial: the station reads the serial (GET DATA ``DF01``), obtains KD from the
   HSM's ``kd_for_initialization`` (initialization role only) and sends PUT KEY in
   clear, which the card accepts only while MANUFACTURED;
4. :attr:`InitScript.finish` - SET LIFECYCLE INITIALIZED, which closes physical
   memory access and from then on enforces every access condition.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cardperso import tlv
from cardperso.apdu import CommandAPDU
from cardperso.dataprep.chipsteps import file_steps, select_apdu
from cardperso.dataprep.filedata import file_writes
from cardperso.dataprep.prepared import Step, StepKind
from cardperso.dataprep.secrets import (
    kd_scheme,
    put_key_header,
    put_key_prefix,
    put_pin_header,
    put_pin_prefix,
)
from cardperso.profiles.schema import (
    DataMapping,
    Element,
    KeyRoute,
    PinMethod,
    Profile,
)
from cardperso.readers import cos

__all__ = ["INIT_FORMAT_ID", "InitScript", "build_init_script", "is_constant"]

INIT_FORMAT_ID = "cardperso-init/1"


def _constant(el: Element) -> bool:
    if el.children is not None:
        return all(_constant(c) for c in el.children)
    return el.literal is not None


def is_constant(m: DataMapping) -> bool:
    """True if a mapping writes the same bytes on every card (literal content only)."""
    return all(_constant(el) for el in m.content)


@dataclass(frozen=True, slots=True)
class InitScript:
    """The initialization script of one profile version (see the module notes)."""

    profile: str
    profile_version: int
    structure: tuple[Step, ...]
    keys: tuple[Step, ...]
    finish: tuple[Step, ...]

    def steps(self, per_card: tuple[Step, ...] = ()) -> tuple[Step, ...]:
        """The whole script for one card, with its ``init_steps`` in their place."""
        return self.structure + per_card + self.keys + self.finish

    def to_json(self) -> dict[str, Any]:
        return {
            "format": INIT_FORMAT_ID,
            "profile": {"id": self.profile, "version": self.profile_version},
            "structure": [s.to_json() for s in self.structure],
            "keys": [s.to_json() for s in self.keys],
            "finish": [s.to_json() for s in self.finish],
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=1) + "\n").encode("ascii")

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InitScript:
        if d.get("format") != INIT_FORMAT_ID:
            raise ValueError(f"not an initialization script (format {INIT_FORMAT_ID} expected)")
        return cls(
            d["profile"]["id"],
            int(d["profile"]["version"]),
            tuple(Step.from_json(s) for s in d["structure"]),
            tuple(Step.from_json(s) for s in d["keys"]),
            tuple(Step.from_json(s) for s in d["finish"]),
        )


def _create_steps(profile: Profile) -> list[Step]:
    steps: list[Step] = []
    for node in profile.files:
        if node.parent is not None:
            parent = profile.file_path(node.parent)
            steps.append(Step(StepKind.APDU, f"SELECT {node.parent}", apdu=select_apdu(parent)))
        steps.append(
            Step(StepKind.APDU, f"CREATE FILE {node.name}", apdu=cos.create_file(node.fcp()))
        )
    return steps


def _constant_steps(profile: Profile) -> list[Step]:
    steps: list[Step] = []
    records: dict[str, int] = {}
    for m in profile.data:
        if not is_constant(m):
            continue
        node = profile.file(m.file)
        assert node is not None  # the profile's consistency checks guarantee it
        (write,) = file_writes(profile.model_copy(update={"data": [m]}), {})
        more, records[m.file] = file_steps(
            node, write, sm=False, read_back=False, records_present=records.get(m.file, 0)
        )
        steps.extend(more)
    return steps


def _transport_pin_steps(profile: Profile) -> list[Step]:
    steps: list[Step] = []
    for p in profile.pins:
        if p.method != PinMethod.TRANSPORT:
            continue
        assert p.transport_value is not None  # required for the method by the profile checks
        data = put_pin_prefix(profile, p) + tlv.encode(0x8F, cos.format2(p.transport_value))
        cla, ins, p1, p2 = put_pin_header(p)
        apdu = CommandAPDU(cla, ins, p1, p2, data).to_bytes()
        steps.append(
            Step(StepKind.APDU, f"PUT PIN {p.name} (transport PIN, ref {p.ref})", apdu=apdu)
        )
    return steps


def _kd_steps(profile: Profile) -> list[Step]:
    steps: list[Step] = []
    for i, k in enumerate(profile.keys):
        if k.route != KeyRoute.DERIVED_KD or k.diversifier != "chip_serial":
            continue
        steps.append(
            Step(
                StepKind.LOAD_KD,
                f"PUT KEY {k.name} (KD from {k.master_key} and the chip serial, ref {k.ref})",
                header=put_key_header(k),
                data=put_key_prefix(k, f"keys[{i}]"),
                key_ref=k.ref,
                master_key=k.master_key or "",
                diversifier="chip_serial",
                scheme=kd_scheme(k).value,
            )
        )
    return steps


def build_init_script(profile: Profile) -> InitScript:
    """The initialization script of ``profile`` (ConfigError for a key the card cannot hold)."""
    structure = _create_steps(profile) + _constant_steps(profile) + _transport_pin_steps(profile)
    finish = (
        Step(
            StepKind.APDU,
            "SET LIFECYCLE INITIALIZED",
            apdu=cos.set_lifecycle(cos.INITIALIZED),
        ),
    )
    return InitScript(
        profile.id, profile.version, tuple(structure), tuple(_kd_steps(profile)), finish
    )
