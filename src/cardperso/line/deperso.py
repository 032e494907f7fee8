"""Depersonalization: a card back to INITIALIZED, ready to be personalized again.

The chapter: electrical personalization is the step most prone to errors, and a few
card operating systems let the complete personalization be deleted after suitable
authentication - for test cards, and occasionally for regular cards. Here the
product decides (``depersonalization`` in its profile, naming the admin key); a
product without it is refused before the card is touched.

The procedure, through a reader and a personalization-role HSM session:

1. power up, read the chip serial (``GET DATA DF01``) and the life cycle
   (``DF02``): only a PERSONALIZED or BLOCKED card is depersonalized (an
   INITIALIZED one has nothing to undo);
2. ``GET CHALLENGE``, then ``EXTERNAL AUTHENTICATE`` of the admin key with the
   HSM's cryptogram from KM and the serial (KD never leaves the HSM);
3. ``DEPERSONALIZE`` (``80 EE``, docs/card-os.md §4.4): the card erases what
   personalization added, one transaction per object, resumable after a power cut;
4. check the life cycle is INITIALIZED.

With a database, :func:`depersonalize_card` authorizes the operator (a supervisor),
and writes the outcome to the hash-chained audit log, with the chip serial.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardperso import tlv
from cardperso.crypto.rand import RandomSource, SystemRandom
from cardperso.dataprep.prepare import external_auth_step
from cardperso.dataprep.prepared import Step, StepKind
from cardperso.errors import CardpersoError, ReaderError
from cardperso.hsm import Hsm, Role
from cardperso.line.chip import ChipFailure, KeyCache, StepRunner, read_serial
from cardperso.production import audit
from cardperso.production.db import Database
from cardperso.production.operators import Action, Principal, authorize
from cardperso.profiles.schema import Profile
from cardperso.readers import Reader, cos, exchange

__all__ = ["DepersoError", "DepersoResult", "depersonalize", "depersonalize_card"]

_STATES = {
    cos.MANUFACTURED: "manufactured",
    cos.INITIALIZED: "initialized",
    cos.PERSONALIZED: "personalized",
    cos.BLOCKED: "blocked",
    cos.TERMINATED: "terminated",
}


class DepersoError(CardpersoError):
    """Depersonalization refused or failed; names the product or step, never data."""

    exit_code = 4


@dataclass(frozen=True, slots=True)
class DepersoResult:
    serial: str
    before: str
    modeled_s: float
    hsm_calls: int


def _life_cycle(reader: Reader) -> int:
    r = exchange(reader, cos.get_data(0xDF02))
    if r.sw != 0x9000:
        raise DepersoError(f"GET DATA DF02 answered {r.sw:04X}")
    try:
        return tlv.to_dict(r.data)[0xDF02][0]
    except (tlv.TlvError, KeyError, IndexError):
        raise DepersoError("GET DATA DF02: malformed answer") from None


def _auth_step(profile: Profile) -> Step:
    dp = profile.depersonalization
    if dp is None:
        raise DepersoError(f"profile {profile.id} does not allow depersonalization")
    key = profile.key(dp.key)
    if key is None or not key.master_key:  # the profile's consistency rules exclude this
        raise DepersoError(f"profile {profile.id}: no admin key {dp.key!r}")
    return external_auth_step(key, "chip_serial", sm=False)


def depersonalize(
    reader: Reader, keys: KeyCache, profile: Profile, rng: RandomSource | None = None
) -> DepersoResult:
    """Run the procedure of the module notes on the card in ``reader``."""
    step = _auth_step(profile)  # refused before the card is touched
    t0 = reader.elapsed
    try:
        reader.reset()
        serial = read_serial(reader)
        state = _life_cycle(reader)
        if state not in (cos.PERSONALIZED, cos.BLOCKED):
            raise DepersoError(
                f"card {serial.hex().upper()} is {_STATES.get(state, f'{state:02X}')}: "
                "only a personalized or blocked card is depersonalized"
            )
        runner = StepRunner("deperso", reader, keys, serial, rng or SystemRandom())
        runner.run(
            (
                step,
                Step(StepKind.APDU, "DEPERSONALIZE", apdu=cos.depersonalize()),
                Step(
                    StepKind.APDU,
                    "GET DATA DF02 (life cycle INITIALIZED)",
                    apdu=cos.get_data(0xDF02),
                    expect_data=bytes([0xDF, 0x02, 0x01, cos.INITIALIZED]),
                ),
            )
        )
    except ChipFailure as e:
        raise DepersoError(f"depersonalization failed: {e.reason}") from None
    except ReaderError as e:
        raise DepersoError(f"depersonalization failed: {e}") from None
    return DepersoResult(
        serial.hex().upper(),
        _STATES.get(state, f"{state:02X}"),
        reader.elapsed - t0,
        runner.hsm_calls,
    )


def depersonalize_card(
    db: Database,
    hsm: Hsm,
    profile: Profile,
    reader: Reader,
    *,
    by: Principal,
    rng: RandomSource | None = None,
) -> DepersoResult:
    """Authorize ``by`` (a supervisor), depersonalize the card, audit the outcome."""
    obj = f"product:{profile.id}"
    with db.transaction() as s:
        authorize(s, by, Action.DEPERSONALIZE_CARD, obj, db.now())
    try:
        with hsm.session(Role.PERSONALIZATION, f"depersonalization by {by.name}") as session:
            result = depersonalize(reader, KeyCache(session), profile, rng)
    except DepersoError as e:
        with db.transaction() as s:
            audit.append(
                s,
                actor=by.name,
                action="depersonalize_card",
                obj=obj,
                result="refused",
                when=db.now(),
                detail={"reason": str(e)[:200]},
            )
        raise
    with db.transaction() as s:
        audit.append(
            s,
            actor=by.name,
            action="depersonalize_card",
            obj=f"chip:{result.serial}",
            result="ok",
            when=db.now(),
            detail={"product": profile.id, "version": profile.version, "before": result.before},
        )
    return result
