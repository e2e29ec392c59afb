"""The SPI-style index: pure functions from answers and aggregates to scores.

The method is written out in docs/scoring.md so that an auditor can recompute
every figure from the export. No intermediate value is rounded; only what is
displayed is.

    item score            option score 0–100; "tidak tahu" (no score) is excluded
    respondent dimension  mean of the respondent's scored items in the dimension
    group dimension       mean of respondent dimension scores over completed responses
    group index           Σ w_d · group dimension / Σ w_d over dimensions with data
    unit index            Σ v_g · group index / Σ v_g over groups with ≥ 5 respondents
    corrected index       max(0, unit index − faktor koreksi deduction)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field

from core.model import AnswerValue
from core.questionnaire import Bands, Question, Questionnaire

Band = Literal["terjaga", "waspada", "riskan"]
K_ANONYMITY = 5  # no breakdown is shown for fewer respondents than this
Z_95 = 1.959963984540054


class Tally(BaseModel):
    """A running count and sum: what the database keeps instead of raw rows."""

    n: int = 0
    total: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


class GroupAggregate(BaseModel):
    n: int = 0  # completed responses counted
    n_indexed: int = 0  # of which with at least one scored item
    sum_index: float = 0.0  # Σ respondent index, for the confidence interval
    sumsq_index: float = 0.0
    dimensions: dict[str, Tally] = Field(default_factory=dict)
    items: dict[str, Tally] = Field(default_factory=dict)


class UnitAggregate(BaseModel):
    unit: str
    period: str
    groups: dict[str, GroupAggregate] = Field(default_factory=dict)
    deduction: float = 0.0
    reasons: list[str] = Field(default_factory=list)


class GroupScore(BaseModel):
    code: str
    n: int
    target: int
    min_sample: int
    index: float | None
    ci: tuple[float, float] | None
    shown: bool  # False under k-anonymity


class DimensionScore(BaseModel):
    code: str
    score: float | None
    n: int


class Priority(BaseModel):
    dimension: str
    score: float
    weakest_items: list[tuple[str, float]]


class UnitScore(BaseModel):
    unit: str
    period: str
    n: int
    index: float | None  # before the correction
    deduction: float
    corrected: float | None
    ci: tuple[float, float] | None  # 95 %, of the corrected index
    band: Band | None
    provisional: bool
    missing: dict[str, int]  # respondents still needed per group for a final score
    groups: list[GroupScore]
    dimensions: list[DimensionScore]
    priorities: list[Priority]

    @property
    def shown(self) -> bool:
        return self.n >= K_ANONYMITY and self.corrected is not None


def band_of(index: float, bands: Bands) -> Band:
    if index >= bands.terjaga_min:
        return "terjaga"
    if index >= bands.waspada_min:
        return "waspada"
    return "riskan"


def item_score(question: Question, value: AnswerValue) -> float | None:
    """The option's score, or None when unscored, unanswered or not a scored item."""
    if question.dimension is None or not isinstance(value, str):
        return None
    option = question.option(value)
    return option.score if option is not None else None


def respondent_dimension_scores(
    questionnaire: Questionnaire, group: str, answers: Mapping[str, AnswerValue]
) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for question in questionnaire.questions_for(group):
        score = item_score(question, answers.get(question.id))
        if score is not None and question.dimension is not None:
            sums.setdefault(question.dimension, []).append(score)
    return {dim: sum(scores) / len(scores) for dim, scores in sums.items()}


def weighted_mean(values: Mapping[str, float], weights: Mapping[str, float]) -> float | None:
    """Weighted mean over the keys that have a weight; a code no longer in the
    questionnaire (renamed mid-period) is ignored rather than crashing `/skor`."""
    known = {k: v for k, v in values.items() if k in weights}
    total_weight = sum(weights[k] for k in known)
    if not known or total_weight == 0:
        return None
    return sum(weights[k] * v for k, v in known.items()) / total_weight


def dimension_weights(questionnaire: Questionnaire) -> dict[str, float]:
    return {d.code: d.weight for d in questionnaire.dimensions}


def respondent_index(
    questionnaire: Questionnaire, dimension_scores: Mapping[str, float]
) -> float | None:
    """One respondent's weighted index; its spread gives the confidence interval."""
    return weighted_mean(dimension_scores, dimension_weights(questionnaire))


def group_index(questionnaire: Questionnaire, aggregate: GroupAggregate) -> float | None:
    means = {d: t.mean for d, t in aggregate.dimensions.items() if t.mean is not None}
    return weighted_mean(
        {d: m for d, m in means.items() if m is not None}, dimension_weights(questionnaire)
    )


