"""The reminder schedule as pure functions of settings and a frozen clock."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from core.config import load_settings
from core.reminders import (
    Occurrence,
    ReminderRules,
    due_and_upcoming,
    local_moment,
    occurrences,
    plan,
    reminder_texts,
    state_of,
)

JAKARTA = ZoneInfo("Asia/Jakarta")
UTC = dt.UTC


def rules(**changes: object) -> ReminderRules:
    base: dict[str, object] = {
        "window_start": dt.date(2025, 6, 2),
        "window_end": dt.date(2025, 6, 30),
        "days_before": (14, 7, 1),
        "at_time": dt.time(9, 0),
        "every_days": 3,
        "tz": JAKARTA,
    }
    base.update(changes)
    return ReminderRules(**base)  # type: ignore[arg-type]


def by_day(found: list[Occurrence]) -> dict[str, str]:
    return {o.day.isoformat(): o.kind for o in found}


def test_default_settings_give_the_june_window() -> None:
    settings = load_settings(_env_file=None)
    assert ReminderRules.from_settings(settings) == rules()


def test_default_schedule_before_during_and_closing() -> None:
    found = occurrences(rules())
    assert by_day(found) == {
        "2025-05-19": "before",
        "2025-05-26": "before",
        "2025-06-01": "before",
        "2025-06-05": "during",
        "2025-06-08": "during",
        "2025-06-11": "during",
        "2025-06-14": "during",
        "2025-06-17": "during",
        "2025-06-20": "during",
        "2025-06-23": "during",
        "2025-06-26": "during",
        "2025-06-29": "closing",
    }
    assert [o.at for o in found] == sorted(o.at for o in found)
    first = found[0]
    assert first.key == "reminder:2025-05-19:before"
    assert first.at == dt.datetime(2025, 5, 19, 9, 0, tzinfo=JAKARTA)
    assert first.at.astimezone(UTC) == dt.datetime(2025, 5, 19, 2, 0, tzinfo=UTC)
    audiences = {o.kind: o.audience for o in found}
    assert audiences == {"before": "not_completed", "during": "started", "closing": "not_completed"}
    assert len({o.key for o in found}) == len(found)


def test_one_reminder_per_day_closing_wins() -> None:
    # Daily reminders: the day before the end is the closing reminder, not a second message.
    found = occurrences(rules(every_days=1, window_start=dt.date(2025, 6, 2),
                              window_end=dt.date(2025, 6, 6)))  # fmt: skip
    assert by_day(found) == {
        "2025-05-19": "before",
        "2025-05-26": "before",
        "2025-06-01": "before",
        "2025-06-03": "during",
        "2025-06-04": "during",
        "2025-06-05": "closing",
    }


def test_days_before_zero_is_the_opening_day_and_negatives_are_ignored() -> None:
    found = occurrences(rules(days_before=(7, 0, 7, -3)))
    assert by_day(found)["2025-06-02"] == "before"
    assert sum(1 for o in found if o.kind == "before") == 2


def test_one_day_window_has_no_closing_inside_it() -> None:
    found = occurrences(rules(window_start=dt.date(2025, 6, 2), window_end=dt.date(2025, 6, 2)))
    assert by_day(found) == {"2025-05-19": "before", "2025-05-26": "before", "2025-06-01": "before"}


def test_two_day_window_closes_on_its_first_day() -> None:
    found = occurrences(rules(window_start=dt.date(2025, 6, 2), window_end=dt.date(2025, 6, 3)))
    assert by_day(found)["2025-06-02"] == "closing"


def test_window_ending_before_it_starts_schedules_nothing() -> None:
    broken = rules(window_start=dt.date(2025, 6, 30), window_end=dt.date(2025, 6, 2))
    assert not broken.valid
    assert occurrences(broken) == []


@pytest.mark.parametrize(
    ("now_utc", "state"),
    [
        (dt.datetime(2025, 6, 4, 17, 0, tzinfo=UTC), "upcoming"),  # 00:00 WIB on the day
        (dt.datetime(2025, 6, 5, 1, 59, 59, tzinfo=UTC), "upcoming"),  # 08:59:59 WIB
        (dt.datetime(2025, 6, 5, 2, 0, tzinfo=UTC), "due"),  # 09:00 WIB exactly
        (dt.datetime(2025, 6, 5, 16, 59, 59, tzinfo=UTC), "due"),  # 23:59:59 WIB, still today
        (dt.datetime(2025, 6, 5, 17, 0, tzinfo=UTC), "expired"),  # 00:00 WIB next day
    ],
)
def test_state_across_the_local_day(now_utc: dt.datetime, state: str) -> None:
    june5 = next(o for o in occurrences(rules()) if o.day == dt.date(2025, 6, 5))
    assert state_of(june5, now_utc, JAKARTA) == state


def test_local_day_decides_not_the_utc_day() -> None:
    # 18:00 UTC on 5 June is still 5 June in UTC but already 6 June in Jakarta and Jayapura.
    now = dt.datetime(2025, 6, 5, 18, 0, tzinfo=UTC)
    for tz in (JAKARTA, ZoneInfo("Asia/Jayapura")):
        occ = next(o for o in occurrences(rules(tz=tz)) if o.day == dt.date(2025, 6, 5))
        assert state_of(occ, now, tz) == "expired"
    # In a zone west of UTC the same instant is still 5 June, after 09:00: due.
    west = ZoneInfo("America/Sao_Paulo")
    occ = next(o for o in occurrences(rules(tz=west)) if o.day == dt.date(2025, 6, 5))
    assert state_of(occ, now, west) == "due"


def test_time_zone_moves_the_instant_not_the_wall_clock() -> None:
    jakarta = occurrences(rules())[0]
    jayapura = occurrences(rules(tz=ZoneInfo("Asia/Jayapura")))[0]
    assert jakarta.key == jayapura.key
    assert jakarta.at.time() == jayapura.at.time() == dt.time(9, 0)
    assert jakarta.at - jayapura.at == dt.timedelta(hours=2)


def test_daylight_saving_keeps_local_nine_oclock() -> None:
    amsterdam = ZoneInfo("Europe/Amsterdam")  # clocks move forward on 30 March 2025
    found = occurrences(
        rules(
            window_start=dt.date(2025, 3, 28),
            window_end=dt.date(2025, 4, 4),
            days_before=(),
            every_days=1,
            tz=amsterdam,
        )
    )
    utc_hours = {o.day.isoformat(): o.at.astimezone(UTC).hour for o in found}
    assert utc_hours["2025-03-29"] == 8  # CET, UTC+1
    assert utc_hours["2025-03-31"] == 7  # CEST, UTC+2
    assert all(o.at.hour == 9 for o in found)


def test_plan_and_due_and_upcoming_at_a_frozen_moment() -> None:
    now = dt.datetime(2025, 6, 8, 3, 0, tzinfo=UTC)  # 10:00 WIB on 8 June
    states = {p.occurrence.day.isoformat(): p.state for p in plan(rules(), now)}
    assert states["2025-06-05"] == "expired"
    assert states["2025-06-08"] == "due"
    assert states["2025-06-11"] == "upcoming"
    assert states["2025-06-29"] == "upcoming"
    acting = due_and_upcoming(rules(), now)
    assert acting[0].occurrence.day == dt.date(2025, 6, 8)
    assert all(p.state != "expired" for p in acting)
    after = dt.datetime(2025, 7, 1, 3, 0, tzinfo=UTC)
    assert due_and_upcoming(rules(), after) == []


def test_plan_needs_an_aware_clock() -> None:
    with pytest.raises(ValueError, match="aware"):
        plan(rules(), dt.datetime(2025, 6, 8, 3, 0))


def test_local_moment_ignores_a_zone_on_the_time() -> None:
    moment = local_moment(dt.date(2025, 6, 2), dt.time(9, 0, tzinfo=UTC), JAKARTA)
    assert moment == dt.datetime(2025, 6, 2, 9, 0, tzinfo=JAKARTA)


def test_reminder_texts_in_both_languages_name_the_period_and_end() -> None:
    for kind in ("before", "during", "closing"):
        texts = reminder_texts(kind, "2025", rules())  # type: ignore[arg-type]
        assert set(texts) == {"id", "en"}
        assert "30 Juni 2025" in texts["id"] and "June 30, 2025" in texts["en"]
        assert "2025" in texts["id"] and "/berhenti" in texts["id"] and "/berhenti" in texts["en"]
        assert texts["id"] != texts["en"]
        assert "{" not in texts["id"] + texts["en"]
    before = reminder_texts("before", "2025", rules())
    assert "2 Juni 2025" in before["id"] and "June 2, 2025" in before["en"]
    assert "besok" in reminder_texts("closing", "2025", rules())["id"]
