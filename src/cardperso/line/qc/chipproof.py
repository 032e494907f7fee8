"""The HSM check: the card proves each personalized key to the security module.

At the QC station the chip is powered once more (its own contact head) and, through
an HSM session of the QC role, every key of the product is proved by the strongest
authentication its usage allows, on a fresh random challenge:

=====================  =====================================================================
key                    proof
=====================  =====================================================================
derived, ``int_auth``  INTERNAL AUTHENTICATE: the card answers CMAC_K(88 || challenge); the
                       HSM derives K from the master key and the chip serial (or the card
                       data the key is diversified with) and verifies the answer
                       (``verify_card_cryptogram``) - the key never leaves either side
derived, ``sm``        GENERAL AUTHENTICATE: the HSM checks the card's cryptogram over a
                       fresh host random (``card_sm_open``), the card the host's
derived, ``ext_auth``  GET CHALLENGE + EXTERNAL AUTHENTICATE with the HSM's cryptogram
                       (``external_auth_cryptogram``): the card checks it
card-generated EC      INTERNAL AUTHENTICATE: an ECDSA signature of the challenge, checked
                       with the public key the card gave at personalization (the one going
                       to the issuer)
issuer / bureau key    INTERNAL AUTHENTICATE answers with a MAC of the right length: the key
with ``int_auth``      is *present*; its value cannot be checked with the QC role's HSM
                       operations (they derive keys; none takes a wrapped key), so it is
                       reported as unproven (see the report of issue 7)
=====================  =====================================================================

PINs: a clear PIN may not reach the host, and no QC operation of the HSM turns a
PIN block or a prepared PIN cryptogram into a VERIFY for the card, so the PIN
*value* is not presented. What QC checks without it is each PIN object's state:
VERIFY with no data (the status query of ISO/IEC 7816-4) must answer ``63Cx`` with
x = the product's try limit (present, unused, not blocked), or ``6984`` for a
transport PIN.

Last, the check reads the chip's PAN (the record data holding tag ``5A`` or ``57``;
in plain if the file may always be read, else under secure messaging opened with
the loading key) for QC's cross-check of the PAN across stripe, body and chip.

The diversifier of a derived key is the chip serial the card reports, the one a
prepared authentication step names, or - for a key diversified with the PAN (EMV
Option A) - the database's PAN. A key whose diversifier the prepared card does not
carry is reported as unproven.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

from cardperso import tlv
from cardperso.crypto.ec import p256_verify
from cardperso.crypto.rand import RandomSource
from cardperso.dataprep.magstripe import MagstripeError, parse_track1, parse_track2
from cardperso.dataprep.prepared import PreparedCard, Step, StepKind
from cardperso.dataprep.secrets import diversifier as field_diversifier
from cardperso.dataprep.secrets import kd_scheme
from cardperso.errors import CardpersoError, HsmError, ReaderError
from cardperso.hsm import KdScheme
from cardperso.line.chip import ChipFailure, KeyCache, StepRunner, read_serial
from cardperso.profiles.schema import (
    CardKey,
    FieldRule,
    KeyAlgorithm,
    KeyRoute,
    KeyUsage,
    PinMethod,
    Profile,
)
from cardperso.readers import Reader, cos

__all__ = [
    "PAN_KEY",
    "ChipProof",
    "KeyProof",
    "ProofPlan",
    "ProofResult",
    "chip_pan",
    "collect_pan",
    "proof_plan",
]

STATION = "qc"
_PAN_TAGS = (0x5A, 0x57)
PAN_KEY = "qc:pan"
"""Where a check keeps the chip's answer holding the PAN."""


@dataclass(frozen=True, slots=True)
class KeyProof:
    """How one card key is proved (see the module notes)."""

    name: str
    ref: int
    how: str
    """``internal_auth``, ``secure_messaging``, ``external_auth``, ``signature`` or
    ``present`` (answers, value not checkable)."""
    block: int = 16
    master_key: str = ""
    diversifier: str = ""
    scheme: str = ""


@dataclass(frozen=True, slots=True)
class ProofPlan:
    """What the HSM check does for one card."""

    keys: tuple[KeyProof, ...]
    pins: tuple[tuple[str, int, int], ...]
    """(name, reference, the status word VERIFY's status query must give)."""
    unproven: tuple[str, ...]
    """Keys whose value no QC operation can check (name: why)."""
    pan_read: tuple[Step, ...] = ()


