"""Data-quality flags: speeders, straight-liners and bursts (docs/QUALITY.md).

KPK's *faktor koreksi* penalises *pengarahan*: responses filled in under
instruction or in bulk. The flags point admins at responses worth a look; an
admin may clear a flag with a reason (core/aggregates.review_flag), and every
such decision goes to the append-only audit log.

None of the rules stores a time next to a response: the speeder rule reads the
duration that is already kept, and the burst rule keeps completion times in
memory only (BurstWatch).
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from typing import cast

from pydantic import BaseModel

from core.model import AnswerValue
from core.questionnaire import GroupCode, QualityRules, Question, Questionnaire
from core.storage import Transaction

FLAG_SPEEDER = "speeder"
FLAG_STRAIGHT = "straightline"
FLAG_BURST = "burst"
KNOWN_FLAGS = (FLAG_SPEEDER, FLAG_STRAIGHT, FLAG_BURST)
DONT_KNOW = "tt"
NO_ANSWER = "tm"
DEFAULT_BURST_BASE = 10  # for a group missing from `burst_base`
DEFAULT_BURST_SHARE = 0.1


# -- speeders ----------------------------------------------------------------------


def words_on_screen(questionnaire: Questionnaire, group: str) -> int:
    """Words a respondent of ``group`` must read: the questions everyone is shown
    (text, hint and option labels), in Indonesian."""
    words = 0
    for question in questionnaire.questions_for(group):
        if question.show_if is not None:
            continue
        parts = [question.text.id, question.hint.id if question.hint else ""]
        parts += [o.text.id for o in question.options]
        words += sum(len(part.split()) for part in parts)
    return words


def reading_floor(questionnaire: Questionnaire, group: str) -> float:
    """Seconds needed to read the group's questions at the configured speed."""
    rules = questionnaire.quality
    seconds = words_on_screen(questionnaire, group) * 60.0 / rules.reading_wpm
    return max(float(rules.min_seconds), seconds)


