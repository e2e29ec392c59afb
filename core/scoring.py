"""The SPI-style index: pure functions from answers and aggregates to scores.

The method is written out in docs/scoring.md so that an auditor can recompute
every figure from the export. No intermediate value is rounded; the index is
rounded once, to the two decimals that are shown, and the band is decided on
that shown value (``shown_value``).

    item score            option score 0–100; "tidak tahu" (no score) is excluded
    respondent dimension  D(r,d): mean of the respondent's scored items in d
    dimension in a group  counts only with ≥ k respondents who scored it (k = 5)
    group index           Σ_d w_d · ΣD(r,d) / Σ_d w_d · n(g,d) over the dimensions that
                          count: each dimension weighs by its share of informative answers
    unit index            Σ v_g · group index / Σ v_g over groups shown (≥ k informative)
    corrected index       max(0, unit index − faktor koreksi deduction)
    interval              linearised (delta-method) SE of the group index over its
                          respondents, Student's t; groups combined with Welch's df
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Literal

from pydantic import BaseModel, Field
from scipy.special import stdtrit

from core.model import AnswerValue
from core.questionnaire import Bands, Question, Questionnaire

Band = Literal["terjaga", "waspada", "riskan"]
BAND_ORDER: tuple[Band, ...] = ("riskan", "waspada", "terjaga")
K_ANONYMITY = 5  # people who scored at least one item, for every component of a shown figure
SHOWN_DIGITS = 2  # the index is shown, and banded, at two decimals
NOISE_DIGITS = 9  # float noise below 1e-9 is removed before that rounding
CONFIDENCE = 0.95


class Tally(BaseModel):
    """A running count and sum: what the database keeps instead of raw rows."""

    n: int = 0
    total: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


class GroupAggregate(BaseModel):
    n: int = 0  # completed responses counted (published: informative respondents)
    n_indexed: int = 0  # of which with at least one scored item ("informative")
    sum_index: float = 0.0  # Σ respondent index (kept in the tallies, not used for scores)
    sumsq_index: float = 0.0
    dimensions: dict[str, Tally] = Field(default_factory=dict)
    items: dict[str, Tally] = Field(default_factory=dict)
    # Per-respondent dimension scores (live data), from which the interval is computed;
    # a published aggregate carries the interval's se and df instead.
    respondents: list[dict[str, float]] = Field(default_factory=list)
    se: float | None = None
    df: float | None = None


class UnitAggregate(BaseModel):
    unit: str
    period: str
    groups: dict[str, GroupAggregate] = Field(default_factory=dict)
    deduction: float = 0.0
    reasons: list[str] = Field(default_factory=list)


class GroupEstimate(BaseModel):
    """A group index with its standard error and degrees of freedom."""

    index: float | None
    se: float | None
    df: float | None
    n: int  # respondents with a score in at least one counted dimension


@dataclass(frozen=True)
class GroupFrame:
    """A group of one unit whose population is known: its size and target sample."""

    population: int
    target: int


CITY_UNIT = "kota"  # the pseudo-unit of respondents who rate the government as a whole


class GroupScore(BaseModel):
    code: str
    n: int
    target: int
    min_sample: int  # respondents needed for a final band: the target where a population is known
    index: float | None
    ci: tuple[float, float] | None
    shown: bool  # False under k-anonymity
    population: int | None = None  # None: no population frame row for this unit and group
    city_level: bool = False  # the figure is the city-level one (too few of the unit's own)


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


# -- numbers and bands ------------------------------------------------------------


def shown_value(value: float, digits: int = SHOWN_DIGITS) -> Decimal:
    """The value as shown: float noise removed at 1e-9, then half-up to ``digits``.

    77.99999999999999 (a computed 78) shows as 78.00; 77.995 shows as 78.00 too.
    The band is decided on this value, so the figure and its band always agree.
    """
    cleaned = Decimal(repr(float(value))).quantize(
        Decimal(1).scaleb(-NOISE_DIGITS), rounding=ROUND_HALF_EVEN
    )
    return cleaned.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


def band_of(index: float, bands: Bands) -> Band:
    value = shown_value(index)
    if value >= Decimal(repr(bands.terjaga_min)):
        return "terjaga"
    if value >= Decimal(repr(bands.waspada_min)):
        return "waspada"
    return "riskan"


def bands_spanned(ci: tuple[float, float], bands: Bands) -> list[Band]:
    """Every band from the one of the interval's low end to the one of its high end."""
    low, high = BAND_ORDER.index(band_of(ci[0], bands)), BAND_ORDER.index(band_of(ci[1], bands))
    return list(BAND_ORDER[low : high + 1])


def undecided_bands(score: UnitScore, bands: Bands) -> list[Band]:
    """The bands the interval spans when it crosses a cut-off; [] when it does not."""
    if score.ci is None or score.band is None:
        return []
    spanned = bands_spanned(score.ci, bands)
    return spanned if len(spanned) > 1 else []


