"""Run prepared chip steps through a reader slot and the HSM, and resume after a fault.

A :class:`StepRunner` executes :class:`~cardperso.dataprep.prepared.Step` objects
(docs in :mod:`cardperso.dataprep.prepared`) for one card with one HSM session:
plain APDUs, APDUs wrapped for secure messaging by the HSM (``card_sm_wrap`` /
``card_sm_unwrap``), prepared secrets opened only inside the HSM, the GENERAL
AUTHENTICATE that opens the KD-keyed channel, the key agreement that replaces it
with a channel keyed by ECDH with the card's own key pair (``card_sm_agree`` /
``card_sm_open_ecdh``), EXTERNAL AUTHENTICATE with an HSM-made cryptogram, and -
at initialization only - PUT KEY of KD obtained from ``kd_for_initialization``.
Every answer is checked against the step's status word and, where known, its data:
the chapter's command/response check.

Resuming (:meth:`StepRunner.resume`): after a fault the module powers the card
down and up again (the card's journal rolls a torn command back entirely,
docs/card-os.md §4), replays the *context* of the failed step - every
authentication and secure-messaging set-up before it (a KD-keyed opening, and the
ECDH agreement made inside it, in their order), then the last SELECT - and sends
the failed step again. That is the module's one retry.

Errors are :class:`ChipFailure`: the station, the step's note and what went wrong
(a status word, "answer differs", a reader or HSM fault). Never data: neither the
APDU nor the answer is quoted, so no cardholder data, PIN or key can reach the
reject bin, a log or the database.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from cardperso import tlv
from cardperso.apdu import ApduFormatError, CommandAPDU, parse_command
from cardperso.crypto.rand import RandomSource
from cardperso.dataprep.prepared import Step, StepKind
from cardperso.errors import CardpersoError, HsmError, ReaderError
from cardperso.hsm import (
    CardChannel,
    HsmSession,
    KdScheme,
    KeyHandle,
    PinBlockFormat,
    PinCopy,
    SmCommand,
)
from cardperso.readers import Reader, cos, exchange

__all__ = ["ChipFailure", "KeyCache", "StepRunner", "read_serial"]


class ChipFailure(CardpersoError):
    """A card failed at a chip station; names the station and step, never data."""

    exit_code = 4

    def __init__(self, station: str, reason: str, *, index: int = -1) -> None:
        self.station = station
        self.reason = reason[:200]
        self.index = index
        super().__init__(f"{station}: {self.reason}")


class KeyCache:
    """Key handles by label for one HSM session (each look-up is audited once)."""

    def __init__(self, session: HsmSession) -> None:
        self.session = session
        self._handles: dict[str, KeyHandle] = {}

    def get(self, label: str) -> KeyHandle:
        handle = self._handles.get(label)
        if handle is None:
            handle = self.session.get_key(label)
            self._handles[label] = handle
        return handle


def _protected(step: Step) -> bool:
    """A step that is one protected command with a prepared answer check."""
    return (step.kind is StepKind.APDU and step.sm) or step.kind is StepKind.SECRET


def read_serial(reader: Reader) -> bytes:
    """The chip serial the card reports (GET DATA ``DF01``); ReaderError if it will not say."""
    r = exchange(reader, cos.get_data(0xDF01))
    if r.sw != 0x9000:
        raise ReaderError(f"GET DATA DF01 answered {r.sw:04X}")
    try:
        return tlv.to_dict(r.data)[0xDF01]
    except (tlv.TlvError, KeyError):
        raise ReaderError("GET DATA DF01: malformed answer") from None


@dataclass
class StepRunner:
    """Executes steps on one card for one station (see the module notes)."""

    station: str
    reader: Reader
    keys: KeyCache
    serial: bytes
    rng: RandomSource
    card_secret: str = "CARD.SECRET"  # noqa: S105 - a key label
    hsm_calls: int = 0
    collected: dict[str, bytes] = field(default_factory=dict)
    channel: CardChannel | None = None

    @property
    def hsm(self) -> HsmSession:
        return self.keys.session

    # -- running ------------------------------------------------------------------------

    def run(self, steps: Sequence[Step], start: int = 0) -> None:
        """Run ``steps[start:]``; a failing step raises :class:`ChipFailure` with its index.

        Consecutive protected commands (APDUs under secure messaging, prepared
        secrets) are wrapped by the HSM in one call and their answers opened in one
        (:meth:`~cardperso.hsm.HsmSession.card_sm_wrap_many`): each command goes to
        the card only after the previous answer came back with the expected status
        word, and every answer is then checked as a single step's would be. An answer
        whose *data* differs from the prepared one is found after the rest of the run
        was sent (reads, and writes of prepared data: a retry resumes from the failed
        step as before)."""
        i, n = start, len(steps)
        while i < n:
            j = i
            if self.channel is not None:
                while j < n and _protected(steps[j]):
                    j += 1
            if j - i > 1:
                self._protected_run(steps, i, j)
                i = j
            else:
                self._step(steps[i], i)
                i += 1

    def resume(self, steps: Sequence[Step], index: int) -> None:
        """Power-cycle the card, replay the context of ``steps[index]``, then go on from it."""
        try:
            self.reader.close()
            self.reader.reset()
        except ReaderError as e:
            raise ChipFailure(self.station, f"reset for the retry: {e}", index=index) from None
        self.channel = None
        for i, step in self.context(steps, index):
            self._step(step, i)
        self.run(steps, index)

    @staticmethod
    def context(steps: Sequence[Step], index: int) -> list[tuple[int, Step]]:
        """The steps before ``index`` that set up what it relies on: authentications
        and secure-messaging set-ups in order, then the last SELECT."""
        out: list[tuple[int, Step]] = []
        last_select: tuple[int, Step] | None = None
        for i, s in enumerate(steps[:index]):
            if s.kind in (StepKind.OPEN_SM, StepKind.OPEN_ECDH, StepKind.EXTERNAL_AUTH):
                out.append((i, s))
            elif s.kind is StepKind.APDU and len(s.apdu) > 1 and s.apdu[1] == 0xA4:
                last_select = (i, s)
        if last_select is not None:
            out.append(last_select)
        return out

    def _step(self, step: Step, index: int) -> None:
        try:
            data, sw = self._execute(step)
        except ReaderError as e:
            raise ChipFailure(self.station, f"{step.note}: {e}", index=index) from None
        except HsmError as e:
            raise ChipFailure(self.station, f"{step.note}: {e}", index=index) from None
        self._check(step, index, data, sw)

    def _protected_run(self, steps: Sequence[Step], start: int, end: int) -> None:
        """Steps ``start`` .. ``end - 1``, all protected, with one wrap and one unwrap call."""
        assert self.channel is not None
        run = steps[start:end]
        try:
            secret_key = (
                self.keys.get(self.card_secret)
                if any(st.kind is StepKind.SECRET for st in run)
                else None
            )
            commands: list[SmCommand] = []
            for st in run:
                if st.kind is StepKind.SECRET:
                    commands.append(SmCommand(st.header, st.cryptogram, 0, secret_key, st.iv))
                else:
                    cmd = parse_command(st.apdu)
                    header = bytes([cmd.cla, cmd.ins, cmd.p1, cmd.p2])
                    commands.append(SmCommand(header, cmd.data, cmd.le))
            wrapped = self.hsm.card_sm_wrap_many(self.channel, commands)
        except (HsmError, ApduFormatError) as e:
            raise ChipFailure(self.station, f"{run[0].note}: {e}", index=start) from None
        self.hsm_calls += 2
        answers: list[bytes] = []
        lost: tuple[int, ReaderError] | None = None
        for k, apdu in enumerate(wrapped):
            try:
                r = exchange(self.reader, apdu)
            except ReaderError as e:
                lost = (start + k, e)
                break
            answers.append(r.data + r.sw.to_bytes(2, "big"))
            if r.sw != run[k].expect_sw:
                break  # the card refused: send nothing more; the check below names it
        opened: list[tuple[bytes, int]] = []
        if answers:
            try:
                opened = self.hsm.card_sm_unwrap_many(self.channel, answers)
            except HsmError as e:
                raise ChipFailure(self.station, f"{run[0].note}: {e}", index=start) from None
        for k, (data, sw) in enumerate(opened):
            self._check(run[k], start + k, data, sw)
        if len(opened) < len(answers):
            k = len(opened)
            raise ChipFailure(
                self.station,
                f"{run[k].note}: HSM card_sm_unwrap: protected response rejected",
                index=start + k,
            )
        if lost is not None:
            index, err = lost
            raise ChipFailure(self.station, f"{steps[index].note}: {err}", index=index)

    def _check(self, step: Step, index: int, data: bytes, sw: int) -> None:
        """The answer against the step's expected status word and data; keep it if asked."""
        if sw != step.expect_sw:
            raise ChipFailure(
                self.station,
                f"{step.note}: SW {sw:04X}, expected {step.expect_sw:04X}",
                index=index,
            )
        if step.expect_data is not None and not hmac.compare_digest(data, step.expect_data):
            raise ChipFailure(
                self.station, f"{step.note}: the answer differs from the prepared one", index=index
            )
        if step.collect and step.kind is not StepKind.GENERATE_PIN:
            self.collected[step.collect] = data

    # -- one step -------------------------------------------------------------------------

    def _send(self, apdu: bytes) -> tuple[bytes, int]:
        r = exchange(self.reader, apdu)
        return r.data, r.sw

    def _send_sm(self, apdu: bytes) -> tuple[bytes, int]:
        cmd = parse_command(apdu)
        return self._wrapped(bytes([cmd.cla, cmd.ins, cmd.p1, cmd.p2]), cmd.data, cmd.le)

    def _wrapped(
        self,
        header: bytes,
        data: bytes,
        le: int = 0,
        *,
        transport: KeyHandle | None = None,
        iv: bytes = b"",
    ) -> tuple[bytes, int]:
        if self.channel is None:
            raise HsmError("card_sm_wrap", "no secure-messaging channel is open")
        self.hsm_calls += 2
        wrapped = self.hsm.card_sm_wrap(
            self.channel, header, data, le=le, transport=transport, iv=iv
        )
        r = exchange(self.reader, wrapped)
        return self.hsm.card_sm_unwrap(self.channel, r.data + r.sw.to_bytes(2, "big"))

    def _diversifier(self, step: Step) -> bytes:
        return self.serial if step.diversifier == "chip_serial" else bytes.fromhex(step.diversifier)

    @staticmethod
    def _scheme(step: Step) -> KdScheme | None:
        return KdScheme(step.scheme) if step.scheme else None

    def _execute(self, step: Step) -> tuple[bytes, int]:
        kind = step.kind
        if kind is StepKind.APDU:
            return self._send_sm(step.apdu) if step.sm else self._send(step.apdu)
        if kind is StepKind.SECRET:
            secret_key = self.keys.get(self.card_secret)
            return self._wrapped(step.header, step.cryptogram, transport=secret_key, iv=step.iv)
        if kind is StepKind.OPEN_SM:
            return self._open_sm(step)
        if kind is StepKind.OPEN_ECDH:
            return self._open_ecdh(step)
        if kind is StepKind.EXTERNAL_AUTH:
            return self._external_auth(step)
        if kind is StepKind.LOAD_KD:
            return self._load_kd(step)
        if kind is StepKind.GENERATE_PIN:
            return self._generate_pin(step)
        raise HsmError("step", f"unknown step kind {kind!r}")  # pragma: no cover

    def _open_sm(self, step: Step) -> tuple[bytes, int]:
        km = self.keys.get(step.master_key)
        rh = self.rng.random_bytes(16 if km.algorithm.is_aes else 8)
        reply, sw = self._send(cos.general_authenticate_1(step.key_ref, rh))
        if sw != 0x9000:
            return reply, sw
        self.hsm_calls += 1
        self.channel = self.hsm.card_sm_open(
            km, self._diversifier(step), rh, reply, scheme=self._scheme(step)
        )
        return self._send(cos.general_authenticate_2(step.key_ref, self.channel.host_cryptogram))

    def _open_ecdh(self, step: Step) -> tuple[bytes, int]:
        """Key agreement with the card's EC key ``key_ref`` inside the open channel.

        The card's public key is read under that channel first (READ PUBLIC KEY, or it
        was just generated there): its MAC vouches to the HSM that this chip holds
        the key, and the HSM takes the point from that answer itself. Then the
        HSM's GENERAL AUTHENTICATE ``7C{80 ephemeral point}`` goes to the card under
        the same channel, and from the card's answer the HSM opens the ECDH-keyed
        channel that replaces it (docs/card-os.md §8.3). Reading again on every run
        keeps the step self-contained, so a resumed card repeats it as it is."""
        data, sw = self._send_sm(cos.read_public_key(step.key_ref))
        if sw != 0x9000 or self.channel is None:
            return data, sw
        self.hsm_calls += 2
        apdu = self.hsm.card_sm_agree(self.channel, step.key_ref)
        r = exchange(self.reader, apdu)
        self.channel = self.hsm.card_sm_open_ecdh(self.channel, r.data + r.sw.to_bytes(2, "big"))
        return b"", 0x9000

    def _external_auth(self, step: Step) -> tuple[bytes, int]:
        challenge, sw = self._send_sm(step.apdu) if step.sm else self._send(step.apdu)
        if sw != 0x9000:
            return challenge, sw
        self.hsm_calls += 1
        cryptogram = self.hsm.external_auth_cryptogram(
            self.keys.get(step.master_key),
            self._diversifier(step),
            challenge,
            scheme=self._scheme(step),
        )
        apdu = cos.external_authenticate(step.key_ref, cryptogram)
        return self._send_sm(apdu) if step.sm else self._send(apdu)

    def _generate_pin(self, step: Step) -> tuple[bytes, int]:
        """GENERATE PIN under SM: the card makes the PIN; its protected answer opens
        only inside the HSM, which gives back PIN blocks (mailer copy first, then the
        issuer's), kept under ``collect/<n>``. The clear PIN never reaches the host."""
        if self.channel is None:
            raise HsmError("card_sm_wrap", "no secure-messaging channel is open")
        cmd = parse_command(step.apdu)
        copies = [PinCopy(self.keys.get(label), PinBlockFormat(fmt)) for label, fmt in step.copies]
        self.hsm_calls += 2
        wrapped = self.hsm.card_sm_wrap(
            self.channel, bytes([cmd.cla, cmd.ins, cmd.p1, cmd.p2]), cmd.data, le=cmd.le
        )
        r = exchange(self.reader, wrapped)
        blocks, sw = self.hsm.card_sm_unwrap_pin(
            self.channel, r.data + r.sw.to_bytes(2, "big"), copies, step.pan or None
        )
        if sw == 0x9000:
            for i, block in enumerate(blocks):
                self.collected[f"{step.collect}/{i}"] = block
        return b"", sw

    def _load_kd(self, step: Step) -> tuple[bytes, int]:
        """PUT KEY with KD in clear: the chapter's initialization, card still MANUFACTURED.

        KD exists here only for the one APDU; it is never kept, logged or quoted."""
        self.hsm_calls += 1
        kd = self.hsm.kd_for_initialization(
            self.keys.get(step.master_key), self._diversifier(step), scheme=self._scheme(step)
        )
        cla, ins, p1, p2 = step.header
        apdu = CommandAPDU(cla, ins, p1, p2, step.data + tlv.encode(0x8F, kd.reveal()))
        return self._send(apdu.to_bytes())
