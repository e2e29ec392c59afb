"""Aggregates kept up to date as responses complete, so `/skor` reads a handful of rows.

A completed response adds its respondent dimension scores, item scores and
respondent index to per-(period, unit, group) tallies in the same transaction
that marks it completed. Flagging a response (when flagged responses are
excluded) subtracts exactly what it added, so the tallies always equal a
recomputation from the answers.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Literal

from pydantic import BaseModel

from core.invitations import counts_in_index
from core.model import iso
from core.publish import live_respondents, note_change
from core.quality import (
    FLAG_BURST,
    FLAG_SPEEDER,
    FLAG_STRAIGHT,
    BurstWatch,
    burst_threshold,
    flag_counts,
    parse_flags,
    quality_flags,
    speeder_threshold,
)
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

# The flag rules live in core.quality; these names stay importable from here.
__all__ = [
    "FLAG_BURST",
    "FLAG_SPEEDER",
    "FLAG_STRAIGHT",
    "BurstWatch",
    "flag_counts",
    "quality_flags",
]
# Faktor koreksi categories: complaints, law-enforcement cases, coaching of respondents.
CorrectionCategory = Literal["pengaduan", "penegakan_hukum", "pengarahan"]
CORRECTION_CATEGORIES: tuple[CorrectionCategory, ...] = (
    "pengaduan",
    "penegakan_hukum",
    "pengarahan",
)


async def record_completion(
    tx: Transaction,
    questionnaire: Questionnaire,
    response_id: int,
    duration: int | None,
    now: dt.datetime,
    bursts: BurstWatch,
    sampled_only: bool = False,
) -> None:
    """Score a just-completed response, flag it, and add it to the tallies.

    With ``sampled_only`` (SAMPLED_ONLY) a response that did not come by a personal
    sampled invitation is scored and flagged but stays out of the tallies.
    """
    response = await tx.get_response(response_id)
    assert response is not None
    answers = await tx.answers(response_id)
    answered_on = questionnaire.edition(await answered_on_version(tx, response_id))
    dimension_scores = respondent_dimension_scores(answered_on, response.group, answers)
    index = respondent_index(answered_on, dimension_scores)
    threshold = None
    if duration is not None:
        earlier = await bursts.durations.get(tx, response.period, response.group, response_id)
        threshold = speeder_threshold(questionnaire, response.group, earlier)
    flags = quality_flags(questionnaire, response.group, answers, duration, threshold)
    if duration is not None and FLAG_SPEEDER not in flags:
        bursts.durations.add(response.period, response.group, duration)
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
        await apply_response(tx, questionnaire, response_id, +1, sampled_only)
    window = dt.timedelta(minutes=questionnaire.quality.burst_minutes)
    recent = bursts.completed(
        response.period, response.unit, response.group, response_id, now, window
    )
    if len(recent) >= burst_threshold(questionnaire.quality, response.unit, response.group):
        await flag_burst(tx, questionnaire, recent)


async def flag_burst(tx: Transaction, questionnaire: Questionnaire, ids: list[int]) -> None:
    """Many completions for one unit and group within minutes look like a mobilised session."""
    for response_id in ids:
        row = await tx.fetchone(
            "SELECT flags FROM responses WHERE id = ? AND status = 'completed'", (response_id,)
        )
        if row is None:
            continue
        flags = parse_flags(str(row["flags"]))
        if FLAG_BURST in flags:
            continue
        await tx.execute(
            "UPDATE responses SET flags = ? WHERE id = ?",
            (",".join(sorted(flags | {FLAG_BURST})), response_id),
        )
        if questionnaire.quality.exclude_flagged:
            await apply_response(tx, questionnaire, response_id, -1)


class ReviewError(Exception):
    """A flag review that cannot be done, with the reason in one line."""


ReviewDecision = Literal["unflag", "keep"]


async def review_flag(
    tx: Transaction,
    questionnaire: Questionnaire,
    response_id: int,
    decision: ReviewDecision,
    actor: str,
    reason: str,
    now: dt.datetime,
    sampled_only: bool = False,
) -> list[str]:
    """An admin's decision on a flagged response, appended to the audit log.

    "unflag" clears the flags and, when flagged responses are excluded, adds the
    response's contribution back; "keep" records that the flags were reviewed
    and stand. Returns the flags the response had. The log line holds the
    response id, the flags and the reason, with the time of the review only.
    """
    reason = " ".join(reason.split())
    if not reason:
        raise ReviewError("a reason is required")
    row = await tx.fetchone(
        "SELECT period, flags FROM responses WHERE id = ? AND status = 'completed'",
        (response_id,),
    )
    if row is None:
        raise ReviewError(f"no completed response {response_id}")
    flags = sorted(parse_flags(str(row["flags"])))
    if not flags:
        raise ReviewError(f"response {response_id} carries no flag")
    if decision == "unflag":
        await tx.execute("UPDATE responses SET flags = '' WHERE id = ?", (response_id,))
        await apply_response(tx, questionnaire, response_id, +1, sampled_only)  # no-op if counted
    detail = json.dumps(
        {"response": response_id, "flags": flags, "reason": reason}, ensure_ascii=False
    )
    await tx.audit(actor, f"flag.{decision}", detail, now)
    return flags


async def answered_on_version(tx: Transaction, response_id: int) -> str:
    """The questionnaire version a response was answered on ('' before versions)."""
    row = await tx.fetchone(
        "SELECT questionnaire_version FROM responses WHERE id = ?", (response_id,)
    )
    return str(row["questionnaire_version"]) if row is not None else ""


async def apply_response(
    tx: Transaction,
    questionnaire: Questionnaire,
    response_id: int,
    sign: int,
    sampled_only: bool = False,
) -> None:
    """Add (+1) or remove (−1) one response's contribution; idempotent per direction.

    With ``sampled_only`` a response is only added if it came by a personal sampled
    invitation (core.invitations.counts_in_index).
    """
    if sign > 0 and sampled_only:
        row = await tx.fetchone("SELECT route FROM responses WHERE id = ?", (response_id,))
        if row is None or not counts_in_index(str(row["route"]), sampled_only):
            return
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
    dimensions, items = [], []
    for score_row in await tx.fetchall(
        "SELECT dimension, score FROM response_scores WHERE response_id = ?", (response_id,)
    ):
        await _tally(
            tx, "agg_dimension", "dimension", key, score_row["dimension"], sign, score_row["score"]
        )
        dimensions.append(str(score_row["dimension"]))
    answers = await tx.answers(response_id)
    answered_on = questionnaire.edition(await answered_on_version(tx, response_id))
    for question in answered_on.questions_for(response.group):
        score = item_score(question, answers.get(question.id))
        if score is not None:
            await _tally(tx, "agg_item", "question_id", key, question.id, sign, score)
            items.append(question.id)
    await note_change(tx, questionnaire, key, has_index, dimensions, items)


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
    for code, respondents in (await live_respondents(tx, period, unit)).items():
        aggregate.groups.setdefault(code, GroupAggregate()).respondents = respondents
    corrections = await active_corrections(tx, period, unit)
    aggregate.deduction = sum(c.deduction for c in corrections)
    aggregate.reasons = [c.reason for c in corrections]
    return aggregate


class Correction(BaseModel):
    """A faktor koreksi deduction; withdrawn ones stay on record but no longer count."""

    id: int
    period: str
    unit_code: str
    category: CorrectionCategory
    deduction: float
    reason: str
    author: str
    created_at: str
    withdrawn_at: str | None = None


_CORRECTION_COLUMNS = (
    "id, period, unit_code, category, deduction, reason, author, created_at, withdrawn_at"
)


async def corrections_of(
    tx: Transaction, period: str, unit: str, *, include_withdrawn: bool = False
) -> list[Correction]:
    sql = f"SELECT {_CORRECTION_COLUMNS} FROM corrections WHERE period = ? AND unit_code = ?"
    if not include_withdrawn:
        sql += " AND withdrawn_at IS NULL"
    rows = await tx.fetchall(sql + " ORDER BY id", (period, unit))
    return [Correction.model_validate(dict(row)) for row in rows]


async def active_corrections(tx: Transaction, period: str, unit: str) -> list[Correction]:
    """The corrections that count in a unit's index: recorded and not withdrawn."""
    return await corrections_of(tx, period, unit)


async def add_correction(
    tx: Transaction,
    period: str,
    unit: str,
    deduction: float,
    reason: str,
    now: dt.datetime,
    *,
    category: CorrectionCategory = "pengaduan",
    author: str = "",
) -> int:
    return await tx.insert(
        "INSERT INTO corrections(period, unit_code, deduction, reason, created_at, category, "
        "author) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (period, unit, deduction, reason, iso(now), category, author),
    )


async def withdraw_correction(
    tx: Transaction, correction_id: int, by: str, now: dt.datetime
) -> Correction | None:
    """Mark a correction withdrawn (it stays on record); None if unknown or already withdrawn."""
    changed = await tx.execute(
        "UPDATE corrections SET withdrawn_at = ?, withdrawn_by = ? "
        "WHERE id = ? AND withdrawn_at IS NULL",
        (iso(now), by, correction_id),
    )
    if changed != 1:
        return None
    row = await tx.fetchone(
        f"SELECT {_CORRECTION_COLUMNS} FROM corrections WHERE id = ?", (correction_id,)
    )
    return Correction.model_validate(dict(row)) if row else None
