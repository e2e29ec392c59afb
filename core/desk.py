"""The officials' desk: what officials and the inspectorate's admins can ask of the survey.

The respondents have the :class:`~core.engine.Engine`; officials and admins have
this. Every operation takes the :class:`Caller` (channel, user id and the id of
the incoming event) and typed arguments, and returns a typed result or a
:class:`Refused`. No chat framework appears here, so every channel offers the
same commands with the same rules.

The desk owns the access rules: an official sees only their own unit, an admin
any unit; everything else is for admins alone, checked in the same transaction
that does the work (:func:`admins_only`). Reads run on the storage's read-only
connection and never wait for the writer; a write claims the event id in its
own transaction, so a redelivered command changes nothing, and appends what it
did to the audit log. No transaction is open while a channel talks to its
network: operations return plain data, and the channel sends afterwards.

Arguments typed in a chat are parsed with explicit patterns (``parse_*``):
ASCII digits only, bounded length, nothing that ``int()`` or ``float()`` would
accept by accident (``²``, ``١٢``, ``1e2``).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Concatenate, Literal, ParamSpec, TypeVar

from core import access, fieldwork
from core import broadcast as bc
from core.access import Admin, Invite, Official, Role
from core.aggregates import (
    CORRECTION_CATEGORIES,
    Correction,
    CorrectionCategory,
    add_correction,
    corrections_of,
    flag_counts,
    withdraw_correction,
)
from core.config import Settings
from core.export import ExportData, export_rows
from core.fieldwork import Progress, ScreenOut, completed_counts, screenouts
from core.i18n import SUPPORTED_LOCALES
from core.identity import pseudonym
from core.model import utcnow
from core.publish import published_city_index, published_unit_score
from core.questionnaire import Questionnaire
from core.reminders import Planned, ReminderRules, plan
from core.report import UnitReport
from core.scoring import CITY_UNIT, UnitScore
from core.storage import Storage, Transaction
from core.units import Unit, UnitRegistry

CHANNELS = ("telegram", "whatsapp")  # where roles live; a role never crosses channels
RANKING_PAGE = 15
PROGRESS_PAGE = 20  # rows of the progress table per message
RECENT_BROADCASTS = 5
MAX_QUERY = 100  # characters of a unit code or name
MAX_REASON = 500  # characters of a correction's reason

Reason = Literal[
    "not_allowed",  # neither an admin nor the unit's official
    "admins_only",
    "usage",  # the arguments cannot be used; the channel shows the command's usage
    "unit_unknown",  # detail: what was typed
    "unit_removed",  # an invite for a unit no longer in the units file
    "duplicate",  # this event was already carried out
    "invalid_code",
    "expired",
    "used",
    "revoked",
    "not_found",  # detail: the id
    "configured_admin",  # detail: the id; ADMIN_IDS are changed in the settings only
    "too_long",  # detail: the length
    "already_decided",  # a broadcast already sent or cancelled
    "export_disabled",
    "button_unknown",  # a button's data that no operation recognises
]


@dataclass(frozen=True)
class Caller:
    """Who asks, on which channel, and the id of the incoming event (for idempotency).

    A role belongs to (channel, user id): the same number on another channel is
    another account, and the settings name admins per channel
    (:meth:`~core.config.Settings.configured_admins`)."""

    channel: str
    user_id: int
    event_id: str | None = None

    @property
    def actor(self) -> str:
        return f"{self.channel}:{self.user_id}"


@dataclass(frozen=True)
class Who:
    caller: Caller
    role: Role
    locale: str


@dataclass(frozen=True)
class Refused:
    reason: Reason
    locale: str
    detail: str = ""


@dataclass(frozen=True)
class RoleView:
    locale: str
    role: Role


@dataclass(frozen=True)
class UnitView:
    locale: str
    report: UnitReport
    corrections: list[Correction]  # the ones that apply (not withdrawn)


@dataclass(frozen=True)
class RankingView:
    locale: str
    reports: list[UnitReport]
    page: int  # 0-based, within range
    pages: int
    per_page: int = RANKING_PAGE


@dataclass(frozen=True)
class RecapView:
    locale: str
    reports: list[UnitReport]
    government: str
    flags: dict[str, int]
    city_index: float | None = None
    screenouts: list[ScreenOut] = field(default_factory=list)  # attempts, per ineligible answer
    completed: dict[str, int] = field(default_factory=dict)  # completed responses per group
    city: UnitScore | None = None  # the pseudo-unit ``kota``: experts rating the whole city


@dataclass(frozen=True)
class ProgressView:
    """Responses / target / population per unit and group, furthest behind first."""

    locale: str
    period: str
    rows: list[Progress]  # the page's rows
    behind: int  # unit groups still behind their target, over all pages
    total: int  # unit groups, over all pages
    page: int  # 0-based, within range
    pages: int
    margin: float


@dataclass(frozen=True)
class InviteCreated:
    locale: str
    unit: Unit
    code: str
    hours: int


@dataclass(frozen=True)
class Registered:
    locale: str
    unit_name: str


@dataclass(frozen=True)
class InviteList:
    locale: str
    invites: list[tuple[Invite, str]]  # with the unit's name


@dataclass(frozen=True)
class AdminList:
    locale: str
    admins: list[Admin]


@dataclass(frozen=True)
class OfficialList:
    locale: str
    officials: list[tuple[Official, str]]  # with the unit's name


Action = Literal[
    "invite_revoked", "admin_added", "admin_removed", "official_revoked", "export_made"
]


@dataclass(frozen=True)
class Done:
    locale: str
    action: Action
    subject: str  # what it was done to: an id or a unit's name


@dataclass(frozen=True)
class CorrectionView:
    locale: str
    correction: Correction
    unit_name: str


@dataclass(frozen=True)
class CorrectionList:
    locale: str
    unit: Unit
    corrections: list[Correction]  # withdrawn ones included, marked


@dataclass(frozen=True)
class Draft:
    locale: str
    broadcast_id: int
    recipients: int
    text: str  # as sent (HTML-escaped)


@dataclass(frozen=True)
class BroadcastDecided:
    locale: str
    broadcast_id: int
    started: int | None  # recipients if sent; None if cancelled


@dataclass(frozen=True)
class BroadcastStatus:
    locale: str
    broadcasts: list[tuple[bc.Broadcast, bc.Counts]]
    rate: float  # messages/s over the last minute


@dataclass(frozen=True)
class Schedule:
    locale: str
    rules: ReminderRules
    planned: list[Planned]
    tallies: dict[str, bc.Counts] = field(default_factory=dict)


@dataclass(frozen=True)
class ExportReady:
    locale: str
    data: ExportData
    period: str


# -- argument patterns ----------------------------------------------------------------
_USER_ID = re.compile(r"[1-9][0-9]{0,14}")  # Telegram ids fit in 52 bits
_ROW_ID = re.compile(r"[1-9][0-9]{0,17}")
_PAGE = re.compile(r"[1-9][0-9]{0,3}")
_POINTS = re.compile(r"([0-9]{1,3})(?:[.,]([0-9]{1,2}))?")
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{0,31}")
_QUERY = re.compile(r"[^\x00-\x1f]{1,100}")  # MAX_QUERY


def parse_user_id(text: str) -> int | None:
    match = _USER_ID.fullmatch(text.strip())
    return int(match.group()) if match else None


def parse_row_id(text: str) -> int | None:
    match = _ROW_ID.fullmatch(text.strip().lstrip("#"))
    return int(match.group()) if match else None


def parse_page(text: str) -> int | None:
    """A 1-based page number typed by a person; None if it is not one."""
    match = _PAGE.fullmatch(text.strip())
    return int(match.group()) if match else None


def parse_points(text: str) -> float | None:
    """Points of a deduction: 0 < points ≤ 100, at most two decimals, ',' or '.'."""
    match = _POINTS.fullmatch(text.strip())
    if match is None:
        return None
    value = float(f"{match.group(1)}.{match.group(2) or '0'}")
    return value if 0 < value <= 100 else None


def parse_code(text: str) -> str | None:
    """An invite code as typed from a phone (spaces and dashes are ignored later)."""
    text = text.strip()
    return text if _CODE.fullmatch(text) else None


def parse_query(text: str) -> str | None:
    """A unit's code or name: one line, bounded."""
    text = " ".join(text.split())
    return text if _QUERY.fullmatch(text) else None


