"""ECDH-protected personalization on the line (docs/card-os.md §8.3).

The employee profile loads under keys agreed by ECDH with the card's KEY_LOAD pair,
inside a session KD_ADMIN opened. A batch runs through the line with a tap on every
slot; the trace from personalization on carries no secret the card holds, every
prepared secret was opened by the HSM into an ECDH-keyed channel, and the finished
cards work. A power cut after the agreement is retried: the runner repeats the KD
opening and the agreement before the failed step.
"""

from __future__ import annotations

import json
from pathlib import Path

from cardperso.card.objects import read_value
from cardperso.card.store import ObjType
from cardperso.crypto.rand import SeededRandom
from cardperso.dataprep.generator import generate_records
from cardperso.dataprep.prepare import CardPreparer
from cardperso.dataprep.prepared import PreparedCard, StepKind
from cardperso.hsm import Role, SoftHsm
from cardperso.line.chip import ChipFailure, KeyCache, StepRunner
from cardperso.line.feeder import SimulatedFeeder
from cardperso.line.orchestrator import LineConfig
from cardperso.line.usecases import run_batch
from cardperso.production.db import Database
from cardperso.profiles.loader import load_builtin
from cardperso.readers import Reader, cos, exchange
from cardperso.readers.virtual import VirtualReader, virtual_reader
from production.support import Staff
from readers.tap import Tap

from .kit import TODAY, import_product, stock_seed


def _held_secrets(reader: VirtualReader) -> dict[str, bytes]:
    """Every PIN block and key the card holds, and its EC private keys."""
    chip = reader.card
    out = {}
    for _, e in chip.st.iter_entries():
        if e.type in (ObjType.PIN, ObjType.KEY):
            out[f"{e.type.name} {e.fid}"] = read_value(chip, e)
        elif e.type is ObjType.ECKEY:
            out[f"EC key {e.fid}"] = read_value(chip, e)[:32]
    return out


def test_employee_batch_loads_by_ecdh_on_the_line(
    sqlite_db: Database, hsm: SoftHsm, tmp_path: Path
) -> None:
    staff = Staff(sqlite_db)
    count = 6
    batch_id = import_product(sqlite_db, hsm, staff, "employee", count, tmp_path, spare=0.0)
    taps: dict[str, Tap] = {}

    def tap(module_id: str, serial: str, reader: Reader) -> Reader:
        assert isinstance(reader, VirtualReader)
        taps[serial] = Tap(reader)
        return taps[serial]

    feeder = SimulatedFeeder(stock_seed("employee"), fault=tap)
    config = LineConfig(modules=2, seed="ecdh")
    result = run_batch(sqlite_db, hsm, batch_id, by=staff.operator, feeder=feeder, config=config)
    assert result.batch_done and result.good == count and not result.rejected
    assert len(taps) == count

    # The HSM opened one ECDH channel per card, and every prepared PIN or key went
    # into such a channel (a KD-keyed one never carried one).
    records = [json.loads(line) for line in hsm.audit_path.read_text().splitlines()]
    opened = [r for r in records if r["operation"] == "card_sm_open_ecdh"]
    assert len(opened) == count and all(r["result"] == "ok" for r in opened)
    ecdh_channels = {r["detail"]["ecdh_channel"] for r in opened}
    secrets = [
        r for r in records if r["operation"] == "card_sm_wrap" and "card_secret" in r["detail"]
    ]
    assert len(secrets) == count  # the PUK of each card
    assert {r["detail"]["channel"] for r in secrets} <= ecdh_channels

    qc = hsm.session(Role.QC, "ecdh-test")
    km = qc.get_key("KM.EMPLOYEE.ADMIN")
    for serial, t in taps.items():
        # From personalization on (the first GENERAL AUTHENTICATE), nothing in clear.
        start = next(i for i, apdu in enumerate(t.trace[::2]) if apdu[1:2] == b"\x86")
        perso = b"\x00".join(t.trace[2 * start :])
        held = _held_secrets(t.inner)
        assert {"PIN 2", "KEY 1", "EC key 2", "EC key 3"} <= set(held)
        assert [name for name, value in held.items() if value in perso] == []
        # The finished card works: the transport PIN changes, KD_ADMIN authenticates.
        reader = t.inner
        reader.reset()
        change = cos.change_reference_data(1, cos.format2("000000"), cos.format2("314159"))
        assert exchange(reader, change).sw == 0x9000
        challenge = exchange(reader, cos.get_challenge(16)).data
        cg = qc.external_auth_cryptogram(km, bytes.fromhex(serial), challenge)
        assert exchange(reader, cos.external_authenticate(1, cg)).sw == 0x9000
        assert exchange(reader, cos.get_data(0xDF02)).data[-1] == cos.PERSONALIZED


def test_a_power_cut_after_the_agreement_is_retried_with_a_fresh_agreement(
    hsm: SoftHsm,
) -> None:
    profile = load_builtin("employee")
    dp = hsm.session(Role.DATAPREP, "dataprep")
    preparer = CardPreparer(profile, dp, batch_id="ECDH-RESUME")
    cards, _ = preparer.prepare([(1, 2, next(generate_records(profile, 1, 9, TODAY)))])
    card = PreparedCard.from_line(cards[0].to_line())
    serial = bytes.fromhex("EC0D000000000001")
    reader = virtual_reader(1, serial=serial)
    reader.reset()
    rng = SeededRandom("resume")
    init = KeyCache(hsm.session(Role.INITIALIZATION, "init"))
    StepRunner("init", reader, init, serial, rng).run(preparer.init_script.steps(card.init_steps))

    script = card.script
    agree = next(i for i, s in enumerate(script) if s.kind is StepKind.OPEN_ECDH)
    secret = next(i for i, s in enumerate(script) if s.kind is StepKind.SECRET)
    assert agree < secret
    assert [i for i, _ in StepRunner.context(script, secret)] == [0, agree]
    pers = StepRunner(
        "perso", reader, KeyCache(hsm.session(Role.PERSONALIZATION, "p")), serial, rng
    )
    pers.run(script[:secret])
    first = pers.channel
    reader.card.eeprom.arm_power_loss(1)  # the PUT PIN of the PUK is cut mid-write
    try:
        pers.run(script, secret)
    except ChipFailure as e:
        assert e.index == secret
    else:  # pragma: no cover - the failure being set up
        raise AssertionError("the power cut did not stop the card")
    pers.resume(script, secret)
    assert pers.channel is not None and first is not None
    assert pers.channel.label != first.label  # a new agreement after the reset
    assert reader.card.ram.sm is not None and reader.card.ram.sm.key_ref == 3
    assert exchange(reader, cos.get_data(0xDF02)).data[-1] == cos.PERSONALIZED