# -- respondents ------------------------------------------------------------------


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
    """One respondent's weighted index over every dimension they scored (stored)."""
    return weighted_mean(dimension_scores, dimension_weights(questionnaire))


# -- groups -----------------------------------------------------------------------


def counted_dimensions(
    questionnaire: Questionnaire, aggregate: GroupAggregate, k: int = K_ANONYMITY
) -> dict[str, float]:
    """Weights of the dimensions that enter the group index: ≥ k respondents scored them."""
    weights = dimension_weights(questionnaire)
    return {
        d: weights[d] for d, tally in aggregate.dimensions.items() if d in weights and tally.n >= k
    }


def group_index(
    questionnaire: Questionnaire, aggregate: GroupAggregate, k: int = K_ANONYMITY
) -> float | None:
    """Σ w_d · Σ_r D(r,d) / Σ w_d · n(g,d) over the counted dimensions.

    Equal to the weighted mean of the dimension means when every respondent
    scored every dimension; a dimension fewer people scored weighs less, so one
    respondent in it cannot move the index more than one respondent elsewhere.
    """
    weights = counted_dimensions(questionnaire, aggregate, k)
    numerator = sum(w * aggregate.dimensions[d].total for d, w in weights.items())
    denominator = sum(w * aggregate.dimensions[d].n for d, w in weights.items())
    return numerator / denominator if denominator else None


def t_quantile(df: float) -> float:
    """The two-sided 95 % Student's t value for ``df`` degrees of freedom."""
    return float(stdtrit(df, 0.5 + CONFIDENCE / 2))


def group_estimate(
    respondents: Sequence[Mapping[str, float]], weights: Mapping[str, float]
) -> GroupEstimate:
    """The group index over the dimensions in ``weights`` and its linearised SE.

    The index is a ratio G = Σ_r y_r / Σ_r x_r, with x_r = Σ w_d over the counted
    dimensions r scored and y_r = Σ w_d · D(r,d) over the same. Its delta-method
    (linearisation) variance is Σ z_r² / (n (n − 1)), z_r = (y_r − G · x_r) / x̄,
    which is correct when respondents skip dimensions; with t at n − 1 df.
    """
    pairs = []
    for scores in respondents:
        x = sum(weights[d] for d in scores if d in weights)
        if x > 0:
            pairs.append((x, sum(weights[d] * s for d, s in scores.items() if d in weights)))
    n = len(pairs)
    if n == 0:
        return GroupEstimate(index=None, se=None, df=None, n=0)
    total_x = sum(x for x, _ in pairs)
    index = sum(y for _, y in pairs) / total_x
    if n < 2:
        return GroupEstimate(index=index, se=None, df=None, n=n)
    mean_x = total_x / n
    sum_z2 = sum(((y - index * x) / mean_x) ** 2 for x, y in pairs)
    return GroupEstimate(index=index, se=math.sqrt(sum_z2 / (n * (n - 1))), df=n - 1, n=n)


def group_error(
    questionnaire: Questionnaire, aggregate: GroupAggregate
) -> tuple[float | None, float | None]:
    """(SE, df) of the group index: published ones, else from the respondents."""
    if aggregate.se is not None:
        return aggregate.se, aggregate.df
    estimate = group_estimate(aggregate.respondents, counted_dimensions(questionnaire, aggregate))
    return estimate.se, estimate.df


def group_standard_error(questionnaire: Questionnaire, aggregate: GroupAggregate) -> float | None:
    return group_error(questionnaire, aggregate)[0]


def combined_error(parts: Sequence[tuple[float, float, float]]) -> tuple[float, float]:
    """(SE, df) of Σ a_g · G_g from (a_g, SE_g, df_g): Welch–Satterthwaite df."""
    variances = [(a * se) ** 2 for a, se, _ in parts]
    total = sum(variances)
    denominator = sum(v * v / df for v, (_, _, df) in zip(variances, parts, strict=True))
    df = total * total / denominator if denominator > 0 else min(df for _, _, df in parts)
    return math.sqrt(total), df


def interval(centre: float, se: float, df: float) -> tuple[float, float]:
    half = t_quantile(df) * se
    return (max(0.0, centre - half), min(100.0, centre + half))


def is_shown_group(
    questionnaire: Questionnaire, aggregate: GroupAggregate, k: int = K_ANONYMITY
) -> bool:
    """k counts informative people, and at least one dimension must count."""
    return aggregate.n_indexed >= k and group_index(questionnaire, aggregate, k) is not None


# -- units ------------------------------------------------------------------------