@dataclass
class ProofResult:
    """The HSM check of one card: pass/fail, why, and what it cost."""

    ok: bool
    reason: str = ""
    chip_pan: str | None = None
    reads_pan: bool = False
    """The plan reads the chip's PAN (then ``chip_pan`` must be found)."""
    proven: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    pins: int = 0
    hsm_calls: int = 0
    chip_s: float = 0.0

    def as_detail(self) -> dict[str, object]:
        out: dict[str, object] = {"proven": len(self.proven), "pins": self.pins}
        if self.present:
            out["present_only"] = sorted(self.present)
        out["hsm_calls"] = self.hsm_calls
        return out


# -- the plan -------------------------------------------------------------------------


def _tlv_values(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Every (tag, value) in BER-TLV ``data``, constructed objects opened (depth first)."""
    try:
        objects = tlv.decode(data)
    except tlv.TlvError:
        return
    for tag, value in objects:
        yield tag, value
        first = tag >> (8 * ((tag.bit_length() - 1) // 8)) if tag else 0
        if first & 0x20:  # constructed
            yield from _tlv_values(value)


def chip_pan(data: bytes) -> str | None:
    """The PAN in record data: tag 5A (cn, F-padded) or tag 57 (track 2 equivalent)."""
    for tag, value in _tlv_values(data):
        if tag in _PAN_TAGS:
            digits = value.hex().upper()
            pan = digits.split("D")[0] if tag == 0x57 else digits.rstrip("F")
            if pan.isdigit():
                return pan
    return None


def database_pan(card: PreparedCard) -> str | None:
    """The PAN the production database holds for the card: the prepared stripe, else the
    chip data the script writes."""
    for number, parse in ((2, parse_track2), (1, parse_track1)):
        text = card.tracks.get(number)
        if text:
            try:
                return parse(text).pan
            except MagstripeError:
                return None
    for step in card.script:
        if step.expect_data is not None:
            pan = chip_pan(step.expect_data)
            if pan is not None:
                return pan
    return None


def _pan_read(profile: Profile, card: PreparedCard) -> tuple[Step, ...]:
    """SELECT and READ of the first read-back holding the PAN: in plain when the file
    may always be read, else under secure messaging opened with the loading key."""
    script = card.script
    opening = next((s for s in script if s.kind is StepKind.OPEN_SM), None)
    select: Step | None = None
    for step in script:
        if step.kind is not StepKind.APDU:
            continue
        if len(step.apdu) > 1 and step.apdu[1] == 0xA4:
            select = step
        elif step.expect_data is not None and chip_pan(step.expect_data) is not None:
            if select is None:
                return ()
            read = dataclasses.replace(step, expect_data=None, collect=PAN_KEY)
            node = profile.file(select.note.removeprefix("SELECT "))
            if node is not None and node.access.read == "always":
                plain = dataclasses.replace(select, sm=False), dataclasses.replace(read, sm=False)
                return plain
            return tuple(s for s in (opening, select, read) if s is not None)
    return ()


def collect_pan(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    """``steps`` (a command/response check) with the first read-back that verifies the
    PAN also keeping its answer under :data:`PAN_KEY`, for QC's cross-check."""
    for i, step in enumerate(steps):
        if (
            step.kind is StepKind.APDU
            and step.expect_data is not None
            and not step.collect
            and chip_pan(step.expect_data) is not None
        ):
            return (*steps[:i], dataclasses.replace(step, collect=PAN_KEY), *steps[i + 1 :])
    return steps


def _is_pan_field(profile: Profile, name: str) -> bool:
    if profile.magstripe is not None and profile.magstripe.pan_field == name:
        return True
    return any(f.name == name and f.rule == FieldRule.PAN for f in profile.input.fields)


def _diversifier(profile: Profile, card: PreparedCard, key: CardKey) -> str | None:
    """'chip_serial', the hex a prepared authentication names, the database PAN's
    diversifier, or None (not in the prepared card)."""
    if key.diversifier == "chip_serial":
        return "chip_serial"
    for step in card.script:
        if (
            step.kind in (StepKind.OPEN_SM, StepKind.EXTERNAL_AUTH)
            and step.key_ref == key.ref
            and step.master_key == key.master_key
        ):
            return step.diversifier
    if _is_pan_field(profile, key.diversifier):
        pan = database_pan(card)
        if pan is not None:
            return field_diversifier(key, {key.diversifier: pan}).hex().upper()
    return None


def proof_plan(profile: Profile, card: PreparedCard) -> ProofPlan:
    """The HSM check of ``card`` (a record of ``profile``): see the module notes."""
    keys: list[KeyProof] = []
    unproven: list[str] = []
    for k in profile.keys:
        usage = set(k.usage)
        block = 8 if k.algorithm in (KeyAlgorithm.TDES2, KeyAlgorithm.TDES3) else 16
        if k.algorithm is KeyAlgorithm.EC_P256:
            if KeyUsage.INT_AUTH in usage:
                keys.append(KeyProof(k.name, k.ref, "signature", 32))
            else:
                unproven.append(f"{k.name}: an EC key for key agreement only")
            continue
        if k.route is KeyRoute.DERIVED_KD and k.master_key is not None:
            div = _diversifier(profile, card, k)
            how = (
                "internal_auth"
                if KeyUsage.INT_AUTH in usage
                else "secure_messaging"
                if KeyUsage.SM in usage
                else "external_auth"
                if KeyUsage.EXT_AUTH in usage
                else None
            )
            if div is None:
                unproven.append(f"{k.name}: its diversifier is not in the prepared card")
            elif how is None:
                unproven.append(f"{k.name}: no authentication usage")
            else:
                keys.append(
                    KeyProof(k.name, k.ref, how, block, k.master_key, div, kd_scheme(k).value)
                )
            continue
        if KeyUsage.INT_AUTH in usage:
            keys.append(KeyProof(k.name, k.ref, "present", block))
        unproven.append(f"{k.name}: a {k.route.value} key (no QC operation checks its value)")
    pins = tuple(
        (p.name, p.ref, 0x6984 if p.method is PinMethod.TRANSPORT else 0x63C0 | p.try_limit)
        for p in profile.pins
    )
    order = {"signature": 0, "present": 0, "internal_auth": 0, "external_auth": 1}
    keys.sort(key=lambda kp: order.get(kp.how, 2))
    return ProofPlan(tuple(keys), pins, tuple(unproven), _pan_read(profile, card))


# -- the check ------------------------------------------------------------------------


def _public_point(collected: bytes) -> bytes | None:
    """The uncompressed point in a GENERATE ASYMMETRIC KEY PAIR answer (7F49 { 86 })."""
    for tag, value in _tlv_values(collected):
        if tag == 0x86 and len(value) == 65:
            return value
    return None


class ChipProof:
    """Runs :func:`proof_plan` on a card through one QC-role HSM session."""

    def __init__(self, keys: KeyCache, rng: RandomSource, card_secret: str = "CARD.SECRET") -> None:  # noqa: S107 - a key label
        self.keys = keys
        self.rng = rng
        self.card_secret = card_secret

    def run(
        self,
        reader: Reader,
        serial: str,
        plan: ProofPlan,
        collected: dict[str, bytes],
    ) -> ProofResult:
        """Power the card, prove its keys and PIN objects, read its PAN; then power off."""
        result = ProofResult(True)
        t0 = reader.elapsed
        runner: StepRunner | None = None
        try:
            try:
                reader.reset()
                reported = read_serial(reader)
            except ReaderError as e:
                return _fail(result, f"the card does not answer at QC: {e}")
            if reported.hex().upper() != serial:
                return _fail(result, "the chip at QC is not the card's chip (serial differs)")
            runner = StepRunner(STATION, reader, self.keys, reported, self.rng, self.card_secret)
            return self._check(runner, plan, collected, result, ())
        finally:
            if runner is not None:
                result.hsm_calls += runner.hsm_calls
            result.chip_s = reader.elapsed - t0
            with contextlib.suppress(ReaderError):
                reader.close()

    def run_after_check(
        self,
        runner: StepRunner,
        plan: ProofPlan,
        collected: dict[str, bytes],
        checked: tuple[Step, ...],
    ) -> ProofResult:
        """The same check in the power-up that has just passed the command/response check
        (``checked``, run by ``runner`` with a QC-role session): the keys those steps
        authenticated with count as proven, the PAN is the one its read-back verified
        (:func:`collect_pan`), and the card stays powered. One power cycle and the
        repeated authentications less than :meth:`run`."""
        result = ProofResult(True)
        t0, calls0 = runner.reader.elapsed, runner.hsm_calls
        try:
            return self._check(runner, plan, collected, result, checked)
        finally:
            result.hsm_calls += runner.hsm_calls - calls0
            result.chip_s = runner.reader.elapsed - t0

    def _check(
        self,
        runner: StepRunner,
        plan: ProofPlan,
        collected: dict[str, bytes],
        result: ProofResult,
        checked: tuple[Step, ...],
    ) -> ProofResult:
        # A key the check authenticated with (GENERAL AUTHENTICATE's mutual
        # authentication, EXTERNAL AUTHENTICATE) is proven, whatever proof it would get.
        done = {
            (s.key_ref, s.master_key, s.diversifier, s.scheme)
            for s in checked
            if s.kind in (StepKind.OPEN_SM, StepKind.EXTERNAL_AUTH)
        }
        for kp in plan.keys:
            if kp.master_key and (kp.ref, kp.master_key, kp.diversifier, kp.scheme) in done:
                result.proven.append(kp.name)
                continue
            why = self._prove(runner, runner.serial, kp, collected, result)
            if why:
                return _fail(result, f"{kp.name} (ref {kp.ref}): {why}")
        for name, ref, expect in plan.pins:
            probe = Step(StepKind.APDU, f"VERIFY {name} status", apdu=cos.verify(ref))
            try:
                runner.run([dataclasses.replace(probe, expect_sw=expect)])
            except ChipFailure as e:
                return _fail(result, f"PIN {name} (ref {ref}) state: {e.reason}")
            result.pins += 1
        if plan.pan_read:
            result.reads_pan = True
            if PAN_KEY not in runner.collected:
                try:
                    runner.run(plan.pan_read)
                except ChipFailure as e:
                    return _fail(result, f"PAN read-back: {e.reason}")
            result.chip_pan = chip_pan(runner.collected.get(PAN_KEY, b""))
        return result

    def _prove(
        self,
        runner: StepRunner,
        serial: bytes,
        kp: KeyProof,
        collected: dict[str, bytes],
        result: ProofResult,
    ) -> str:
        """Prove one key; "" or why it failed."""
        note = f"{kp.how.replace('_', ' ')} of {kp.name} (ref {kp.ref})"
        if kp.how in ("secure_messaging", "external_auth"):
            kind = StepKind.OPEN_SM if kp.how == "secure_messaging" else StepKind.EXTERNAL_AUTH
            step = Step(
                kind,
                note,
                apdu=cos.get_challenge(kp.block) if kind is StepKind.EXTERNAL_AUTH else b"",
                key_ref=kp.ref,
                master_key=kp.master_key,
                diversifier=kp.diversifier,
                scheme=kp.scheme,
            )
            try:
                runner.run([step])
            except ChipFailure as e:
                return e.reason
            result.proven.append(kp.name)
            return ""
        challenge = self.rng.random_bytes(kp.block)
        step = Step(
            StepKind.APDU,
            note,
            apdu=cos.internal_authenticate(kp.ref, challenge),
            collect="qc:ia",
        )
        try:
            runner.run([step])
        except ChipFailure as e:
            return e.reason
        answer = runner.collected.pop("qc:ia", b"")
        if kp.how == "present":
            if len(answer) != kp.block:
                return "INTERNAL AUTHENTICATE answer has the wrong length"
            result.present.append(kp.name)
            return ""
        if kp.how == "signature":
            point = _public_point(collected.get(f"public_key:{kp.name}", b""))
            if point is None:
                return "no public key was collected at personalization"
            try:
                good = p256_verify(point, challenge, answer)
            except CardpersoError:
                good = False
            if not good:
                return "the card's signature does not verify with its public key"
            result.proven.append(kp.name)
            return ""
        div = serial if kp.diversifier == "chip_serial" else bytes.fromhex(kp.diversifier)
        result.hsm_calls += 1
        try:
            good = self.keys.session.verify_card_cryptogram(
                self.keys.get(kp.master_key), div, challenge, answer, scheme=KdScheme(kp.scheme)
            )
        except HsmError as e:
            return f"HSM: {e}"
        if not good:
            return "the card's INTERNAL AUTHENTICATE answer does not verify in the HSM"
        result.proven.append(kp.name)
        return ""


def _fail(result: ProofResult, reason: str) -> ProofResult:
    result.ok = False
    result.reason = f"hsm check: {reason}"[:200]
    return result
