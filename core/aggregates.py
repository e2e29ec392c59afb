"""Aggregates kept up to date as responses complete, so `/skor` reads a handful of rows.

A completed response adds its respondent dimension scores, item scores and
respondent index to per-(period, unit, group) tallies in the same transaction
that marks it completed. Flagging a response (when flagged responses are
excluded) subtracts exactly what it added, so the tallies always equal a
recomputation from the answers.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Mapping

from core.model import AnswerValue, iso
from core.questionnaire import Questionnaire
from core.scoring import (
    GroupAggregate,
    Tally,
    UnitAggregate,
    item_score,
    respondent_dimension_scores,
    respondent_index,
)
from core.storage import Transaction

FLAG_SPEEDER = "speeder"
FLAG_STRAIGHT = "straightline"
FLAG_BURST = "burst"
STRAIGHT_MIN_ITEMS = 8


def quality_flags(
    questionnaire: Questionnaire,
    group: str,
    answers: Mapping[str, AnswerValue],
    duration_seconds: float | None,
) -> set[str]:
    """Speeders and straight-liners: patterns KPK treats as coached (*pengarahan*)."""
    flags = set()
    if duration_seconds is not None and duration_seconds < questionnaire.quality.min_seconds:
        flags.add(FLAG_SPEEDER)
    positions = []
    for question in questionnaire.questions_for(group):
        value = answers.get(question.id)
        if question.type == "single" and question.dimension and isinstance(value, str):
            codes = [o.code for o in question.options]
            if value in codes:
                positions.append(codes.index(value))
    if len(positions) >= STRAIGHT_MIN_ITEMS and len(set(positions)) == 1:
        flags.add(FLAG_STRAIGHT)
    return flags


class BurstWatch:
    """Recent completions per unit, in memory only.

    Burst detection needs completion times to the minute; keeping them in the
    database would give every completed response a time to join on. After a
    restart the window starts empty, which at worst misses one burst.
    """

    def __init__(self) -> None:
        self._recent: dict[tuple[str, str], deque[tuple[dt.datetime, int]]] = {}

    def completed(
        self, period: str, unit: str, response_id: int, now: dt.datetime, window: dt.timedelta
    ) -> list[int]:
        """Record a completion; the ids completed within ``window`` before ``now``."""
        recent = self._recent.setdefault((period, unit), deque())
        recent.append((now, response_id))
        while recent and recent[0][0] < now - window:
            recent.popleft()
        return [rid for _, rid in recent]


async def record_completion(
    tx: Transaction,
    questionnaire: Questionnaire,
    response_id: int,
    duration: int | None,
    now: dt.datetime,
    bursts: BurstWatch,
) -> None:
    """Score a just-completed response, flag it, and add it to the tallies."""
    response = await tx.get_response(response_id)
    assert response is not None
    answers = await tx.answers(response_id)
    dimension_scores = respondent_dimension_scores(questionnaire, response.group, answers)
    index = respondent_index(questionnaire, dimension_scores)
    flags = quality_flags(questionnaire, response.group, answers, duration)
    for dimension, score in dimension_scores.items():
        await tx.write(
            "INSERT OR REPLACE INTO response_scores(response_id, dimension, score) VALUES (?,?,?)",
            (response_id, dimension, score),
        )
    await tx.write(
        "UPDATE responses SET respondent_index = ?, flags = ? WHERE id = ?",
        (index, ",".join(sorted(flags)), response_id),
    )
    if not (flags and questionnaire.quality.exclude_flagged):
        await apply_response(tx, questionnaire, response_id, +1)
    window = dt.timedelta(minutes=questionnaire.quality.burst_minutes)
    recent = bursts.completed(response.period, response.unit, response_id, now, window)
    if len(recent) >= questionnaire.quality.burst_count:
        await flag_burst(tx, questionnaire, recent)


async def flag_burst(tx: Transaction, questionnaire: Questionnaire, ids: list[int]) -> None:
    """Many completions for one unit within minutes look like a mobilised session."""
    for response_id in ids:
        row = await tx.fetchone(
            "SELECT flags FROM responses WHERE id = ? AND status = 'completed'", (response_id,)
        )
        if row is None:
            continue
        flags = set(filter(None, str(row["flags"]).split(",")))
        if FLAG_BURST in flags:
            continue
        await tx.execute(
            "UPDATE responses SET flags = ? WHERE id = ?",
            (",".join(sorted(flags | {FLAG_BURST})), response_id),
        )
        if questionnaire.quality.exclude_flagged:
            await apply_response(tx, questionnaire, response_id, -1)


async def apply_response(
    tx: Transaction, questionnaire: Questionnaire, response_id: int, sign: int
) -> None:
    """Add (+1) or remove (−1) one response's contribution; idempotent per direction."""
    counted = 1 if sign > 0 else 0
    changed = await tx.execute(
        "UPDATE responses SET counted = ? WHERE id = ? AND counted != ?",
        (counted, response_id, counted),
    )
    if changed != 1:
        return
    response = await tx.get_response(response_id)
    assert response is not None
    key = (response.period, response.unit, response.group)
    row = await tx.fetchone("SELECT respondent_index FROM responses WHERE id = ?", (response_id,))
    index = row["respondent_index"] if row else None
    has_index = index is not None
    await tx.write(
        "INSERT INTO agg_group(period, unit_code, group_code, n, n_indexed, sum_index, "
        "sumsq_index) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
        "n = n + excluded.n, n_indexed = n_indexed + excluded.n_indexed, "
        "sum_index = sum_index + excluded.sum_index, "
        "sumsq_index = sumsq_index + excluded.sumsq_index",
        (*key, sign, sign * has_index, sign * (index or 0.0), sign * (index or 0.0) ** 2),
    )
    for score_row in await tx.fetchall(
        "SELECT dimension, score FROM response_scores WHERE response_id = ?", (response_id,)
    ):
        await _tally(
            tx, "agg_dimension", "dimension", key, score_row["dimension"], sign, score_row["score"]
        )
    answers = await tx.answers(response_id)
    for question in questionnaire.questions_for(response.group):
        score = item_score(question, answers.get(question.id))
        if score is not None:
            await _tally(tx, "agg_item", "question_id", key, question.id, sign, score)


