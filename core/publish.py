"""Published figures: what `/skor`, `/peringkat` and `/rekap` show, moved only in steps of k.

Live tallies (core/aggregates.py) change with every response, so reading a
figure before and after one colleague submits would give that colleague's
answers by subtraction (``11 · after − 10 · before``). The officials' commands
therefore read snapshots, never the live tallies.

Each *component* of a shown figure is published on its own: a group (its
number of informative respondents and the standard error of its index), a
group's dimension tally and a group's item tally. A component keeps the value
last published and a counter of the informative responses added to it or
removed from it since (a response flagged and excluded counts as a change). Only
when that counter reaches k is the component republished from the live
tallies, and the counter starts again. Checking costs one upsert and one
indexed read per completion; the interval is computed only when a group is due.

Every index shown is derived from published tallies (core/scoring.py), so no
shown number moves with fewer than k people behind the move.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from core.population import unit_frames, with_city_frames
from core.questionnaire import Questionnaire
from core.scoring import (
    CITY_UNIT,
    K_ANONYMITY,
    GroupAggregate,
    Tally,
    UnitAggregate,
    UnitScore,
    counted_dimensions,
    group_estimate,
    pooled_index,
    score_unit,
    with_city_level,
)
from core.storage import Transaction

GROUP, DIMENSION, ITEM = "group", "dimension", "item"


async def note_change(
    tx: Transaction,
    questionnaire: Questionnaire,
    key: tuple[str, str, str],
    informative: bool,
    dimensions: Iterable[str],
    items: Iterable[str],
) -> None:
    """One response was added to or removed from the tallies of ``key`` (period, unit,
    group): count it against every component it touched, then publish what is due."""
    touched = [(DIMENSION, d) for d in dimensions] + [(ITEM, i) for i in items]
    if informative:
        touched.append((GROUP, ""))
    if not touched:
        return
    await tx.executemany(
        "INSERT INTO published(period, unit_code, group_code, kind, name, pending) "
        "VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT DO UPDATE SET pending = pending + 1",
        [(*key, kind, name) for kind, name in touched],
    )
    await publish_due(tx, questionnaire, *key)


async def publish_due(
    tx: Transaction, questionnaire: Questionnaire, period: str, unit: str, group: str
) -> int:
    """Republish the components of one group whose counter reached k; how many."""
    due = await tx.fetchall(
        "SELECT kind, name FROM published WHERE period = ? AND unit_code = ? AND "
        "group_code = ? AND pending >= ?",
        (period, unit, group, K_ANONYMITY),
    )
    if not due:
        return 0
    key = (period, unit, group)
    for table, column, kind in (
        ("agg_dimension", "dimension", DIMENSION),
        ("agg_item", "question_id", ITEM),
    ):
        await tx.execute(
            f"UPDATE published AS p SET n = a.n, total = a.total, pending = 0 FROM {table} AS a "
            f"WHERE p.period = ? AND p.unit_code = ? AND p.group_code = ? AND p.kind = ? "
            f"AND p.pending >= ? AND a.period = p.period AND a.unit_code = p.unit_code "
            f"AND a.group_code = p.group_code AND a.{column} = p.name",
            (*key, kind, K_ANONYMITY),
        )
    if any(row["kind"] == GROUP for row in due):
        published = await load_published_aggregate(tx, period, unit)
        weights = counted_dimensions(questionnaire, published.groups.get(group, GroupAggregate()))
        respondents = (await live_respondents(tx, period, unit, group)).get(group, [])
        estimate = group_estimate(respondents, weights)
        live = await tx.fetchone(
            "SELECT n_indexed FROM agg_group WHERE period = ? AND unit_code = ? AND group_code = ?",
            key,
        )
        await tx.execute(
            "UPDATE published SET n = ?, se = ?, df = ?, pending = 0 WHERE period = ? AND "
            "unit_code = ? AND group_code = ? AND kind = ?",
            (int(live["n_indexed"]) if live else 0, estimate.se, estimate.df, *key, GROUP),
        )
    return len(due)


async def live_respondents(
    tx: Transaction, period: str, unit: str, group: str | None = None
) -> dict[str, list[dict[str, float]]]:
    """Per group (or of one group), the dimension scores of each counted response."""
    sql = (
        "SELECT r.id, r.group_code, s.dimension, s.score FROM responses r "
        "JOIN response_scores s ON s.response_id = r.id WHERE r.period = ? AND "
        "r.unit_code = ? AND r.status = 'completed' AND r.counted = 1"
    )
    params = [period, unit]
    if group is not None:
        sql += " AND r.group_code = ?"
        params.append(group)
    by_response: dict[int, tuple[str, dict[str, float]]] = {}
    for row in await tx.fetchall(sql, params):
        entry = by_response.setdefault(int(row["id"]), (str(row["group_code"]), {}))
        entry[1][str(row["dimension"])] = float(row["score"])
    result: dict[str, list[dict[str, float]]] = {}
    for group, scores in by_response.values():
        result.setdefault(group, []).append(scores)
    return result


async def load_published_aggregate(tx: Transaction, period: str, unit: str) -> UnitAggregate:
    """The unit as last published: tallies, group n (informative people) and intervals."""
    aggregate = UnitAggregate(unit=unit, period=period)
    for row in await tx.fetchall(
        "SELECT group_code, kind, name, n, total, se, df FROM published WHERE period = ? AND "
        "unit_code = ? AND n IS NOT NULL",
        (period, unit),
    ):
        group = aggregate.groups.setdefault(str(row["group_code"]), GroupAggregate())
        n = int(row["n"])
        if row["kind"] == GROUP:
            group.n = group.n_indexed = n
            group.se, group.df = row["se"], row["df"]
        elif n > 0:
            tallies = group.dimensions if row["kind"] == DIMENSION else group.items
            tallies[str(row["name"])] = Tally(n=n, total=float(row["total"]))
    aggregate.deduction = await _deduction(tx, period, unit)
    return aggregate


async def _deduction(tx: Transaction, period: str, unit: str) -> float:
    row = await tx.fetchone(
        "SELECT COALESCE(SUM(deduction), 0) AS total FROM corrections WHERE period = ? AND "
        "unit_code = ? AND withdrawn_at IS NULL",
        (period, unit),
    )
    return float(row["total"]) if row else 0.0


async def published_unit_score(
    tx: Transaction,
    questionnaire: Questionnaire,
    period: str,
    unit: str,
    margin: float | None = None,
) -> UnitScore:
    """The unit's score as officials may see it (`/skor`): published figures only.

    With ``margin`` (SAMPLE_MARGIN_OF_ERROR), a group whose population is known needs
    its target sample, not the questionnaire's ``min_sample``, to stop being provisional.
    """
    frames = await unit_frames(tx, period, unit, margin) if margin is not None else None
    aggregate = await load_published_aggregate(tx, period, unit)
    replaced: frozenset[str] = frozenset()
    if unit != CITY_UNIT and any(g.city_level for g in questionnaire.groups):
        city = await load_published_aggregate(tx, period, CITY_UNIT)
        aggregate, replaced = with_city_level(questionnaire, aggregate, city)
    if frames is not None and replaced and margin is not None:
        city_frames = await unit_frames(tx, period, CITY_UNIT, margin)
        frames = with_city_frames(frames, city_frames, replaced)
    return score_unit(questionnaire, aggregate, frames, replaced)


async def published_unit_scores(
    tx: Transaction,
    questionnaire: Questionnaire,
    period: str,
    units: Sequence[str],
    margin: float | None = None,
) -> dict[str, UnitScore]:
    """Every unit's published score, for `/peringkat` and `/rekap`."""
    return {
        unit: await published_unit_score(tx, questionnaire, period, unit, margin)
        for unit in units
    }


async def published_city_index(
    tx: Transaction, questionnaire: Questionnaire, period: str, units: Sequence[str]
) -> float | None:
    """The pooled city index for `/rekap`, from the published tallies of ``units``."""
    aggregates = [await load_published_aggregate(tx, period, unit) for unit in units]
    return pooled_index(questionnaire, aggregates)