def with_city_level(
    questionnaire: Questionnaire, aggregate: UnitAggregate, city: UnitAggregate
) -> tuple[UnitAggregate, frozenset[str]]:
    """The unit's aggregate with the city-level figure of each ``city_level`` group
    (experts) in place of the unit's own when the unit has fewer than the group's
    minimum of its own and the city (:data:`CITY_UNIT`) has enough to be shown.

    The minimum applies where the group is counted: a unit is never provisional only
    because it lacks its own experts. Only a unit with at least one group of its own
    shown borrows. Returns the aggregate and the groups replaced.
    """
    own_shown = any(
        is_shown_group(questionnaire, aggregate.groups[g.code])
        for g in questionnaire.groups
        if not g.city_level and g.code in aggregate.groups
    )
    if not own_shown:  # a unit nobody of its own assessed gets no score from the city's
        return aggregate, frozenset()
    groups = dict(aggregate.groups)
    replaced: set[str] = set()
    for group in questionnaire.groups:
        if not group.city_level:
            continue
        own = aggregate.groups.get(group.code, GroupAggregate())
        if own.n_indexed >= max(group.min_sample, K_ANONYMITY):
            continue
        city_group = city.groups.get(group.code)
        if city_group is None or city_group.n_indexed < max(group.min_sample, K_ANONYMITY):
            continue
        if not is_shown_group(questionnaire, city_group):
            continue
        groups[group.code] = city_group
        replaced.add(group.code)
    return aggregate.model_copy(update={"groups": groups}), frozenset(replaced)


def score_unit(
    questionnaire: Questionnaire,
    aggregate: UnitAggregate,
    frames: Mapping[str, GroupFrame] | None = None,
    city_level: frozenset[str] = frozenset(),
) -> UnitScore:
    """The unit's index; ``frames`` (group -> population and target sample) replace the
    questionnaire's ``target`` and ``min_sample`` of the groups whose population is known;
    ``city_level`` names the groups whose figure is the city's (:func:`with_city_level`).
    """
    frames = frames or {}
    group_weights: dict[str, float] = {g.code: g.weight for g in questionnaire.groups}
    indices: dict[str, float] = {}
    errors: dict[str, tuple[float, float] | None] = {}
    group_scores: list[GroupScore] = []
    missing: dict[str, int] = {}
    for group in questionnaire.groups:
        agg = aggregate.groups.get(group.code, GroupAggregate())
        index = group_index(questionnaire, agg)
        se, df = group_error(questionnaire, agg)
        shown = is_shown_group(questionnaire, agg)
        # A group too small to show is also left out of the unit index: otherwise its
        # hidden index could be recovered by subtraction from the shown figures.
        if index is not None and shown:
            indices[group.code] = index
            errors[group.code] = (se, df) if se is not None and df is not None else None
        frame = frames.get(group.code)
        min_sample = frame.target if frame is not None else group.min_sample
        needed = max(min_sample, K_ANONYMITY)
        if agg.n_indexed < needed:
            missing[group.code] = needed - agg.n_indexed
        ci = None
        if shown and index is not None and se is not None and df is not None:
            ci = interval(index, se, df)
        group_scores.append(
            GroupScore(
                code=group.code,
                n=agg.n,
                target=frame.target if frame is not None else group.target,
                min_sample=min_sample,
                index=index if shown else None,
                ci=ci,
                shown=shown,
                population=frame.population if frame is not None else None,
                city_level=group.code in city_level,
            )
        )
    unit_index = weighted_mean(indices, group_weights)
    corrected = None if unit_index is None else max(0.0, unit_index - aggregate.deduction)
    ci = None
    if corrected is not None and all(errors[g] is not None for g in indices):
        total_weight = sum(group_weights[g] for g in indices)
        parts = []
        for g in indices:
            error = errors[g]
            assert error is not None
            parts.append((group_weights[g] / total_weight, error[0], error[1]))
        se, df = combined_error(parts)
        ci = interval(corrected, se, df)
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


def pooled_index(questionnaire: Questionnaire, aggregates: Sequence[UnitAggregate]) -> float | None:
    """The city's index from every unit's (published) tallies pooled per group.

    Dimension tallies under k in a unit are left out before pooling, as in the
    unit index; corrections are per unit and are not applied here.
    """
    pooled: dict[str, GroupAggregate] = {}
    for aggregate in aggregates:
        for code, group in aggregate.groups.items():
            if not is_shown_group(questionnaire, group):
                continue
            target = pooled.setdefault(code, GroupAggregate())
            target.n_indexed += group.n_indexed
            for d, tally in group.dimensions.items():
                if tally.n >= K_ANONYMITY:
                    sum_tally = target.dimensions.setdefault(d, Tally())
                    sum_tally.n += tally.n
                    sum_tally.total += tally.total
    indices = {
        code: index
        for code, group in pooled.items()
        if (index := group_index(questionnaire, group)) is not None
    }
    return weighted_mean(indices, {g.code: g.weight for g in questionnaire.groups})


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