async def _tally(
    tx: Transaction,
    table: str,
    column: str,
    key: tuple[str, str, str],
    name: str,
    sign: int,
    value: float,
) -> None:
    await tx.write(
        f"INSERT INTO {table}(period, unit_code, group_code, {column}, n, total) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET n = n + excluded.n, "
        "total = total + excluded.total",
        (*key, name, sign, sign * value),
    )


async def load_unit_aggregate(tx: Transaction, period: str, unit: str) -> UnitAggregate:
    """Everything `/skor` needs for one unit: a few dozen rows whatever the sample size."""
    aggregate = UnitAggregate(unit=unit, period=period)
    for row in await tx.fetchall(
        "SELECT group_code, n, n_indexed, sum_index, sumsq_index FROM agg_group "
        "WHERE period = ? AND unit_code = ?",
        (period, unit),
    ):
        aggregate.groups[row["group_code"]] = GroupAggregate(
            n=row["n"],
            n_indexed=row["n_indexed"],
            sum_index=row["sum_index"],
            sumsq_index=row["sumsq_index"],
        )
    for table, column, attribute in (
        ("agg_dimension", "dimension", "dimensions"),
        ("agg_item", "question_id", "items"),
    ):
        for row in await tx.fetchall(
            f"SELECT group_code, {column} AS name, n, total FROM {table} "
            "WHERE period = ? AND unit_code = ? AND n > 0",
            (period, unit),
        ):
            group = aggregate.groups.setdefault(row["group_code"], GroupAggregate())
            getattr(group, attribute)[row["name"]] = Tally(n=row["n"], total=row["total"])
    corrections = await tx.fetchall(
        "SELECT deduction, reason FROM corrections WHERE period = ? AND unit_code = ? ORDER BY id",
        (period, unit),
    )
    aggregate.deduction = sum(float(r["deduction"]) for r in corrections)
    aggregate.reasons = [str(r["reason"]) for r in corrections]
    return aggregate


async def flag_counts(tx: Transaction, period: str, unit: str | None) -> dict[str, int]:
    """How many completed responses carry each data-quality flag."""
    sql = (
        "SELECT flags FROM responses INDEXED BY responses_flagged "
        "WHERE period = ? AND status = 'completed' AND flags != ''"
    )
    params: list[object] = [period]
    if unit is not None:
        sql += " AND unit_code = ?"
        params.append(unit)
    counts: dict[str, int] = {}
    for row in await tx.fetchall(sql, params):
        for flag in str(row["flags"]).split(","):
            counts[flag] = counts.get(flag, 0) + 1
    return counts


async def add_correction(
    tx: Transaction, period: str, unit: str, deduction: float, reason: str, now: dt.datetime
) -> None:
    await tx.execute(
        "INSERT INTO corrections(period, unit_code, deduction, reason, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (period, unit, deduction, reason, iso(now)),
    )