def speeder_threshold(questionnaire: Questionnaire, group: str, durations: Sequence[int]) -> float:
    """Under this many seconds a response is a speeder.

    ``durations`` are the completion times of the group's earlier responses in
    the period, sorted. Once there are enough of them, the threshold is a share
    of their median; until then the reading floor. Never below ``min_seconds``.
    """
    rules = questionnaire.quality
    count = len(durations)
    if count >= rules.median_after:
        median = (durations[(count - 1) // 2] + durations[count // 2]) / 2
        return max(float(rules.min_seconds), rules.median_share * median)
    return reading_floor(questionnaire, group)


async def group_durations(
    tx: Transaction, period: str, group: str, leave_out: int | None = None
) -> list[int]:
    """Completion times of the group's completed responses in the period, sorted;
    speeders are left out so that a wave of them cannot lower the bar for the next."""
    rows = await tx.fetchall(
        "SELECT duration_seconds FROM responses WHERE period = ? AND group_code = ? "
        "AND status = 'completed' AND duration_seconds IS NOT NULL "
        "AND instr(flags, ?) = 0 AND id != ?",
        (period, group, FLAG_SPEEDER, leave_out if leave_out is not None else 0),
    )
    return sorted(int(r["duration_seconds"]) for r in rows)


class GroupDurations:
    """The sorted completion times per period and group, kept in memory.

    Read from the database once per group after start-up, then kept up to date
    as responses complete, so the speeder rule costs no query per completion.
    """

    def __init__(self) -> None:
        self._sorted: dict[tuple[str, str], list[int]] = {}

    async def get(self, tx: Transaction, period: str, group: str, leave_out: int) -> list[int]:
        key = (period, group)
        if key not in self._sorted:
            self._sorted[key] = await group_durations(tx, period, group, leave_out)
        return self._sorted[key]

    def add(self, period: str, group: str, seconds: int) -> None:
        durations = self._sorted.get((period, group))
        if durations is not None:
            bisect.insort(durations, seconds)


# -- straight-lining -----------------------------------------------------------------


def _scored_position(question: Question, value: AnswerValue) -> tuple[float, bool] | None:
    """(position among the scored options, 0 = first and 1 = last; whether the
    first option is the best) for a scored answer, None for anything else."""
    if question.dimension is None or not question.is_choice or not isinstance(value, str):
        return None
    scored = [o for o in question.options if o.score is not None]
    codes = [o.code for o in scored]
    if len(scored) < 2 or value not in codes:
        return None  # "tidak tahu", "tidak ingin menjawab" or an unknown code
    first, last = scored[0].score or 0.0, scored[-1].score or 0.0
    return codes.index(value) / (len(codes) - 1), first > last


def straight_lined(
    questionnaire: Questionnaire, group: str, answers: Mapping[str, AnswerValue]
) -> bool:
    """The same column of buttons pressed on items that are not all keyed the same way.

    Only then is a flat line inconsistent: an honest respondent who thinks
    everything is fine presses the first option on positively keyed items and
    the last on reverse-keyed ones, and is not flagged; nor is one who answers
    "tidak tahu" throughout (unscored answers are ignored). A flat line must also
    lean to one end: "Netral" throughout scores the same whichever way an item
    is keyed, so it contradicts nothing.
    """
    rules = questionnaire.quality
    positions: list[float] = []
    reverse = 0
    for question in questionnaire.questions_for(group):
        found = _scored_position(question, answers.get(question.id))
        if found is not None:
            positions.append(found[0])
            reverse += not found[1]
    forward = len(positions) - reverse
    if len(positions) < rules.straight_min_items:
        return False
    if min(forward, reverse) < rules.straight_min_each_way:
        return False
    flat = statistics.pstdev(positions) <= rules.straight_max_sd + 1e-9
    lean = abs(1 - 2 * statistics.fmean(positions))
    return flat and lean >= rules.straight_min_lean - 1e-9


def quality_flags(
    questionnaire: Questionnaire,
    group: str,
    answers: Mapping[str, AnswerValue],
    duration_seconds: float | None,
    speed_threshold: float | None = None,
) -> set[str]:
    """Speeder and straight-liner flags of one response.

    ``speed_threshold`` comes from :func:`speeder_threshold`; without it the
    group's reading floor applies.
    """
    flags = set()
    if speed_threshold is None:
        speed_threshold = reading_floor(questionnaire, group)
    if duration_seconds is not None and duration_seconds < speed_threshold:
        flags.add(FLAG_SPEEDER)
    if straight_lined(questionnaire, group, answers):
        flags.add(FLAG_STRAIGHT)
    return flags


# -- bursts -----------------------------------------------------------------------------


def burst_threshold(rules: QualityRules, unit: str, group: str) -> int:
    """Completions within the window that make a burst for this unit and group.

    A unit with many staff or a busy service counter completes more surveys at
    once without anyone organising it, so the bar rises with its population.
    """
    code = cast(GroupCode, group)
    base = rules.burst_base.get(code, DEFAULT_BURST_BASE)
    population = rules.population.get(unit, {}).get(code)
    if population is None:
        return base
    share = rules.burst_share.get(code, DEFAULT_BURST_SHARE)
    return max(base, math.ceil(share * population))


class BurstWatch:
    """Recent completions per unit and group, in memory only; and, for the
    speeder rule, the groups' completion times (:class:`GroupDurations`).

    Burst detection needs completion times to the minute; keeping them in the
    database would give every completed response a time to join on. After a
    restart the window starts empty, which at worst misses one burst.
    """

    def __init__(self) -> None:
        self._recent: dict[tuple[str, str, str], deque[tuple[dt.datetime, int]]] = {}
        self.durations = GroupDurations()

    def completed(
        self,
        period: str,
        unit: str,
        group: str,
        response_id: int,
        now: dt.datetime,
        window: dt.timedelta,
    ) -> list[int]:
        """Record a completion; the ids of the unit and group completed within
        ``window`` before ``now``."""
        recent = self._recent.setdefault((period, unit, group), deque())
        recent.append((now, response_id))
        while recent and recent[0][0] < now - window:
            recent.popleft()
        return [rid for _, rid in recent]


# -- reading flags and non-response ------------------------------------------------------


def parse_flags(text: str) -> set[str]:
    return set(filter(None, text.split(",")))


async def flag_counts(tx: Transaction, period: str, unit: str | None) -> dict[str, int]:
    """How many completed responses carry each data-quality flag."""
    counts: dict[str, int] = {}
    for response in await flagged_responses(tx, period, unit):
        for flag in response.flags:
            counts[flag] = counts.get(flag, 0) + 1
    return counts


class FlaggedResponse(BaseModel):
    id: int
    unit: str
    group: str
    flags: list[str]
    counted: bool


async def flagged_responses(
    tx: Transaction, period: str, unit: str | None = None
) -> list[FlaggedResponse]:
    """The completed responses carrying a flag, for review (by unit, group, id)."""
    sql = (
        "SELECT id, unit_code, group_code, flags, counted FROM responses "
        "INDEXED BY responses_flagged WHERE period = ? AND status = 'completed' AND flags != ''"
    )
    params: list[object] = [period]
    if unit is not None:
        sql += " AND unit_code = ?"
        params.append(unit)
    rows = await tx.fetchall(sql + " ORDER BY unit_code, group_code, id", params)
    return [
        FlaggedResponse(
            id=int(r["id"]),
            unit=str(r["unit_code"]),
            group=str(r["group_code"]),
            flags=sorted(parse_flags(str(r["flags"]))),
            counted=bool(r["counted"]),
        )
        for r in rows
    ]


class ItemRates(BaseModel):
    """Answers to one item: how many, and how many "tidak tahu" / "tidak ingin menjawab"."""

    n: int = 0
    dont_know: int = 0
    no_answer: int = 0

    def share(self, count: int) -> float | None:
        return count / self.n if self.n else None


async def nonresponse_rates(
    tx: Transaction, questionnaire: Questionnaire, period: str, unit: str | None = None
) -> dict[str, ItemRates]:
    """Per choice item offering "tt" or "tm": answers in completed responses of the
    period (optionally one unit) and how many were "tidak tahu" / "tidak ingin menjawab"."""
    items = {
        q.id: ItemRates()
        for q in questionnaire.questions
        if q.is_choice and any(o.code in (DONT_KNOW, NO_ANSWER) for o in q.options)
    }
    sql = (
        "SELECT a.question_id, a.value, COUNT(*) AS n FROM answers a "
        "JOIN responses r ON r.id = a.response_id "
        "WHERE r.period = ? AND r.status = 'completed'"
    )
    params: list[object] = [period]
    if unit is not None:
        sql += " AND r.unit_code = ?"
        params.append(unit)
    for row in await tx.fetchall(sql + " GROUP BY a.question_id, a.value", params):
        rates = items.get(str(row["question_id"]))
        if rates is None:
            continue
        value = json.loads(row["value"])
        count = int(row["n"])
        if value is None:
            continue  # skipped, not answered
        rates.n += count
        if value == DONT_KNOW:
            rates.dont_know += count
        elif value == NO_ANSWER:
            rates.no_answer += count
    return items