def parse_category(text: str) -> CorrectionCategory | None:
    value = text.strip().lower().replace("-", "_")
    for category in CORRECTION_CATEGORIES:
        if value == category:
            return category
    return None


# -- the access rule, once ------------------------------------------------------------
P = ParamSpec("P")
R = TypeVar("R")


def admins_only(
    *, write: bool
) -> Callable[
    [Callable[Concatenate[Desk, Transaction, Who, P], Awaitable[R]]],
    Callable[Concatenate[Desk, Caller, P], Awaitable[R | Refused]],
]:
    """Run the operation for admins only, in one transaction that also checks the role.

    ``write``: the writer's transaction, with the caller's event id claimed in it
    (a redelivered event is refused as a duplicate and changes nothing); otherwise
    a read on the read-only connection.
    """

    def decorate(
        operation: Callable[Concatenate[Desk, Transaction, Who, P], Awaitable[R]],
    ) -> Callable[Concatenate[Desk, Caller, P], Awaitable[R | Refused]]:
        @functools.wraps(operation)
        async def run(
            desk: Desk, caller: Caller, /, *args: P.args, **kwargs: P.kwargs
        ) -> R | Refused:
            opened = desk.storage.transaction() if write else desk.storage.read()
            async with opened as tx:
                who = await desk.who(tx, caller)
                if not who.role.admin:
                    return Refused("admins_only", who.locale)
                if write and not await desk.claim(tx, caller):
                    return Refused("duplicate", who.locale)
                return await operation(desk, tx, who, *args, **kwargs)

        return run

    return decorate


