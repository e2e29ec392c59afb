"""The 95 % interval: by hand, against the old formula, and its coverage by simulation.

The simulation draws samples from a fixed, seeded population in which
respondents skip dimensions ("tidak tahu") at different rates, computes the
interval of core.scoring for each sample, and counts how often it contains the
population's index. Pure functions, no database: a few seconds.
"""

from __future__ import annotations

import math
import random

import pytest

from core.scoring import combined_error, group_estimate, t_quantile

STEPS = (0.0, 25.0, 50.0, 75.0, 100.0)
WEIGHTS = {f"d{d}": 1.0 for d in range(4)}
ANSWER_RATES = (0.95, 0.8, 0.6, 0.35)  # the last dimension scored by about a third
SAMPLES = 2000
NOMINAL_MINIMUM = 0.93

Respondent = dict[str, float]


def population(rng: random.Random, size: int, centre: float) -> list[Respondent]:
    """Respondents with a personal level, two items per dimension on the 0–100 steps,
    each dimension skipped with its own probability; people who scored nothing drop out."""
    people = []
    for _ in range(size):
        level = rng.gauss(centre, 15.0)
        scores = {}
        for d, rate in enumerate(ANSWER_RATES):
            if rng.random() < rate:
                items = [
                    min(STEPS, key=lambda s: abs(s - (level + rng.gauss(0, 20) + 8 * d - 12)))
                    for _ in range(2)
                ]
                scores[f"d{d}"] = sum(items) / len(items)
        if scores:
            people.append(scores)
    return people


def true_index(people: list[Respondent]) -> float:
    top = sum(WEIGHTS[d] * s for p in people for d, s in p.items())
    bottom = sum(WEIGHTS[d] for p in people for d in p)
    return top / bottom


def group_coverage(rng: random.Random, people: list[Respondent], n: int) -> float:
    truth = true_index(people)
    hits = 0
    for _ in range(SAMPLES):
        estimate = group_estimate([rng.choice(people) for _ in range(n)], WEIGHTS)
        assert estimate.index is not None and estimate.se is not None and estimate.df is not None
        hits += abs(estimate.index - truth) <= t_quantile(estimate.df) * estimate.se
    return hits / SAMPLES


def test_linearised_se_by_hand() -> None:
    # the worked example's staff (docs/scoring.md): D(r,a), D(r,b) with gaps
    staff: list[Respondent] = [
        {"a": 87.5, "b": 50.0},
        {"a": 75.0, "b": 100.0},
        {"a": 50.0, "b": 75.0},
        {"a": 100.0},
        {"a": 62.5, "b": 25.0},
        {"b": 50.0},
    ]
    estimate = group_estimate(staff, {"a": 1.0, "b": 1.0})
    # x = 2, 2, 2, 1, 2, 1 (Σ 10); y = 137.5, 175, 125, 100, 87.5, 50 (Σ 675); G = 67.5
    # z = (y − 67.5 x) / (10 / 6) = 1.5, 24, −6, 19.5, −28.5, −10.5; Σ z² = 1917
    assert estimate.index == 67.5 and estimate.n == 6 and estimate.df == 5
    assert estimate.se == pytest.approx(math.sqrt(1917 / (6 * 5)), abs=1e-12)


def test_without_gaps_it_is_the_spread_of_respondent_indices() -> None:
    rng = random.Random(7)
    people = [{d: rng.choice(STEPS) for d in WEIGHTS} for _ in range(12)]
    estimate = group_estimate(people, WEIGHTS)
    indices = [sum(p.values()) / len(p) for p in people]
    mean = sum(indices) / len(indices)
    s2 = sum((i - mean) ** 2 for i in indices) / (len(indices) - 1)
    assert estimate.index == pytest.approx(mean, abs=1e-12)
    assert estimate.se == pytest.approx(math.sqrt(s2 / len(indices)), abs=1e-12)


def test_t_not_z_and_welch_df() -> None:
    assert t_quantile(4) == pytest.approx(2.776445, abs=1e-6)
    assert t_quantile(1e6) == pytest.approx(1.959964, abs=1e-5)
    # two equal parts with 4 df each: Welch gives 8 df
    se, df = combined_error([(0.5, 2.0, 4.0), (0.5, 2.0, 4.0)])
    assert se == pytest.approx(math.sqrt(2.0), abs=1e-12) and df == pytest.approx(8.0)
    # one part alone keeps its own df
    assert combined_error([(1.0, 3.0, 6.0)]) == (pytest.approx(3.0), pytest.approx(6.0))


@pytest.mark.parametrize("n", [5, 10, 20, 40])
def test_group_interval_coverage(n: int) -> None:
    rng = random.Random(20250602 + n)
    people = population(rng, 20_000, centre=75.0)
    coverage = group_coverage(rng, people, n)
    assert coverage >= NOMINAL_MINIMUM, f"n = {n}: coverage {coverage:.3f}"


def test_unit_interval_coverage() -> None:
    """Three groups of different size and level, combined with the unit weights."""
    rng = random.Random(73)
    weights = {"internal": 0.35, "eksternal": 0.45, "eksper": 0.20}
    sizes = {"internal": 12, "eksternal": 15, "eksper": 6}
    groups = {
        "internal": population(rng, 10_000, 80.0),
        "eksternal": population(rng, 10_000, 70.0),
        "eksper": population(rng, 10_000, 60.0),
    }
    truth = sum(weights[g] * true_index(p) for g, p in groups.items())
    hits = 0
    for _ in range(SAMPLES):
        index, parts = 0.0, []
        for code, people in groups.items():
            estimate = group_estimate([rng.choice(people) for _ in range(sizes[code])], WEIGHTS)
            assert estimate.index is not None and estimate.se is not None
            assert estimate.df is not None
            index += weights[code] * estimate.index
            parts.append((weights[code], estimate.se, estimate.df))
        se, df = combined_error(parts)
        hits += abs(index - truth) <= t_quantile(df) * se
    coverage = hits / SAMPLES
    assert coverage >= NOMINAL_MINIMUM, f"unit coverage {coverage:.3f}"
