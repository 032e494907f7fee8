"""The line's StepRunner on a profile with every step kind, incl. a card-generated PIN.

The lab profile of the data-preparation tests has an issuer PIN block, a PIN the
card generates (GENERATE PIN under secure messaging), a bureau-random key and an
issuer key in a TR-31 block. The line's runner personalizes a simulated card from
the prepared script; the PIN the card made reaches the host only as PIN blocks the
HSM produced, and that PIN then verifies on the card.
"""

from __future__ import annotations

from pathlib import Path

from cardperso.crypto.ciphers import TDES
from cardperso.crypto.rand import SeededRandom
from cardperso.dataprep.prepare import CardPreparer
from cardperso.dataprep.prepared import PreparedCard, StepKind
from cardperso.hsm import PinBlockFormat, Role
from cardperso.line.chip import KeyCache, StepRunner
from cardperso.payments import pinblock
from cardperso.readers import cos, exchange
from cardperso.readers.virtual import virtual_reader
from dataprep.prep_kit import clear_key, lab_profile, lab_record, make_keystore


def test_runner_personalizes_a_card_generated_pin_seen_only_as_pin_blocks(tmp_path: Path) -> None:
    hsm = make_keystore(tmp_path).open()
    try:
        dp = hsm.session(Role.DATAPREP, "dataprep")
        preparer = CardPreparer(lab_profile(), dp, batch_id="RUN-1", file="run.csv")
        rec = lab_record("8316", bytes(range(0x40, 0x50)))
        cards, problems = preparer.prepare([(1, 2, rec)])
        assert not problems
        card = PreparedCard.from_line(cards[0].to_line())
        assert any(s.kind is StepKind.GENERATE_PIN for s in card.script)
        serial = bytes.fromhex("C0DE000000000042")
        reader = virtual_reader(1, serial=serial)
        rng = SeededRandom("runner")
        reader.reset()
        init = KeyCache(hsm.session(Role.INITIALIZATION, "init"))
        StepRunner("init", reader, init, serial, rng).run(
            preparer.init_script.steps(card.init_steps)
        )
        pers = StepRunner(
            "perso", reader, KeyCache(hsm.session(Role.PERSONALIZATION, "p")), serial, rng
        )
        pers.run(card.script)
        mailer, issuer = pers.collected["pin_blocks:PIN2/0"], pers.collected["pin_blocks:PIN2/1"]
        # The issuer's copy is an ISO format 1 block under its PIN key: it opens to the
        # PIN the card made, and that PIN verifies; the mailer copy is another block.
        pin = pinblock.decrypt_pin_block(
            TDES(clear_key("ZPK.LAB")), PinBlockFormat.ISO_1, issuer, None
        )
        assert len(pin) == 6 and pin.isdigit() and mailer != issuer
        r = exchange(reader, cos.verify(2, cos.format2(pin)))
        assert r.sw == 0x9000
        wrong = "0" * 6 if pin != "000000" else "111111"
        assert exchange(reader, cos.verify(2, cos.format2(wrong))).sw & 0xFFF0 == 0x63C0
    finally:
        hsm.close()