class Desk:
    """Officials' and admins' operations over one survey period's data."""

    def __init__(
        self,
        *,
        settings: Settings,
        questionnaire: Questionnaire,
        units: UnitRegistry,
        storage: Storage,
        secret_key: bytes,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.questionnaire = questionnaire
        self.units = units
        self.storage = storage
        self.secret_key = secret_key
        self.clock = clock

    @property
    def period(self) -> str:
        return self.questionnaire.period

    # -- who is asking --------------------------------------------------------------
    async def who(self, tx: Transaction, caller: Caller) -> Who:
        """The caller's role and language (contact's, else survey session's, else default)."""
        role = await access.role_of(
            tx,
            caller.user_id,
            self.settings.configured_admins(caller.channel),
            channel=caller.channel,
        )
        locale: str = self.settings.default_locale
        contact = await tx.get_contact(caller.channel, str(caller.user_id))
        if contact is not None:
            locale = contact.locale
        else:
            key = pseudonym(self.secret_key, caller.channel, str(caller.user_id))
            state = await tx.get_session(key)
            if state is not None:
                locale = state.locale
        return Who(caller, role, locale)

    async def claim(self, tx: Transaction, caller: Caller) -> bool:
        if caller.event_id is None:
            return True
        return await tx.claim_event(caller.event_id, self.clock())

    async def role(self, caller: Caller) -> RoleView:
        async with self.storage.read() as tx:
            who = await self.who(tx, caller)
        return RoleView(who.locale, who.role)

    # -- scores ---------------------------------------------------------------------
    async def _unit_score(self, tx: Transaction, unit: str, period: str) -> UnitScore:
        """The one place a unit's score is read: its published figures, never live ones."""
        return await published_unit_score(
            tx, self.questionnaire, period, unit, self.settings.sample_margin_of_error
        )

    async def _report(self, tx: Transaction, unit: Unit, admin: bool) -> UnitReport:
        score = await self._unit_score(tx, unit.code, self.period)
        previous = None
        if self.period.isdigit():
            before = await self._unit_score(tx, unit.code, str(int(self.period) - 1))
            previous = before if before.n else None
        flags = await flag_counts(tx, self.period, unit.code) if admin else None
        return UnitReport(unit=unit, score=score, previous=previous, flags=flags)

    async def unit_report(self, caller: Caller, query: str = "") -> UnitView | Refused:
        """An official's own unit (or, by name, only their own); an admin's named unit."""
        async with self.storage.read() as tx:
            who = await self.who(tx, caller)
            role = who.role
            if query:
                unit = self.units.resolve(query)
                if unit is None:
                    if role.admin:
                        return Refused("unit_unknown", who.locale, query)
                    return Refused("not_allowed", who.locale)
            elif role.unit_code is not None:
                unit = self.units.get(role.unit_code)
                if unit is None:  # the unit left the units file
                    return Refused("unit_removed", who.locale, role.unit_code)
            elif role.admin:
                return Refused("usage", who.locale)
            else:
                return Refused("not_allowed", who.locale)
            if not role.may_see(unit.code):
                return Refused("not_allowed", who.locale)
            report = await self._report(tx, unit, admin=role.admin)
            corrections = await corrections_of(tx, self.period, unit.code)
        return UnitView(who.locale, report, corrections)

    async def _all_reports(self, tx: Transaction) -> list[UnitReport]:
        return [await self._report(tx, unit, admin=True) for unit in self.units.units]

    @admins_only(write=False)
    async def ranking(self, tx: Transaction, who: Who, page: int = 1) -> RankingView:
        """All units, best first, one page (1-based; clamped to the pages there are)."""
        reports = await self._all_reports(tx)
        pages = max(1, -(-len(reports) // RANKING_PAGE))
        return RankingView(who.locale, reports, min(max(page - 1, 0), pages - 1), pages)

    @admins_only(write=False)
    async def recap(self, tx: Transaction, who: Who) -> RecapView:
        reports = await self._all_reports(tx)
        flags = await flag_counts(tx, self.period, None)
        codes = [unit.code for unit in self.units.units]
        city_level = any(g.city_level for g in self.questionnaire.groups)
        pooled = [*codes, CITY_UNIT] if city_level else codes  # the city's experts count too
        city = await published_city_index(tx, self.questionnaire, self.period, pooled)
        city_score = (
            await published_unit_score(tx, self.questionnaire, self.period, CITY_UNIT)
            if city_level
            else None
        )
        counts = await completed_counts(tx, self.period, self.settings.sampled_only)
        completed: dict[str, int] = {}
        for (_unit, group), n in counts.items():
            completed[group] = completed.get(group, 0) + n
        return RecapView(
            who.locale,
            reports,
            self.units.government,
            flags,
            city,
            screenouts=await screenouts(tx, self.period),
            completed=completed,
            city=city_score,
        )

    @admins_only(write=False)
    async def progress(self, tx: Transaction, who: Who, page: int = 1) -> ProgressView:
        """The daily progress table (core.fieldwork.progress), one page (1-based, clamped)."""
        margin = self.settings.sample_margin_of_error
        rows = await fieldwork.progress(
            tx, self.questionnaire, self.units, margin, self.settings.sampled_only
        )
        pages = max(1, -(-len(rows) // PROGRESS_PAGE))
        index = min(max(page - 1, 0), pages - 1)
        return ProgressView(
            locale=who.locale,
            period=self.period,
            rows=rows[index * PROGRESS_PAGE : (index + 1) * PROGRESS_PAGE],
            behind=sum(1 for r in rows if r.shortfall),
            total=len(rows),
            page=index,
            pages=pages,
            margin=margin,
        )

    # -- invites --------------------------------------------------------------------
    @admins_only(write=True)
    async def create_invite(self, tx: Transaction, who: Who, query: str) -> InviteCreated | Refused:
        unit = self.units.resolve(query)
        if unit is None:
            return Refused("unit_unknown", who.locale, query)
        now = self.clock()
        ttl = dt.timedelta(hours=self.settings.invite_ttl_hours)
        code = await access.create_invite(
            tx, self.secret_key, unit.code, who.caller.user_id, now, ttl, channel=who.caller.channel
        )
        await tx.audit(who.caller.actor, "invite_created", f"unit={unit.code}", now)
        return InviteCreated(who.locale, unit, code, self.settings.invite_ttl_hours)

    async def redeem_invite(self, caller: Caller, code: str) -> Registered | Refused:
        """Anyone may try a code; it binds them to its unit once, if still valid."""
        async with self.storage.transaction() as tx:
            who = await self.who(tx, caller)
            if not await self.claim(tx, caller):
                return Refused("duplicate", who.locale)
            now = self.clock()
            known = {unit.code for unit in self.units.units}
            result, unit_code = await access.redeem_invite(
                tx,
                self.secret_key,
                code,
                caller.user_id,
                now,
                known_units=known,
                channel=caller.channel,
            )
            if result == "ok" and unit_code is not None:
                await tx.audit(caller.actor, "invite_redeemed", f"unit={unit_code}", now)
        if result == "ok" and unit_code is not None:
            unit = self.units.get(unit_code)
            return Registered(who.locale, unit.name if unit else unit_code)
        reasons: dict[str, Reason] = {
            "expired": "expired",
            "used": "used",
            "revoked": "revoked",
            "unit_removed": "unit_removed",
        }
        return Refused(reasons.get(result, "invalid_code"), who.locale)

    @admins_only(write=False)
    async def invites(self, tx: Transaction, who: Who) -> InviteList:
        found = await access.open_invites(tx, self.clock())
        return InviteList(who.locale, [(i, self._unit_name(i.unit_code)) for i in found])

    @admins_only(write=True)
    async def revoke_invite(self, tx: Transaction, who: Who, invite_id: int) -> Done | Refused:
        now = self.clock()
        unit_code = await access.revoke_invite(tx, invite_id, now)
        if unit_code is None:
            return Refused("not_found", who.locale, str(invite_id))
        await tx.audit(
            who.caller.actor, "invite_revoked", f"invite={invite_id} unit={unit_code}", now
        )
        return Done(who.locale, "invite_revoked", self._unit_name(unit_code))

    # -- admins and officials ------------------------------------------------------
    @admins_only(write=False)
    async def admins(self, tx: Transaction, who: Who) -> AdminList:
        configured = {channel: self.settings.configured_admins(channel) for channel in CHANNELS}
        return AdminList(who.locale, await access.list_admins(tx, configured))

    @admins_only(write=True)
    async def add_admin(
        self, tx: Transaction, who: Who, user_id: int, channel: str | None = None
    ) -> Done:
        """``user_id`` on ``channel`` (by default the caller's) becomes an admin."""
        channel = channel or who.caller.channel
        now = self.clock()
        await access.add_admin(tx, user_id, who.caller.user_id, now, channel=channel)
        await tx.audit(who.caller.actor, "admin_added", _user(user_id, channel), now)
        return Done(who.locale, "admin_added", str(user_id))

    @admins_only(write=True)
    async def remove_admin(
        self, tx: Transaction, who: Who, user_id: int, channel: str | None = None
    ) -> Done | Refused:
        channel = channel or who.caller.channel
        if user_id in self.settings.configured_admins(channel):
            return Refused("configured_admin", who.locale, str(user_id))
        now = self.clock()
        if not await access.remove_admin(tx, user_id, channel=channel):
            return Refused("not_found", who.locale, str(user_id))
        await tx.audit(who.caller.actor, "admin_removed", _user(user_id, channel), now)
        return Done(who.locale, "admin_removed", str(user_id))

    @admins_only(write=False)
    async def officials(self, tx: Transaction, who: Who) -> OfficialList:
        found = await access.list_officials(tx)
        return OfficialList(who.locale, [(o, self._unit_name(o.unit_code)) for o in found])

    @admins_only(write=True)
    async def revoke_official(
        self, tx: Transaction, who: Who, user_id: int, channel: str | None = None
    ) -> Done | Refused:
        """The official ``user_id`` on ``channel`` (by default the caller's) is revoked."""
        channel = channel or who.caller.channel
        now = self.clock()
        if not await access.revoke_official(tx, user_id, channel=channel):
            return Refused("not_found", who.locale, str(user_id))
        await tx.audit(who.caller.actor, "official_revoked", _user(user_id, channel), now)
        return Done(who.locale, "official_revoked", str(user_id))

    # -- corrections (faktor koreksi) ----------------------------------------------
    @admins_only(write=True)
    async def add_correction(
        self,
        tx: Transaction,
        who: Who,
        query: str,
        category: CorrectionCategory,
        points: float,
        reason: str,
    ) -> CorrectionView | Refused:
        unit = self.units.resolve(query)
        if unit is None:
            return Refused("unit_unknown", who.locale, query)
        reason = " ".join(reason.split())
        if not reason:
            return Refused("usage", who.locale)
        if len(reason) > MAX_REASON:
            return Refused("too_long", who.locale, str(len(reason)))
        now = self.clock()
        correction_id = await add_correction(
            tx,
            self.period,
            unit.code,
            points,
            reason,
            now,
            category=category,
            author=who.caller.actor,
        )
        await tx.audit(
            who.caller.actor,
            "correction_added",
            f"id={correction_id} unit={unit.code} category={category} points={points:g} "
            f"reason={reason}",
            now,
        )
        correction = next(
            c for c in await corrections_of(tx, self.period, unit.code) if c.id == correction_id
        )
        return CorrectionView(who.locale, correction, unit.name)

    @admins_only(write=True)
    async def withdraw_correction(
        self, tx: Transaction, who: Who, correction_id: int
    ) -> CorrectionView | Refused:
        now = self.clock()
        correction = await withdraw_correction(tx, correction_id, who.caller.actor, now)
        if correction is None:
            return Refused("not_found", who.locale, str(correction_id))
        await tx.audit(
            who.caller.actor,
            "correction_withdrawn",
            f"id={correction_id} unit={correction.unit_code}",
            now,
        )
        return CorrectionView(who.locale, correction, self._unit_name(correction.unit_code))

    @admins_only(write=False)
    async def corrections(self, tx: Transaction, who: Who, query: str) -> CorrectionList | Refused:
        unit = self.units.resolve(query)
        if unit is None:
            return Refused("unit_unknown", who.locale, query)
        found = await corrections_of(tx, self.period, unit.code, include_withdrawn=True)
        return CorrectionList(who.locale, unit, found)

    # -- broadcasts and reminders --------------------------------------------------
    @admins_only(write=True)
    async def broadcast_draft(
        self,
        tx: Transaction,
        who: Who,
        text: str,
        escape: Callable[[str], str],
        channels: Collection[str] = (),
    ) -> Draft | Refused:
        """A draft to everyone reachable on ``channels`` (by default the caller's);
        ``escape`` makes the text safe for the channel."""
        if len(text) > bc.MAX_TEXT_LENGTH:
            return Refused("too_long", who.locale, str(len(text)))
        progress = bc.SurveyProgress(self.secret_key, self.period)
        recipients = len(
            await bc.audience_rows(tx, "all", channels or (who.caller.channel,), progress)
        )
        escaped = escape(text)
        now = self.clock()
        draft_id = await bc.create_draft(
            tx,
            kind="manual",
            texts={locale: escaped for locale in SUPPORTED_LOCALES},
            audience="all",
            now=now,
            created_by=who.caller.user_id,
        )
        assert draft_id is not None
        await tx.audit(who.caller.actor, "broadcast_drafted", f"broadcast={draft_id}", now)
        return Draft(who.locale, draft_id, recipients, escaped)

    @admins_only(write=True)
    async def broadcast_decide(
        self,
        tx: Transaction,
        who: Who,
        broadcast_id: int,
        send: bool,
        channels: Collection[str] = (),
    ) -> BroadcastDecided | Refused:
        """Send a draft to ``channels`` (by default the caller's), or cancel it."""
        now = self.clock()
        if send:
            progress = bc.SurveyProgress(self.secret_key, self.period)
            channels = channels or (who.caller.channel,)
            started = await bc.start_draft(tx, broadcast_id, channels, now, progress)
            if started is None:
                return Refused("already_decided", who.locale, str(broadcast_id))
            await tx.audit(
                who.caller.actor, "broadcast_sent", f"broadcast={broadcast_id} n={started}", now
            )
            return BroadcastDecided(who.locale, broadcast_id, started)
        if not await bc.cancel_draft(tx, broadcast_id, now):
            return Refused("already_decided", who.locale, str(broadcast_id))
        await tx.audit(who.caller.actor, "broadcast_cancelled", f"broadcast={broadcast_id}", now)
        return BroadcastDecided(who.locale, broadcast_id, None)

    @admins_only(write=False)
    async def broadcast_status(self, tx: Transaction, who: Who) -> BroadcastStatus:
        recent = await bc.recent_broadcasts(tx, RECENT_BROADCASTS)
        tallies = [(item, await bc.counts(tx, item.id)) for item in recent]
        return BroadcastStatus(who.locale, tallies, await bc.current_rate(tx, self.clock()))

    @admins_only(write=False)
    async def reminder_schedule(self, tx: Transaction, who: Who) -> Schedule:
        rules = ReminderRules.from_settings(self.settings)
        planned = plan(rules, self.clock())
        existing = await bc.broadcasts_by_key(tx, [p.occurrence.key for p in planned])
        tallies = {key: await bc.counts(tx, b.id) for key, b in existing.items()}
        return Schedule(who.locale, rules, planned, tallies)

    # -- export ---------------------------------------------------------------------
    async def export(self, caller: Caller) -> ExportReady | Refused:
        """The workbook's data, for a chat only when CHAT_EXPORT_ENABLED; always audited."""
        async with self.storage.transaction() as tx:
            who = await self.who(tx, caller)
            if not who.role.admin:
                return Refused("admins_only", who.locale)
            if not self.settings.chat_export_enabled:
                return Refused("export_disabled", who.locale)
            if not await self.claim(tx, caller):
                return Refused("duplicate", who.locale)
            await tx.audit(
                caller.actor, "export", f"period={self.period} format=xlsx via=chat", self.clock()
            )
        async with self.storage.read() as tx:
            data = await export_rows(
                tx,
                self.questionnaire,
                self.units,
                self.period,
                margin=self.settings.sample_margin_of_error,
            )
        return ExportReady(who.locale, data, self.period)

    def _unit_name(self, code: str) -> str:
        unit = self.units.get(code)
        return unit.name if unit else code


def _user(user_id: int, channel: str) -> str:
    """An account in the audit log (Telegram's, as before the channel was recorded)."""
    return f"user={user_id}" if channel == "telegram" else f"user={user_id} channel={channel}"
