"""When reminders go out, to whom, and with which words: pure functions of settings and a clock.

Nothing here reads the database or the wall clock, so the schedule can be tested
with a frozen "now" across the window and time-zone boundaries, and the bot can
recompute the very same occurrences at every start-up. Each occurrence has a
stable key ("reminder:2025-06-10:during"): the broadcast row created for it
carries that key (UNIQUE), so a reminder is created at most once however often
the bot restarts.

Rules (see docs/REMINDERS.md):

* before the window: one reminder ``REMINDER_DAYS_BEFORE`` days before
  ``SURVEY_WINDOW_START`` (0 means on the opening day), to everyone reachable
  who has not completed;
* during the window: every ``REMINDER_EVERY_DAYS`` days after the opening day,
  to contacts with an unfinished response (survey_status 'started') only;
* closing: the day before ``SURVEY_WINDOW_END`` (the last day, inclusive), to
  everyone reachable who has not completed.

At most one reminder per calendar day: closing beats during beats before. All
at ``REMINDER_TIME`` local time in ``TIMEZONE``.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from babel.dates import format_date

from core.broadcast import Audience
from core.config import Settings
from core.i18n import SUPPORTED_LOCALES, gettext_for

ReminderKind = Literal["before", "during", "closing"]
ReminderState = Literal["upcoming", "due", "expired"]

AUDIENCE: dict[ReminderKind, Audience] = {
    "before": "not_completed",
    "during": "started",
    "closing": "not_completed",
}
_PRIORITY: dict[ReminderKind, int] = {"before": 1, "during": 2, "closing": 3}
KEY_PREFIX = "reminder:"


@dataclass(frozen=True)
class ReminderRules:
    """The schedule settings, gathered so tests can vary one of them at a time."""

    window_start: dt.date
    window_end: dt.date
    days_before: tuple[int, ...]
    at_time: dt.time
    every_days: int
    tz: ZoneInfo

    @classmethod
    def from_settings(cls, settings: Settings) -> ReminderRules:
        return cls(
            window_start=settings.survey_window_start,
            window_end=settings.survey_window_end,
            days_before=tuple(settings.reminder_days_before),
            at_time=settings.reminder_time,
            every_days=settings.reminder_every_days,
            tz=settings.tz,
        )

    @property
    def valid(self) -> bool:
        return self.window_end >= self.window_start and self.every_days >= 1


@dataclass(frozen=True)
class Occurrence:
    """One reminder on one local day."""

    kind: ReminderKind
    day: dt.date
    at: dt.datetime  # aware, in the configured time zone

    @property
    def key(self) -> str:
        return f"{KEY_PREFIX}{self.day.isoformat()}:{self.kind}"

    @property
    def audience(self) -> Audience:
        return AUDIENCE[self.kind]


@dataclass(frozen=True)
class Planned:
    occurrence: Occurrence
    state: ReminderState


def occurrences(rules: ReminderRules) -> list[Occurrence]:
    """Every reminder of the configured window, in time order (empty if the window is invalid)."""
    if not rules.valid:
        return []
    by_day: dict[dt.date, ReminderKind] = {}

    def add(day: dt.date, kind: ReminderKind) -> None:
        current = by_day.get(day)
        if current is None or _PRIORITY[kind] > _PRIORITY[current]:
            by_day[day] = kind

    for days in rules.days_before:
        if days >= 0:  # a negative value would fall inside the window: ignored
            add(rules.window_start - dt.timedelta(days=days), "before")
    closing_day = rules.window_end - dt.timedelta(days=1)
    day = rules.window_start + dt.timedelta(days=rules.every_days)
    while day < closing_day:
        add(day, "during")
        day += dt.timedelta(days=rules.every_days)
    # A one-day window has no "day before the end" inside it; the before-reminders cover it.
    if closing_day >= rules.window_start:
        add(closing_day, "closing")
    return [
        Occurrence(kind=kind, day=day, at=local_moment(day, rules.at_time, rules.tz))
        for day, kind in sorted(by_day.items())
    ]


def local_moment(day: dt.date, at_time: dt.time, tz: ZoneInfo) -> dt.datetime:
    """Wall-clock time on a local day (DST-safe: zoneinfo picks the offset of that date)."""
    return dt.datetime.combine(day, at_time.replace(tzinfo=None), tzinfo=tz)


def state_of(occurrence: Occurrence, now: dt.datetime, tz: ZoneInfo) -> ReminderState:
    """Upcoming before its time; due for the rest of that local day; expired afterwards.

    A reminder missed because the bot was down at its time is still sent later the
    same local day, but never on a later day: "closes tomorrow" must not arrive late.
    """
    if now < occurrence.at:
        return "upcoming"
    if now.astimezone(tz).date() == occurrence.day:
        return "due"
    return "expired"


def plan(rules: ReminderRules, now: dt.datetime) -> list[Planned]:
    """All occurrences with their state at ``now`` (an aware datetime)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return [Planned(occ, state_of(occ, now, rules.tz)) for occ in occurrences(rules)]


def due_and_upcoming(rules: ReminderRules, now: dt.datetime) -> list[Planned]:
    """What start-up must act on: send the due ones now, schedule the upcoming ones."""
    return [p for p in plan(rules, now) if p.state != "expired"]


def reminder_texts(kind: ReminderKind, period: str, rules: ReminderRules) -> dict[str, str]:
    """The reminder in every supported language (HTML-safe), keyed by locale."""
    texts: dict[str, str] = {}
    for locale in SUPPORTED_LOCALES:
        _ = gettext_for(locale).gettext
        values = {
            "period": html.escape(period),
            "start": format_date(rules.window_start, "long", locale=locale),
            "end": format_date(rules.window_end, "long", locale=locale),
        }
        if kind == "before":
            body = _(
                "📋 The integrity survey (SPI) {period} runs from {start} to {end}. "
                "Your answers are anonymous and help improve public services."
            )
        elif kind == "during":
            body = _(
                "⏰ Reminder: you have not finished the integrity survey (SPI) {period} yet. "
                "It is open until {end}; you can continue where you left off."
            )
        else:
            body = _(
                "⏳ The integrity survey (SPI) {period} closes tomorrow, {end}. "
                "If you have not finished it yet, please take a few minutes today."
            )
        footer = _("To stop reminders, send /berhenti.")
        texts[locale] = body.format(**values) + "\n\n<i>" + footer + "</i>"
    return texts
