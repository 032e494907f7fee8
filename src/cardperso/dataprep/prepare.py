"""Issuer records in, PreparedCards out: one record, a chunk, or a whole file on both cores.

:class:`CardPreparer` holds what one profile needs, resolved once against one HSM
session (dataprep role): the secret plan (:mod:`.secrets`), the initialization
script (:mod:`.init_script`) and the personalization plan below. Its
:meth:`~CardPreparer.prepare` turns a chunk of records into
:class:`~cardperso.dataprep.prepared.PreparedCard` objects with two HSM calls for
the whole chunk (``card_secrets`` and ``generate_cvvs``: batch calls, one audit
record each) instead of several per record.

The personalization script of a card, in order:

1. ``open_sm`` with the loading key (``loading.key``, a KD loaded at
   initialization): from here every command goes under secure messaging, so the
   card's ``sm`` conditions hold and nothing on the line is readable;
2. GENERATE ASYMMETRIC KEY PAIR for card-generated keys (the public key is
   collected from the answer for the issuer's response data); with protection
   ``ecdh``, then ``open_ecdh``: the key agreement with the loading key (an EC key
   of usage key_agreement) replaces the KD-keyed channel by one keyed by ECDH, so
   everything below travels under keys no KD can reproduce (docs/card-os.md §8.3);
   then GENERATE PIN for card-generated PINs (the HSM re-encrypts the card's answer
   for the mailer);
3. one ``secret`` step per PIN and key made in the HSM (PUT PIN / PUT KEY);
4. the record's file data: for each data mapping whose update condition the
   script can meet (SM, the loading key, or a derived key it can authenticate with
   EXTERNAL AUTHENTICATE), SELECT, UPDATE and - where the read condition is met -
   a READ with the written bytes as the expected answer. Mappings that write the
   same bytes on every card are in the initialization script; mappings whose
   update condition personalization can never meet (``never``, a PIN) become the
   record's ``init_steps``, written while the card is still MANUFACTURED;
5. SET LIFECYCLE PERSONALIZED.

Protection ``ecdh`` opens the first session with the profile's first chip-serial
KD of usage SM (the card agrees keys only inside an authenticated session, and that
session vouches for the card's public key); the prepared card names the loading
key in ``loading.channel_key`` and says how it is used in ``loading.note``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from cardperso.dataprep.cardbody import emboss_texts, laser_texts, photo_image
from cardperso.dataprep.chipsteps import AccessState, file_steps
from cardperso.dataprep.fields import presort_key
from cardperso.dataprep.filedata import file_writes
from cardperso.dataprep.init_script import InitScript, build_init_script, is_constant
from cardperso.dataprep.magstripe import (
    MagstripeError,
    discretionary_data,
    track2_equivalent_data,
    tracks_from_profile,
)
from cardperso.dataprep.prepared import (
    CardBodyData,
    CarrierData,
    KeyResponse,
    MailerData,
    MailerPin,
    PinResponse,
    PreparedCard,
    Step,
    StepKind,
)
from cardperso.dataprep.secrets import (
    PrepKeys,
    SecretPlan,
    diversifier,
    hsm_reason,
    kd_scheme,
    pan_of,
)
from cardperso.dataprep.text import RenderError, render
from cardperso.errors import ConfigError, HsmError, InputError
from cardperso.hsm import CardSecret, CardSecretRequest, CvvRequest, HsmSession, PinBlockFormat
from cardperso.profiles.schema import (
    CardKey,
    DataMapping,
    Derived,
    Element,
    FileNode,
    FileType,
    KeyRoute,
    KeyUsage,
    Profile,
    Protection,
)
from cardperso.readers import cos

__all__ = ["CardPreparer", "Record", "external_auth_step"]

Record = tuple[int, int, Mapping[str, str]]
"""(sequence number from 1, physical line in the issuer file, validated values)."""

_Phase = Literal["init", "perso"]


@dataclass(frozen=True, slots=True)
class _MappingPlan:
    """Where and how one record-data mapping is written."""

    mapping: DataMapping
    node: FileNode
    index: int
    phase: _Phase
    auth: tuple[CardKey, ...]
    read_back: bool
    records_before: int


class CardPreparer:
    """Prepared cards for one profile from one HSM session (see the module notes)."""

    def __init__(
        self,
        profile: Profile,
        session: HsmSession,
        keys: PrepKeys | None = None,
        *,
        batch_id: str,
        file: str | None = None,
    ) -> None:
        self.profile = profile
        self.session = session
        self.batch_id = batch_id
        self.file = file
        self.keys = keys or PrepKeys()
        self.secrets = SecretPlan(profile, session, self.keys)
        self.init_script: InitScript = build_init_script(profile)
        self.channel, self.note = self._channel()
        self._open = self._open_step()
        self._generate = self._generate_steps()
        self._agree, self.channel_key = self._agree_steps()
        self._finish = Step(
            StepKind.APDU,
            "SET LIFECYCLE PERSONALIZED",
            apdu=cos.set_lifecycle(cos.PERSONALIZED),
            sm=True,
        )
        self._plans = self._mapping_plans()
        self._pvv_pin = next((p.pin.name for p in self.secrets.pins if p.pvv is not None), None)
        self._per_card_plan()
        for m in profile.data:
            if any(_uses_chip_serial(el) for el in m.content):
                raise ConfigError(f"data: {m.file}: chip_serial data is known only at the line")

    # -- the plan, once per profile ---------------------------------------------------

    def _key(self, ref: int) -> CardKey | None:
        return next((k for k in self.profile.keys if k.ref == ref), None)

    def _channel(self) -> tuple[CardKey, str]:
        ld = self.profile.loading
        if ld.protection == Protection.KD:
            key = self.profile.key(ld.key)
            assert key is not None  # the profile's consistency checks guarantee it
            if key.route != KeyRoute.DERIVED_KD or key.diversifier != "chip_serial":
                raise ConfigError(
                    "loading.key: KD-protected loading needs a key on the card before "
                    "personalization: route derived_kd, diversifier chip_serial"
                )
            return key, ""
        for key in self.profile.keys:
            if (
                key.route == KeyRoute.DERIVED_KD
                and key.diversifier == "chip_serial"
                and KeyUsage.SM in key.usage
            ):
                note = (
                    f"ECDH-protected: PINs, keys and data travel under keys agreed with "
                    f"{ld.key}, inside a session opened with {key.name} (KD), which vouches "
                    "for the card's public key (docs/card-os.md §8.3)"
                )
                return key, note
        raise ConfigError(
            "loading: ECDH-protected loading is not available without a key derived from "
            "the chip serial with usage sm: the card agrees keys only inside a session "
            "opened with one (docs/card-os.md §8.3)"
        )

    def _agree_steps(self) -> tuple[tuple[Step, ...], str]:
        """The key agreement of protection ``ecdh`` (none for ``kd``), and the name of
        the card key that protects the load."""
        ld = self.profile.loading
        if ld.protection != Protection.ECDH:
            return (), self.channel.name
        key = self.profile.key(ld.key)
        assert key is not None  # the profile's consistency checks guarantee it
        step = Step(
            StepKind.OPEN_ECDH,
            f"GENERAL AUTHENTICATE key agreement with {key.name} (ref {key.ref}): "
            "ECDH-keyed secure messaging from here",
            key_ref=key.ref,
        )
        return (step,), key.name

    def _open_step(self) -> Step:
        k = self.channel
        return Step(
            StepKind.OPEN_SM,
            f"GENERAL AUTHENTICATE with {k.name} (ref {k.ref}): secure messaging from here",
            key_ref=k.ref,
            master_key=k.master_key or "",
            diversifier="chip_serial",
            scheme=kd_scheme(k).value,
        )

    def _generate_steps(self) -> tuple[Step, ...]:
        return tuple(
            Step(
                StepKind.APDU,
                f"GENERATE ASYMMETRIC KEY PAIR {k.name} (ref {k.ref})",
                apdu=cos.generate_key_pair(k.ref, k.usage_bits),
                sm=True,
                collect=f"public_key:{k.name}",
            )
            for k in self.profile.keys
            if k.route == KeyRoute.CARD_GENERATED
        )

    def _can_authenticate(self, key: CardKey | None) -> bool:
        return (
            key is not None
            and key.route == KeyRoute.DERIVED_KD
            and KeyUsage.EXT_AUTH in key.usage
            and key.master_key is not None
        )

    def _mapping_plans(self) -> list[_MappingPlan]:
        """Decide for each record-data mapping: written at initialization or personalization."""
        records: dict[str, int] = {}
        for m in self.profile.data:  # the initialization script's constant records come first
            node = self.profile.file(m.file)
            if is_constant(m) and node is not None and node.type == FileType.LINEAR_FIXED:
                records[m.file] = max(records.get(m.file, 0), m.record or 1)
        state = AccessState(sm=True, keys={self.channel.ref})
        plans: list[_MappingPlan] = []
        init_plans: list[_MappingPlan] = []
        for index, m in enumerate(self.profile.data):
            if is_constant(m):
                continue
            node = self.profile.file(m.file)
            assert node is not None  # the profile's consistency checks guarantee it
            appending = node.type == FileType.LINEAR_FIXED and (m.record or 1) > records.get(
                m.file, 0
            )
            cond = node.access.append if appending else node.access.update
            auth: list[CardKey] = []
            if not state.allows(cond):
                ref = AccessState.key_named(cond)
                key = self._key(ref) if ref is not None else None
                if key is not None and self._can_authenticate(key):
                    trial = AccessState(sm=True, keys={*state.keys, key.ref})
                    if trial.allows(cond):
                        auth.append(key)
                        state.keys.add(key.ref)
            phase: _Phase = "perso" if state.allows(cond) else "init"
            before = records.get(m.file, 0)
            if node.type == FileType.LINEAR_FIXED:
                records[m.file] = max(before, m.record or 1)
            plan = _MappingPlan(
                m,
                node,
                index,
                phase,
                tuple(auth),
                phase == "perso" and state.allows(node.access.read),
                before,
            )
            (plans if phase == "perso" else init_plans).append(plan)
        return init_plans + plans

    def _per_card_plan(self) -> None:
        """What every card of the profile shares, worked out once: step notes, the
        response entries that do not depend on the record, the letters' specs."""
        plan, p = self.secrets, self.profile
        self._npins = len(plan.pins)
        self._cvv_names = tuple(name for name, _, _ in plan.cvvs.items)
        self._pvv_names = tuple(f"pvv:{pp.pin.name}" for pp in plan.pins)
        self._pin_notes = tuple(
            f"PUT PIN {pp.pin.name} (ref {pp.pin.ref}, {pp.pin.method.value})" for pp in plan.pins
        )
        self._key_notes = tuple(
            f"PUT KEY {kp.key.name} (ref {kp.key.ref}, {kp.key.route.value})" for kp in plan.keys
        )
        self._generate_pin = tuple(
            (
                g,
                f"GENERATE PIN {g.pin.name} (ref {g.pin.ref}, card_generated)",
                f"pin_blocks:{g.pin.name}",
                tuple((c.key.label, int(c.fmt)) for c in g.copies),
                any(c.fmt != PinBlockFormat.ISO_1 for c in g.copies),
            )
            for g in plan.generated
        )
        self._export = tuple(
            (i, kp) for i, kp in enumerate(plan.keys) if kp.export_under is not None
        )
        self._issuer_pins = tuple(
            (
                i,
                pp.pin.name,
                pp.copies[pp.issuer].key.label,
                int(pp.copies[pp.issuer].fmt),
                pp.issuer,
            )
            for i, pp in enumerate(plan.pins)
            if pp.issuer is not None
        )
        self._generated_responses = tuple(
            PinResponse(g.pin.name, g.copies[g.issuer].key.label, int(g.copies[g.issuer].fmt), b"")
            for g in plan.generated
            if g.issuer is not None
        )
        self._collect = tuple(s.collect for s in self._generate) + tuple(
            f"pin_blocks:{g.pin.name}" for g in plan.generated
        )
        self._perso_plans = tuple(mp for mp in self._plans if mp.phase == "perso")
        self._init_plans = tuple(mp for mp in self._plans if mp.phase == "init")
        presort = p.letters.presort
        self._presort_fields = (presort.country_field, presort.postal_code_field)
        self._emboss_at = tuple((e.area.value, e.row) for e in p.card_body.emboss)
        self._mailer_pins = self._mailer_plan()

    # -- per record ---------------------------------------------------------------------

    def _error(self, rec: Record, message: str, field: str | None = None) -> InputError:
        return InputError(message, file=self.file, line=rec[1], field=field)

    def record_id(self, seq: int) -> str:
        return f"{self.batch_id}/{seq:07d}"

    def prepare(self, records: Sequence[Record]) -> tuple[list[PreparedCard], list[InputError]]:
        """Prepare a chunk of records: the cards, and the problems of the records left out.

        A record the HSM refuses (a PIN block that does not decrypt, a key cryptogram
        that does not unwrap) is a problem of that record; the chunk is then made again
        record by record to find it. An HSM failure that is no record's fault (a key
        missing, a closed session) raises ``HsmError``."""
        problems: list[InputError] = []
        todo: list[Record] = []
        requests: list[CardSecretRequest] = []
        cvv_requests: list[list[CvvRequest]] = []
        spans: list[tuple[int, int]] = []
        for rec in records:
            try:
                mine = self.secrets.requests(rec[2], self.record_id(rec[0]))
                cvvs = self.secrets.cvv_requests(rec[2])
            except (ValueError, KeyError) as e:
                problems.append(self._error(rec, f"cannot make its PINs and keys ({e})"))
                continue
            todo.append(rec)
            spans.append((len(requests), len(requests) + len(mine)))
            requests.extend(mine)
            cvv_requests.append(cvvs)
        try:
            results = self.session.card_secrets(self.secrets.card_secret, requests)
            flat_cvvs = self.session.generate_cvvs([c for cs in cvv_requests for c in cs])
        except HsmError as e:
            if not hsm_reason(e, keep_request=True).startswith("request "):
                raise
            if len(todo) == 1:
                return [], [*problems, self._hsm_problem(todo[0], e)]
            isolated, more = self._one_by_one(todo)
            return isolated, problems + more
        cards: list[PreparedCard] = []
        pos = 0
        for rec, (a, b), cvvs in zip(todo, spans, cvv_requests, strict=True):
            got = flat_cvvs[pos : pos + len(cvvs)]
            pos += len(cvvs)
            try:
                cards.append(self._card(rec, results[a:b], got))
            except InputError as e:
                problems.append(self._error(rec, e.reason, e.field))
        return cards, problems

    def _one_by_one(self, records: list[Record]) -> tuple[list[PreparedCard], list[InputError]]:
        """A chunk the HSM refused: again record by record, to find the bad ones."""
        cards: list[PreparedCard] = []
        problems: list[InputError] = []
        for rec in records:
            got, bad = self.prepare([rec])
            cards.extend(got)
            problems.extend(bad)
        return cards, problems

    def _hsm_problem(self, rec: Record, e: HsmError) -> InputError:
        field = None
        text = str(e)
        for p in self.secrets.pins:
            if f"/{p.pin.name}): " in text and p.pin.issuer is not None:
                field = p.pin.issuer.field
        for k in self.secrets.keys:
            if f"/{k.key.name}): " in text:
                field = k.key.field or (
                    k.key.diversifier if k.key.diversifier != "chip_serial" else None
                )
        return self._error(rec, f"the security module refused it: {hsm_reason(e)}", field)

    def _card(
        self, rec: Record, secrets: Sequence[CardSecret], cvvs: Sequence[str]
    ) -> PreparedCard:
        seq, line, values = rec
        p = self.profile
        plan = self.secrets
        npins = self._npins
        pin_results, key_results = secrets[:npins], secrets[npins:]
        computed: dict[str, str] = dict(zip(self._cvv_names, cvvs, strict=True))
        for name, res in zip(self._pvv_names, pin_results, strict=True):
            if res.pvv is not None:
                computed[name] = res.pvv
        derived: dict[str, str | bytes] = {}
        tracks: dict[int, str] = {}
        ms = p.magstripe
        try:
            if ms is not None:
                tracks = tracks_from_profile(ms, values, computed)
                derived[Derived.TRACK1.value] = tracks.get(1, "")
                derived[Derived.TRACK2.value] = tracks.get(2, "")
                if ms.chip_discretionary is not None:
                    dd = discretionary_data(ms.chip_discretionary, values, computed, chip=True)
                    derived[Derived.TRACK2_EQUIVALENT.value] = track2_equivalent_data(
                        values[ms.pan_field], values[ms.expiry_field], ms.service_code, dd
                    )
        except MagstripeError as e:
            raise InputError(f"magnetic stripe: {e}", field=ms.pan_field if ms else None) from None
        for name in ("cvv", "icvv"):
            if name in computed:
                derived[name] = computed[name]
        if self._pvv_pin is not None:
            derived[Derived.PVV.value] = computed[f"pvv:{self._pvv_pin}"]
        writes = file_writes(p, values, derived)
        init_steps: list[Step] = []
        script: list[Step] = [self._open, *self._generate, *self._agree]
        for g, note, collect, copies, needs_pan in self._generate_pin:
            script.append(
                Step(
                    StepKind.GENERATE_PIN,
                    note,
                    apdu=g.apdu,
                    sm=True,
                    collect=collect,
                    copies=copies,
                    pan=(pan_of(p, values) or "") if needs_pan else "",
                )
            )
        secret = StepKind.SECRET
        for pp, note, res in zip(plan.pins, self._pin_notes, pin_results, strict=True):
            script.append(
                Step(secret, note, header=pp.header, cryptogram=res.cryptogram, iv=res.iv)
            )
        for kp, note, res in zip(plan.keys, self._key_notes, key_results, strict=True):
            script.append(
                Step(secret, note, header=kp.header, cryptogram=res.cryptogram, iv=res.iv)
            )
        for mp in self._init_plans:
            steps, _ = file_steps(
                mp.node,
                writes[mp.index],
                sm=False,
                read_back=False,
                records_present=mp.records_before,
            )
            init_steps.extend(steps)
        for mp in self._perso_plans:
            for key in mp.auth:
                script.append(self._auth_step(key, values))
            steps, _ = file_steps(
                mp.node,
                writes[mp.index],
                sm=True,
                read_back=mp.read_back,
                records_present=mp.records_before,
            )
            script.extend(steps)
        script.append(self._finish)
        seen: dict[str, str] = {}
        country, postal = self._presort_fields
        return PreparedCard(
            batch_id=self.batch_id,
            seq=seq,
            line=line,
            profile=p.id,
            profile_version=p.version,
            channel_key=self.channel_key,
            protection_note=self.note,
            init_steps=tuple(init_steps),
            script=tuple(script),
            tracks=tracks,
            card_body=self._card_body(values),
            presort=presort_key(values.get(country, ""), values.get(postal, "")),
            carrier=self._carrier(values, seen),
            mailer=self._mailer(values, pin_results, seen),
            response_keys=tuple(
                KeyResponse(
                    kp.key.name,
                    kp.key.ref,
                    kp.export_under.label,
                    key_results[i].key_block or "",
                    key_results[i].kcv or "",
                )
                for i, kp in self._export
                if kp.export_under is not None
            ),
            response_pins=tuple(
                PinResponse(name, label, fmt, pin_results[i].copies[copy])
                for i, name, label, fmt, copy in self._issuer_pins
            )
            + self._generated_responses,
            key_checks=tuple(
                (kp.key.name, kp.key.ref, res.kcv)
                for kp, res in zip(plan.keys, key_results, strict=True)
                if res.kcv is not None
            ),
            collect=self._collect,
        )

    def _auth_step(self, key: CardKey, values: Mapping[str, str]) -> Step:
        div = (
            "chip_serial"
            if key.diversifier == "chip_serial"
            else diversifier(key, values).hex().upper()
        )
        return external_auth_step(key, div, sm=True)

    def _card_body(self, values: Mapping[str, str]) -> CardBodyData:
        spec = self.profile.card_body
        emboss = tuple(
            (area, row, text)
            for (area, row), text in zip(self._emboss_at, emboss_texts(spec, values), strict=True)
        )
        laser: tuple[tuple[str, float, float, float, str], ...] = ()
        if spec.laser:
            laser = tuple(
                (t.side, t.x_mm, t.y_mm, t.height_mm, text)
                for t, text in zip(spec.laser, laser_texts(spec, values), strict=True)
            )
        photo = None
        ph = photo_image(spec, values) if spec.photo is not None else None
        if ph is not None:
            photo = {
                "side": ph.side,
                "x_mm": ph.x_mm,
                "y_mm": ph.y_mm,
                "width_mm": ph.width_mm,
                "height_mm": ph.height_mm,
                "width_px": ph.width_px,
                "height_px": ph.height_px,
                "rows": ph.rows.hex().upper(),
            }
        return CardBodyData(emboss, laser, photo)

    @staticmethod
    def _lines(
        templates: Sequence[str], values: Mapping[str, str], seen: dict[str, str]
    ) -> tuple[str, ...]:
        """Rendered, non-empty lines; ``seen`` keeps what this record rendered already."""
        out = []
        for t in templates:
            text = seen.get(t)
            if text is None:
                try:
                    text = seen[t] = render(t, values).strip()
                except RenderError as e:
                    raise InputError(str(e), field=e.field) from None
            if text:
                out.append(text)
        return tuple(out)

    def _carrier(self, values: Mapping[str, str], seen: dict[str, str]) -> CarrierData:
        c = self.profile.letters.carrier
        greeting = self._lines([c.greeting], values, seen) if c.greeting else ()
        return CarrierData(
            c.template,
            self._lines(c.address, values, seen),
            greeting[0] if greeting else None,
            c.card_offset_mm,
        )

    def _mailer_plan(self) -> tuple[tuple[int, int, MailerPin], ...]:
        """The PIN mailer's PINs in its order: (index of the PIN's result or -1, index of
        the mailer's copy, the entry with an empty block); a PIN the card makes at the
        line has no result (no block yet)."""
        m = self.profile.letters.pin_mailer
        if m is None:
            return ()
        blocks: dict[str, tuple[int, int, MailerPin]] = {}
        for i, pp in enumerate(self.secrets.pins):
            if pp.mailer is not None:
                cp = pp.copies[pp.mailer]
                pin = MailerPin(pp.pin.name, cp.key.label, int(cp.fmt), b"")
                blocks[pp.pin.name] = (i, pp.mailer, pin)
        for g in self.secrets.generated:
            if g.mailer is not None:
                cp = g.copies[g.mailer]
                blocks[g.pin.name] = (-1, 0, MailerPin(g.pin.name, cp.key.label, int(cp.fmt), b""))
        return tuple(blocks[name] for name in m.pins if name in blocks)

    def _mailer(
        self, values: Mapping[str, str], pins: Sequence[CardSecret], seen: dict[str, str]
    ) -> MailerData | None:
        m = self.profile.letters.pin_mailer
        if m is None:
            return None
        return MailerData(
            m.template,
            self._lines(m.address, values, seen),
            m.delay_days,
            tuple(
                pin if i < 0 else MailerPin(pin.name, pin.key, pin.format, pins[i].copies[copy])
                for i, copy, pin in self._mailer_pins
            ),
        )


def _uses_chip_serial(el: Element) -> bool:
    if el.derived == Derived.CHIP_SERIAL:
        return True
    return any(_uses_chip_serial(c) for c in el.children or [])


def external_auth_step(key: CardKey, diversifier_data: str, *, sm: bool) -> Step:
    """GET CHALLENGE, then EXTERNAL AUTHENTICATE of the derived ``key`` with the HSM's
    cryptogram from its master key and ``diversifier_data`` (``"chip_serial"`` or hex)."""
    return Step(
        StepKind.EXTERNAL_AUTH,
        f"EXTERNAL AUTHENTICATE {key.name} (ref {key.ref})",
        apdu=cos.get_challenge(8 if key.algorithm.value.startswith("tdes") else 16),
        sm=sm,
        key_ref=key.ref,
        master_key=key.master_key or "",
        diversifier=diversifier_data,
        scheme=kd_scheme(key).value,
    )