def group_standard_error(aggregate: GroupAggregate) -> float | None:
    """SE of the group index from the spread of respondent indices (see docs/scoring.md)."""
    n = aggregate.n_indexed
    if n < 2:
        return None
    variance = (aggregate.sumsq_index - aggregate.sum_index**2 / n) / (n - 1)
    return math.sqrt(max(variance, 0.0) / n)


def _ci(centre: float, se: float) -> tuple[float, float]:
    return (max(0.0, centre - Z_95 * se), min(100.0, centre + Z_95 * se))


def score_unit(questionnaire: Questionnaire, aggregate: UnitAggregate) -> UnitScore:
    group_weights: dict[str, float] = {g.code: g.weight for g in questionnaire.groups}
    indices: dict[str, float] = {}
    errors: dict[str, float | None] = {}
    group_scores: list[GroupScore] = []
    missing: dict[str, int] = {}
    for group in questionnaire.groups:
        agg = aggregate.groups.get(group.code, GroupAggregate())
        index = group_index(questionnaire, agg)
        se = group_standard_error(agg)
        shown = agg.n >= K_ANONYMITY
        # A group too small to show is also left out of the unit index: otherwise its
        # hidden index could be recovered by subtraction from the shown figures.
        if index is not None and shown:
            indices[group.code] = index
            errors[group.code] = se
        if agg.n < max(group.min_sample, K_ANONYMITY):
            missing[group.code] = max(group.min_sample, K_ANONYMITY) - agg.n
        group_scores.append(
            GroupScore(
                code=group.code,
                n=agg.n,
                target=group.target,
                min_sample=group.min_sample,
                index=index if shown else None,
                ci=_ci(index, se) if shown and index is not None and se is not None else None,
                shown=shown,
            )
        )
    unit_index = weighted_mean(indices, group_weights)
    corrected = None if unit_index is None else max(0.0, unit_index - aggregate.deduction)
    ci = None
    if corrected is not None and all(errors[g] is not None for g in indices):
        total_weight = sum(group_weights[g] for g in indices)
        variance = sum(
            (group_weights[g] / total_weight) ** 2 * (errors[g] or 0.0) ** 2 for g in indices
        )
        ci = _ci(corrected, math.sqrt(variance))
    n_total = sum(g.n for g in aggregate.groups.values())
    dimensions = unit_dimensions(questionnaire, aggregate)
    return UnitScore(
        unit=aggregate.unit,
        period=aggregate.period,
        n=n_total,
        index=unit_index,
        deduction=aggregate.deduction,
        corrected=corrected,
        ci=ci,
        band=band_of(corrected, questionnaire.bands) if corrected is not None else None,
        provisional=bool(missing),
        missing=missing,
        groups=group_scores,
        dimensions=dimensions,
        priorities=priorities(questionnaire, aggregate, dimensions),
    )


def unit_dimensions(questionnaire: Questionnaire, aggregate: UnitAggregate) -> list[DimensionScore]:
    """Per dimension, the group-weighted mean over groups with ≥ K_ANONYMITY answers."""
    group_weights: dict[str, float] = {g.code: g.weight for g in questionnaire.groups}
    result = []
    for dimension in questionnaire.dimensions:
        means: dict[str, float] = {}
        n = 0
        for code, agg in aggregate.groups.items():
            tally = agg.dimensions.get(dimension.code)
            if tally is not None and tally.n >= K_ANONYMITY and tally.mean is not None:
                means[code] = tally.mean
                n += tally.n
        result.append(
            DimensionScore(code=dimension.code, score=weighted_mean(means, group_weights), n=n)
        )
    return result


def priorities(
    questionnaire: Questionnaire, aggregate: UnitAggregate, dimensions: list[DimensionScore]
) -> list[Priority]:
    """The three weakest dimensions with their two weakest items ("area prioritas")."""
    scored = sorted(
        (d for d in dimensions if d.score is not None), key=lambda d: (d.score or 0.0, d.code)
    )
    result = []
    for dimension in scored[:3]:
        items: list[tuple[str, float]] = []
        for agg in aggregate.groups.values():
            for qid, tally in agg.items.items():
                question = questionnaire.question(qid)
                mean = tally.mean
                if (
                    question is not None
                    and question.dimension == dimension.code
                    and tally.n >= K_ANONYMITY
                    and mean is not None
                ):
                    items.append((qid, mean))
        items.sort(key=lambda pair: (pair[1], pair[0]))
        result.append(
            Priority(
                dimension=dimension.code, score=dimension.score or 0.0, weakest_items=items[:2]
            )
        )
    return result
