"""A minimal initialization + personalization station for tests (the real line comes later).

It runs a profile's :class:`~cardperso.dataprep.init_script.InitScript` and a
:class:`~cardperso.dataprep.prepared.PreparedCard` against a card in a reader, with
an initialization session and a personalization session of the HSM - the two
rooms of the chapter's Figure 10.63 - and checks every step's status word and,
where the prepared card knows it, the answer data (the command/response check).
Every APDU sent and every answer received is kept in :attr:`Station.trace` so
tests can search it for secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cardperso import tlv
from cardperso.apdu import CommandAPDU, parse_command
from cardperso.dataprep.init_script import InitScript
from cardperso.dataprep.prepared import PreparedCard, Step, StepKind
from cardperso.dataprep.secrets import PrepKeys
from cardperso.hsm import CardChannel, Hsm, KdScheme, KeyHandle, PinBlockFormat, PinCopy, Role
from cardperso.readers import Reader, cos, exchange


class StationError(AssertionError):
    """A step did not answer as the prepared card expects."""


@dataclass
class Station:
    hsm: Hsm
    keys: PrepKeys = field(default_factory=PrepKeys)
    trace: list[bytes] = field(default_factory=list)
    pin_blocks: dict[str, tuple[bytes, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.init = self.hsm.session(Role.INITIALIZATION, "init-station")
        self.pers = self.hsm.session(Role.PERSONALIZATION, "perso-station")
        self._handles: dict[str, KeyHandle] = {}

    def handle(self, label: str) -> KeyHandle:
        if label not in self._handles:
            self._handles[label] = self.pers.get_key(label)
        return self._handles[label]

    # -- plumbing ---------------------------------------------------------------------

    def send(self, reader: Reader, apdu: bytes, *, record: bool = True) -> tuple[bytes, int]:
        r = exchange(reader, apdu)
        if record:
            self.trace.extend((apdu, r.to_bytes()))
        return r.data, r.sw

    def send_sm(self, reader: Reader, channel: CardChannel, apdu: bytes) -> tuple[bytes, int]:
        """A plain command wrapped and its answer unwrapped by the HSM."""
        cmd = parse_command(apdu)
        header = bytes([cmd.cla, cmd.ins, cmd.p1, cmd.p2])
        wrapped = self.pers.card_sm_wrap(channel, header, cmd.data, le=cmd.le)
        data, sw = self.send(reader, wrapped)
        return self.pers.card_sm_unwrap(channel, data + sw.to_bytes(2, "big"))

    @staticmethod
    def check(step: Step, data: bytes, sw: int) -> None:
        if sw != step.expect_sw:
            raise StationError(f"{step.note}: SW {sw:04X}, expected {step.expect_sw:04X}")
        if step.expect_data is not None and data != step.expect_data:
            raise StationError(f"{step.note}: the answer differs from the prepared one")

    @staticmethod
    def scheme(step: Step) -> KdScheme:
        return KdScheme(step.scheme)

    def serial(self, reader: Reader) -> bytes:
        data, sw = self.send(reader, cos.get_data(0xDF01))
        assert sw == 0x9000
        return tlv.to_dict(data)[0xDF01]

    def diversifier(self, reader: Reader, step: Step) -> bytes:
        if step.diversifier == "chip_serial":
            return self.serial(reader)
        return bytes.fromhex(step.diversifier)

    # -- initialization (its own room: KD in clear, never issuer data) ------------------

    def initialize(self, reader: Reader, script: InitScript, card: PreparedCard) -> None:
        reader.reset()
        for step in script.steps(card.init_steps):
            if step.kind is StepKind.LOAD_KD:
                master = self.init.get_key(step.master_key)
                kd = self.init.kd_for_initialization(
                    master, self.serial(reader), scheme=self.scheme(step)
                )
                cla, ins, p1, p2 = step.header
                apdu = CommandAPDU(cla, ins, p1, p2, step.data + tlv.encode(0x8F, kd.reveal()))
                # KD travels in clear here, as the chapter describes: not in the trace.
                data, sw = self.send(reader, apdu.to_bytes(), record=False)
            else:
                assert step.kind is StepKind.APDU and not step.sm
                data, sw = self.send(reader, step.apdu)
            self.check(step, data, sw)

    # -- personalization (KD never in clear here, issuer data never in clear) -----------

    def personalize(self, reader: Reader, card: PreparedCard) -> dict[str, bytes]:
        """Run the chip script; return the data the script collects (public keys)."""
        reader.reset()
        collected: dict[str, bytes] = {}
        channel: CardChannel | None = None
        for step in card.script:
            if step.kind is StepKind.OPEN_SM:
                scheme = self.scheme(step)
                size = 8 if scheme is KdScheme.EMV_3DES else 16
                rh = bytes(range(1, size + 1))
                reply, sw = self.send(reader, cos.general_authenticate_1(step.key_ref, rh))
                assert sw == 0x9000, f"{sw:04X}"
                channel = self.pers.card_sm_open(
                    self.handle(step.master_key),
                    self.diversifier(reader, step),
                    rh,
                    reply,
                    scheme=scheme,
                )
                data, sw = self.send(
                    reader, cos.general_authenticate_2(step.key_ref, channel.host_cryptogram)
                )
                self.check(step, data, sw)
                continue
            assert channel is not None or not step.sm
            if step.kind is StepKind.OPEN_ECDH:
                # The key agreement inside the open channel (docs/card-os.md §8.3): the
                # card's point read under it, the HSM's GENERAL AUTHENTICATE, the new channel.
                assert channel is not None
                data, sw = self.send_sm(reader, channel, cos.read_public_key(step.key_ref))
                assert sw == 0x9000, f"{sw:04X}"
                raw, sw = self.send(reader, self.pers.card_sm_agree(channel, step.key_ref))
                channel = self.pers.card_sm_open_ecdh(channel, raw + sw.to_bytes(2, "big"))
                continue
            if step.kind is StepKind.SECRET:
                assert channel is not None
                wrapped = self.pers.card_sm_wrap(
                    channel,
                    step.header,
                    step.cryptogram,
                    transport=self.handle(self.keys.card_secret),
                    iv=step.iv,
                )
                raw, sw = self.send(reader, wrapped)
                data, sw = self.pers.card_sm_unwrap(channel, raw + sw.to_bytes(2, "big"))
            elif step.kind is StepKind.EXTERNAL_AUTH:
                assert channel is not None
                challenge, sw = self.send_sm(reader, channel, step.apdu)
                assert sw == 0x9000
                cryptogram = self.pers.external_auth_cryptogram(
                    self.handle(step.master_key),
                    self.diversifier(reader, step),
                    challenge,
                    scheme=self.scheme(step),
                )
                data, sw = self.send_sm(
                    reader, channel, cos.external_authenticate(step.key_ref, cryptogram)
                )
            elif step.kind is StepKind.GENERATE_PIN:
                # The card draws the PIN; its answer opens only inside the HSM, which
                # gives back PIN blocks under the print key (and the issuer's key).
                assert channel is not None
                cmd = parse_command(step.apdu)
                header = bytes([cmd.cla, cmd.ins, cmd.p1, cmd.p2])
                wrapped = self.pers.card_sm_wrap(channel, header, cmd.data, le=cmd.le)
                raw, sw = self.send(reader, wrapped)
                copies = [PinCopy(self.handle(k), PinBlockFormat(f)) for k, f in step.copies]
                blocks, sw = self.pers.card_sm_unwrap_pin(
                    channel, raw + sw.to_bytes(2, "big"), copies, step.pan or None
                )
                self.pin_blocks[step.collect] = blocks
                data = b""
            elif step.sm:
                assert channel is not None
                data, sw = self.send_sm(reader, channel, step.apdu)
            else:
                data, sw = self.send(reader, step.apdu)
            self.check(step, data, sw)
            if step.collect:
                collected[step.collect] = data
        return collected

    def make(self, reader: Reader, script: InitScript, card: PreparedCard) -> dict[str, bytes]:
        """Initialize, then personalize (the same card may wait weeks in between)."""
        self.initialize(reader, script, card)
        return self.personalize(reader, card)
