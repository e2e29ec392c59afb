"""Every scoring formula on small hand-computed fixtures, and the aggregates against an audit.

The expected numbers are worked out by hand in the comments (docs/scoring.md
repeats the worked example); the audit recomputation at the end reads the raw
``answers`` table and follows docs/scoring.md without calling core.scoring.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from scipy.stats import t as student_t

from core.aggregates import (
    FLAG_SPEEDER,
    FLAG_STRAIGHT,
    add_correction,
    apply_response,
    flag_counts,
    load_unit_aggregate,
)
from core.engine import Engine
from core.model import AnswerValue
from core.publish import published_unit_score
from core.questionnaire import Bands, Questionnaire, load_questionnaire
from core.report import (
    KPK_RESULTS_PATH,
    KpkResultsError,
    UnitReport,
    load_kpk_results,
    number,
    render_recap,
    render_unit,
)
from core.scoring import (
    K_ANONYMITY,
    GroupAggregate,
    Tally,
    UnitAggregate,
    band_of,
    group_index,
    group_standard_error,
    item_score,
    respondent_dimension_scores,
    respondent_index,
    score_unit,
    t_quantile,
    undecided_bands,
)
from core.storage import Storage
from core.units import Unit, UnitRegistry
from tests.conftest import SECRET
from tests.support.responses import complete
from tests.support.survey_driver import Clock, Respondent, answer_all, start_as
from tests.support.walker import cycling

TINY = """
period = "2025"
title = { id = "Survei uji", en = "Test survey" }
intro = { id = "Pengantar", en = "Intro" }

[scales]
freq = [
  { code = "never", text = { id = "Tidak pernah", en = "Never" }, score = 100 },
  { code = "rare", text = { id = "Jarang", en = "Rarely" }, score = 75 },
  { code = "some", text = { id = "Kadang", en = "Sometimes" }, score = 50 },
  { code = "often", text = { id = "Sering", en = "Often" }, score = 25 },
  { code = "always", text = { id = "Selalu", en = "Always" }, score = 0 },
  { code = "tt", text = { id = "Tidak tahu", en = "Don't know" } },
]

[[groups]]
code = "internal"
title = { id = "Internal", en = "Internal" }
description = { id = "Pegawai", en = "Staff" }
weight = 0.35
min_sample = 5
target = 10

[[groups]]
code = "eksternal"
title = { id = "Eksternal", en = "External" }
description = { id = "Pengguna", en = "Users" }
weight = 0.45
min_sample = 5
target = 10

[[groups]]
code = "eksper"
title = { id = "Eksper", en = "Expert" }
description = { id = "Ahli", en = "Experts" }
weight = 0.20
min_sample = 5
target = 8

[[dimensions]]
code = "a"
title = { id = "Transparansi", en = "Transparency" }
groups = ["internal", "eksternal", "eksper"]

[[dimensions]]
code = "b"
title = { id = "Integritas", en = "Integrity" }
groups = ["internal", "eksternal", "eksper"]

[[questions]]
id = "q_role"
type = "single"
groups = ["internal", "eksternal", "eksper"]
text = { id = "Peran?", en = "Role?" }
options = [
  { code = "staf", text = { id = "Staf", en = "Staff" } },
  { code = "lain", text = { id = "Lain", en = "Other" } },
]

[[questions]]
id = "q1"
type = "single"
scale = "freq"
groups = ["internal", "eksternal", "eksper"]
dimension = "a"
text = { id = "Butir 1", en = "Item 1" }

[[questions]]
id = "q2"
type = "single"
scale = "freq"
groups = ["internal", "eksternal", "eksper"]
dimension = "a"
text = { id = "Butir 2", en = "Item 2" }

[[questions]]
id = "q3"
type = "single"
scale = "freq"
groups = ["internal", "eksternal", "eksper"]
dimension = "b"
text = { id = "Butir 3", en = "Item 3" }

[[questions]]
id = "q_gift"
type = "yesno"
groups = ["internal", "eksternal", "eksper"]
dimension = "b"
yes_score = 0
no_score = 100
text = { id = "Memberi hadiah?", en = "Gave a gift?" }

[[questions]]
id = "q_note"
type = "text"
groups = ["internal", "eksternal", "eksper"]
optional = true
text = { id = "Saran", en = "Suggestion" }
"""

SCORE_CODE = {100.0: "never", 75.0: "rare", 50.0: "some", 25.0: "often", 0.0: "always"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Questionnaire:
    path = tmp_path_factory.mktemp("tiny") / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return load_questionnaire(path)


def codes(*scores: float | None) -> dict[str, AnswerValue]:
    """Answers to q1, q2, q3 given as scores; None means "tidak tahu"."""
    return {
        qid: ("tt" if s is None else SCORE_CODE[s])
        for qid, s in zip(("q1", "q2", "q3"), scores, strict=True)
    }


def group_of(
    indices: list[float],
    dimensions: Mapping[str, tuple[int, float]],
    respondents: list[dict[str, float]] | None = None,
) -> GroupAggregate:
    """A group's tallies from respondent indices and (n, total) per dimension."""
    return GroupAggregate(
        n=len(indices),
        n_indexed=len(indices),
        sum_index=sum(indices),
        sumsq_index=sum(i * i for i in indices),
        dimensions={d: Tally(n=n, total=t) for d, (n, t) in dimensions.items()},
        respondents=respondents or [],
    )


def single_dimension_group(indices: list[float]) -> GroupAggregate:
    """Each respondent scores only dimension a, so group index = mean of their indices."""
    return group_of(indices, {"a": (len(indices), sum(indices))}, [{"a": i} for i in indices])


T4 = 2.7764451051977934  # Student's t, 95 %, 4 degrees of freedom (n = 5)


# -- item and respondent ------------------------------------------------------


def test_item_score_excludes_tidak_tahu_unscored_and_unanswered(tiny: Questionnaire) -> None:
    q1, gift, role, note = (tiny.question(i) for i in ("q1", "q_gift", "q_role", "q_note"))
    assert q1 is not None and gift is not None and role is not None and note is not None
    assert [item_score(q1, c) for c in ("never", "rare", "some", "often", "always")] == [
        100,
        75,
        50,
        25,
        0,
    ]
    assert item_score(q1, "tt") is None  # "tidak tahu": no score, not zero
    assert item_score(q1, None) is None  # skipped
    assert item_score(q1, "unknown") is None
    assert item_score(gift, "ya") == 0 and item_score(gift, "tidak") == 100
    assert item_score(role, "staf") is None  # profile question, no dimension
    assert item_score(note, "anything") is None


def test_respondent_dimension_mean_leaves_tidak_tahu_out(tiny: Questionnaire) -> None:
    # a: q1 = 100, q2 = tidak tahu → 100 (not (100 + 0) / 2 = 50)
    # b: q3 = 25, q_gift = ya (0)  → (25 + 0) / 2 = 12.5
    answers = {**codes(100, None, 25), "q_gift": "ya", "q_role": "staf", "q_note": "x"}
    assert respondent_dimension_scores(tiny, "internal", answers) == {"a": 100.0, "b": 12.5}
    # only "tidak tahu" in a dimension: the dimension is absent, not 0
    assert respondent_dimension_scores(tiny, "internal", codes(None, None, 50)) == {"b": 50.0}
    assert respondent_dimension_scores(tiny, "internal", codes(None, None, None)) == {}
    assert respondent_index(tiny, {}) is None


def test_respondent_index_uses_dimension_weights(tiny: Questionnaire) -> None:
    q = tiny.model_copy(deep=True)
    q.dimensions[1].weight = 3.0  # b counts three times as much as a
    # (1 · 100 + 3 · 12.5) / (1 + 3) = 137.5 / 4 = 34.375
    assert respondent_index(q, {"a": 100.0, "b": 12.5}) == 34.375
    assert respondent_index(q, {"a": 100.0}) == 100.0  # renormalised over a alone


# -- group --------------------------------------------------------------------


def test_group_index_weighs_dimensions_by_their_informative_answers(tiny: Questionnaire) -> None:
    q = tiny.model_copy(deep=True)
    q.dimensions[1].weight = 3.0
    # a: six respondents, total 450 → mean 75;  b: five respondents, total 250 → mean 50
    group = group_of([], {"a": (6, 450.0), "b": (5, 250.0)})
    assert group.dimensions["a"].mean == 75.0 and group.dimensions["b"].mean == 50.0
    # Σ w_d · total_d / Σ w_d · n_d = (1 · 450 + 3 · 250) / (1 · 6 + 3 · 5) = 1200 / 21
    assert group_index(q, group) == pytest.approx(1200 / 21, abs=1e-12)
    # equal weights (the file's): (450 + 250) / (6 + 5) = 700 / 11, not (75 + 50) / 2
    assert group_index(tiny, group) == pytest.approx(700 / 11, abs=1e-12)
    # when every dimension has the same n it is the plain weighted mean of the means
    even = group_of([], {"a": (5, 375.0), "b": (5, 250.0)})
    assert group_index(q, even) == pytest.approx((1 * 75 + 3 * 50) / 4, abs=1e-12)
    # a dimension without answers is left out and the weights renormalised
    assert group_index(q, group_of([], {"a": (6, 450.0)})) == 75.0
    assert group_index(q, GroupAggregate()) is None


def test_a_dimension_under_k_does_not_enter_the_group_index(tiny: Questionnaire) -> None:
    # b scored by 4 people: it is left out entirely, whatever its score
    low = group_of([], {"a": (6, 450.0), "b": (4, 0.0)})
    high = group_of([], {"a": (6, 450.0), "b": (4, 400.0)})
    assert group_index(tiny, low) == group_index(tiny, high) == 75.0
    # at k = 5 it enters: (450 + 0) / (6 + 5)
    assert group_index(tiny, group_of([], {"a": (6, 450.0), "b": (5, 0.0)})) == pytest.approx(
        450 / 11, abs=1e-12
    )


def test_one_respondent_in_a_thin_dimension_moves_the_index_by_its_share(
    tiny: Questionnaire,
) -> None:
    # 20 staff score a (all 75); only 5 (k) score b. One of the five moves b from 0 to 100.
    before = group_of([], {"a": (20, 20 * 75.0), "b": (5, 4 * 50.0 + 0.0)})
    after = group_of([], {"a": (20, 20 * 75.0), "b": (5, 4 * 50.0 + 100.0)})
    move = (group_index(tiny, after) or 0.0) - (group_index(tiny, before) or 0.0)
    # Σ w·total / Σ w·n: the move is w_b · 100 / (w_a · 20 + w_b · 5) = 100 / 25 = 4 points,
    # where a plain mean of the dimension means would move (100 / 5) / 2 = 10 points
    assert move == pytest.approx(4.0, abs=1e-12)
    # the bound in docs/scoring.md: one respondent's answers in a dimension move the
    # group index by at most 100 · w_d / Σ_e w_e · n(g,e), however few scored d
    rng = random.Random(11)
    for _ in range(200):
        n_a, n_b = rng.randint(5, 30), rng.randint(5, 30)
        base = group_of(
            [], {"a": (n_a, rng.uniform(0, 100) * n_a), "b": (n_b, rng.uniform(0, 100) * n_b)}
        )
        changed = base.model_copy(deep=True)
        changed.dimensions["b"].total += rng.choice([-1, 1]) * rng.uniform(0, 100)
        shift = abs((group_index(tiny, changed) or 0.0) - (group_index(tiny, base) or 0.0))
        assert shift <= 100 / (n_a + n_b) + 1e-9


# -- unit ---------------------------------------------------------------------


def test_unit_index_uses_group_weights_and_renormalises(tiny: Questionnaire) -> None:
    full = UnitAggregate(
        unit="u",
        period="2025",
        groups={
            "internal": single_dimension_group([80.0] * 10),
            "eksternal": single_dimension_group([70.0] * 10),
            "eksper": single_dimension_group([60.0] * 5),
        },
    )
    # 0.35 · 80 + 0.45 · 70 + 0.20 · 60 = 28 + 31.5 + 12 = 71.5
    assert score_unit(tiny, full).index == pytest.approx(71.5, abs=1e-12)
    # no expert data: (28 + 31.5) / (0.35 + 0.45) = 74.375
    without = full.model_copy(deep=True)
    del without.groups["eksper"]
    assert score_unit(tiny, without).index == pytest.approx(74.375, abs=1e-12)
    # a group row with n = 0 (everything removed) counts as no data
    without.groups["eksper"] = GroupAggregate()
    assert score_unit(tiny, without).index == pytest.approx(74.375, abs=1e-12)
    # and so does a group under K = 5 respondents, however low its index
    without.groups["eksper"] = single_dimension_group([0.0] * 4)
    assert score_unit(tiny, without).index == pytest.approx(74.375, abs=1e-12)
    assert score_unit(tiny, UnitAggregate(unit="u", period="2025")).index is None


def test_correction_is_shown_before_and_after(tiny: Questionnaire) -> None:
    aggregate = UnitAggregate(
        unit="u",
        period="2025",
        groups={
            "internal": single_dimension_group([80.0] * 10),
            "eksternal": single_dimension_group([70.0] * 10),
            "eksper": single_dimension_group([60.0] * 5),
        },
        deduction=5.0,
        reasons=["pengarahan"],
    )
    score = score_unit(tiny, aggregate)
    assert score.index == pytest.approx(71.5, abs=1e-12)  # before the correction
    assert score.deduction == 5.0
    assert score.corrected == pytest.approx(66.5, abs=1e-12)  # after
    assert score.band == "riskan"  # the band follows the corrected index
    aggregate.deduction = 80.0
    assert score_unit(tiny, aggregate).corrected == 0.0  # never below zero


@pytest.mark.parametrize(
    ("index", "band", "shown"),
    [
        (0.0, "riskan", "0,00"),
        (72.99, "riskan", "72,99"),
        (72.994999, "riskan", "72,99"),
        (72.995, "waspada", "73,00"),  # shown as 73,00, so banded as 73
        (73.0, "waspada", "73,00"),
        (77.99, "waspada", "77,99"),
        (77.994999, "waspada", "77,99"),
        (77.995, "terjaga", "78,00"),
        (77.99999999999999, "terjaga", "78,00"),  # a computed 78 (float noise)
        (78.0, "terjaga", "78,00"),
        (100.0, "terjaga", "100,00"),
    ],
)
def test_band_edges_follow_the_shown_value(index: float, band: str, shown: str) -> None:
    assert band_of(index, Bands()) == band
    assert number(index, "id") == shown
    assert number(index, "en") == shown.replace(",", ".")


def test_a_computed_78_is_terjaga_in_text_and_chart(tiny: Questionnaire) -> None:
    # (0.35 · 82.5 + 0.45 · 74.5) / 0.8 = 78 exactly, but in floating point 77.99999999999999
    aggregate = UnitAggregate(
        unit="u",
        period="2025",
        groups={
            "internal": single_dimension_group([82.5] * 5),
            "eksternal": single_dimension_group([74.5] * 5),
        },
    )
    score = score_unit(tiny, aggregate)
    assert score.index == 77.99999999999999
    assert score.band == "terjaga" and number(score.index, "id") == "78,00"
    report = UnitReport(unit=Unit(code="dinkes", name="Dinas Kesehatan", kind="dinas"), score=score)
    assert "78,00 – terjaga" in render_unit(report, tiny, "id")


def test_bands_come_from_the_file(tiny: Questionnaire) -> None:
    bands = Bands(terjaga_min=80.0, waspada_min=70.0)
    assert band_of(79.99, bands) == "waspada" and band_of(69.99, bands) == "riskan"
    aggregate = UnitAggregate(
        unit="u", period="2025", groups={"internal": single_dimension_group([73.0] * 10)}
    )
    assert score_unit(tiny, aggregate).band == "waspada"  # exactly 73 through score_unit


def test_provisional_and_missing_under_min_sample(tiny: Questionnaire) -> None:
    aggregate = UnitAggregate(
        unit="u",
        period="2025",
        groups={
            "internal": single_dimension_group([80.0] * 5),
            "eksternal": single_dimension_group([70.0] * 4),
        },
    )
    score = score_unit(tiny, aggregate)
    assert score.provisional is True
    # missing = max(min_sample, K) − n: eksternal 5 − 4 = 1, eksper 5 − 0 = 5
    assert score.missing == {"eksternal": 1, "eksper": 5}
    assert [(g.code, g.n, g.min_sample, g.target) for g in score.groups] == [
        ("internal", 5, 5, 10),
        ("eksternal", 4, 5, 10),
        ("eksper", 0, 5, 8),
    ]
    # eksternal (n = 4 < K) is left out of the unit index: internal alone, 80
    assert score.index == 80.0
    aggregate.groups["eksternal"] = single_dimension_group([70.0] * 5)
    aggregate.groups["eksper"] = single_dimension_group([60.0] * 5)
    final = score_unit(tiny, aggregate)
    assert final.provisional is False and final.missing == {}
    # 0.35 · 80 + 0.45 · 70 + 0.20 · 60 = 71.5: every group counts now
    assert final.index == pytest.approx(71.5, abs=1e-12)


def test_missing_counts_up_to_the_larger_of_min_sample_and_k(tiny: Questionnaire) -> None:
    q = tiny.model_copy(deep=True)
    minimum = {"internal": 10, "eksper": 3}
    for group in q.groups:
        group.min_sample = minimum.get(group.code, group.min_sample)
    aggregate = UnitAggregate(
        unit="u",
        period="2025",
        groups={
            "internal": single_dimension_group([80.0] * 5),
            "eksternal": single_dimension_group([70.0] * 5),
            "eksper": single_dimension_group([60.0] * 3),
        },
    )
    score = score_unit(q, aggregate)
    # internal: 5 ≥ K but under its min_sample 10 → 10 − 5 = 5 more, still counted;
    # eksper: its min_sample 3 is met but 3 < K → 5 − 3 = 2 more, and left out
    assert score.provisional is True
    assert score.missing == {"internal": 5, "eksper": 2}
    # (0.35 · 80 + 0.45 · 70) / (0.35 + 0.45) = 59.5 / 0.8 = 74.375
    assert score.index == pytest.approx(74.375, abs=1e-12)
    by_code = {g.code: g for g in score.groups}
    assert by_code["internal"].shown and by_code["internal"].index == 80.0
    assert not by_code["eksper"].shown and by_code["eksper"].index is None


# -- k-anonymity ----------------------------------------------------------------


def test_k_anonymity_hides_small_groups_dimensions_and_items(tiny: Questionnaire) -> None:
    assert K_ANONYMITY == 5
    internal = single_dimension_group([80.0] * 5)
    internal.dimensions["b"] = Tally(n=4, total=4 * 50.0)  # b answered by only 4
    internal.items = {"q1": Tally(n=5, total=5 * 90.0), "q2": Tally(n=4, total=4 * 10.0)}
    small = single_dimension_group([70.0] * 4)
    aggregate = UnitAggregate(
        unit="u", period="2025", groups={"internal": internal, "eksternal": small}
    )
    score = score_unit(tiny, aggregate)
    by_code = {g.code: g for g in score.groups}
    assert by_code["internal"].shown and by_code["internal"].index is not None
    assert not by_code["eksternal"].shown
    # the hidden eksternal (70) is not in the unit index either: internal's alone; and
    # dimension b (n = 4) is not in the group index: a alone, 80 (not (80 + 50) / 2)
    assert score.index == by_code["internal"].index == 80.0
    assert by_code["eksternal"].index is None and by_code["eksternal"].ci is None
    dimensions = {d.code: d for d in score.dimensions}
    # a: internal (n = 5) only, the eksternal tally (n = 4) is left out
    assert dimensions["a"].score == 80.0 and dimensions["a"].n == 5
    # b: only a tally with n = 4, so no score at all
    assert dimensions["b"].score is None and dimensions["b"].n == 0
    assert [p.dimension for p in score.priorities] == ["a"]
    assert score.priorities[0].weakest_items == [("q1", 90.0)]  # q2 (n = 4) left out
    # the whole unit under K respondents is not shown
    tiny_unit = UnitAggregate(unit="u", period="2025", groups={"eksternal": small})
    assert score_unit(tiny, tiny_unit).shown is False
    assert score.shown is True


def test_hidden_group_cannot_be_recovered_from_shown_figures(tiny: Questionnaire) -> None:
    lone_expert = 20.0  # one expert's respondent index
    aggregate = UnitAggregate(
        unit="u",
        period="2025",
        groups={
            "internal": single_dimension_group([80.0] * 10),
            "eksper": single_dimension_group([lone_expert]),
        },
    )
    score = score_unit(tiny, aggregate)
    internal = next(g for g in score.groups if g.code == "internal")
    assert score.shown and score.index is not None and internal.index is not None
    # unit = (0.35 · internal + 0.20 · eksper) / 0.55  ⇒  eksper = …
    recovered = (score.index * 0.55 - 0.35 * internal.index) / 0.20
    assert recovered != pytest.approx(lone_expert)
    assert score.index == internal.index == 80.0  # the expert is simply not in it


# -- confidence interval -----------------------------------------------------------


def test_ci_of_one_group_by_hand(tiny: Questionnaire) -> None:
    # respondent indices 60, 70, 75, 80, 90: mean 75,
    # s² = (15² + 5² + 0² + 5² + 15²) / (5 − 1) = 500 / 4 = 125, SE = √(125 / 5) = 5
    group = single_dimension_group([60.0, 70.0, 75.0, 80.0, 90.0])
    se = 5.0
    assert group_standard_error(tiny, group) == pytest.approx(se, rel=1e-12)
    score = score_unit(
        tiny.model_copy(deep=True),
        UnitAggregate(unit="u", period="2025", groups={"internal": group}),
    )
    assert score.index == pytest.approx(75.0, abs=1e-12)
    assert score.ci is not None
    # Student's t with 5 − 1 = 4 df, not the normal 1.96: 75 ± 2.776445 · 5 = 75 ± 13.882226
    assert t_quantile(4) == pytest.approx(T4, abs=1e-12)
    assert score.ci == pytest.approx((61.117774, 88.882226), abs=1e-6)
    shown = next(g for g in score.groups if g.code == "internal")
    # n = 5 ≥ K: the group line is shown with the same interval (one group, no deduction)
    assert shown.shown and shown.ci == pytest.approx((61.117774, 88.882226), abs=1e-6)
    hidden = single_dimension_group([60.0, 70.0, 80.0, 90.0])  # n = 4 < K
    alone = UnitAggregate(unit="u", period="2025", groups={"internal": hidden})
    line = next(g for g in score_unit(tiny, alone).groups if g.code == "internal")
    assert not line.shown and line.ci is None  # the group line is hidden, CI included


def test_ci_combines_groups_with_squared_normalised_weights(tiny: Questionnaire) -> None:
    # internal 60, 70, 75, 80, 90: mean 75, s² = 500 / 4 = 125, SE² = 125 / 5 = 25
    # eksternal 70, 75, 80, 85, 90: mean 80,
    #   s² = (10² + 5² + 0 + 5² + 10²) / 4 = 62.5, SE² = 62.5 / 5 = 12.5
    # normalised weights 0.35 / 0.8 = 0.4375 and 0.45 / 0.8 = 0.5625
    # index = 0.4375 · 75 + 0.5625 · 80 = 32.8125 + 45 = 77.8125
    # SE² = 0.4375² · 25 + 0.5625² · 12.5 = 4.78515625 + 3.955078125 = 8.740234375
    # Welch df = 8.740234375² / (4.78515625² / 4 + 3.955078125² / 4) = 7.928…
    aggregate = UnitAggregate(
        unit="u",
        period="2025",
        groups={
            "internal": single_dimension_group([60.0, 70.0, 75.0, 80.0, 90.0]),
            "eksternal": single_dimension_group([70.0, 75.0, 80.0, 85.0, 90.0]),
        },
        deduction=2.0,
    )
    score = score_unit(tiny, aggregate)
    se = math.sqrt(8.740234375)
    assert se == pytest.approx(2.956389, abs=1e-6)
    df = 8.740234375**2 / (4.78515625**2 / 4 + 3.955078125**2 / 4)
    assert df == pytest.approx(7.928487, abs=1e-6)
    assert score.index == pytest.approx(77.8125, abs=1e-12)
    assert score.corrected == pytest.approx(75.8125, abs=1e-12)
    half = t_quantile(df) * se
    assert score.ci == pytest.approx((75.8125 - half, 75.8125 + half), abs=1e-12)
    # 75.8125 ± 2.309… · 2.956389 = 75.8125 ± 6.828…
    assert half == pytest.approx(2.3097 * se, abs=1e-3)


def test_k_counts_informative_people_and_the_ci_is_clipped(
    tiny: Questionnaire,
) -> None:
    # eksternal: 5 completed responses, but only one scored anything (four said "tidak
    # tahu" throughout): not a group of 5, so it is hidden and left out of the index
    one_indexed = GroupAggregate(
        n=5,
        n_indexed=1,
        sum_index=70.0,
        sumsq_index=4900.0,
        dimensions={"a": Tally(n=1, total=70.0)},
        respondents=[{"a": 70.0}],
    )
    one = UnitAggregate(
        unit="u",
        period="2025",
        groups={
            "internal": single_dimension_group([60.0, 70.0, 75.0, 80.0, 90.0]),
            "eksternal": one_indexed,
        },
    )
    score = score_unit(tiny, one)
    assert score.index == pytest.approx(75.0, abs=1e-12)  # internal's alone
    assert not next(g for g in score.groups if g.code == "eksternal").shown
    # and the interval is internal's alone, 75 ± 2.776445 · 5
    assert score.ci == pytest.approx((61.117774, 88.882226), abs=1e-6)
    # 100, 100, 100, 90, 90: mean 96, s² = (3 · 4² + 2 · 6²) / 4 = 30, SE = √(30 / 5) = √6
    # 96 ± 2.776445 · 2.449490 = 96 ± 6.800874 → (89.199126, 102.800874), cut at 100
    high = UnitAggregate(
        unit="u",
        period="2025",
        groups={"internal": single_dimension_group([100.0, 100.0, 100.0, 90.0, 90.0])},
    )
    ci = score_unit(tiny, high).ci
    assert ci is not None and ci[1] == 100.0
    assert ci[0] == pytest.approx(89.199126, abs=1e-6)


def test_no_rounding_of_intermediates(tiny: Questionnaire) -> None:
    # dimension a means of thirds, six respondents each:
    # internal 500 / 6 = 250 / 3, eksternal 400 / 6 = 200 / 3
    aggregate = UnitAggregate(
        unit="u",
        period="2025",
        groups={
            "internal": group_of([250 / 3] * 6, {"a": (6, 500.0)}),
            "eksternal": group_of([200 / 3] * 6, {"a": (6, 400.0)}),
        },
    )
    exact = (0.35 * 250 / 3 + 0.45 * 200 / 3) / 0.8
    rounded = (0.35 * 83.33 + 0.45 * 66.67) / 0.8  # what 2-decimal intermediates would give
    score = score_unit(tiny, aggregate)
    assert score.index == pytest.approx(exact, abs=1e-12)
    assert abs(exact - rounded) > 1e-4
    assert abs((score.index or 0.0) - rounded) > 1e-4


# -- worked example of docs/scoring.md, through the production aggregates -------

WORKED_EXAMPLE: list[tuple[str, tuple[float | None, float | None, float | None]]] = [
    ("internal", (100, 75, 50)),  # a 87.5, b 50
    ("internal", (75, None, 100)),  # a 75, b 100
    ("internal", (50, 50, 75)),  # a 50, b 75
    ("internal", (100, 100, None)),  # a 100, no b
    ("internal", (75, 50, 25)),  # a 62.5, b 25
    ("internal", (None, None, 50)),  # no a, b 50
    ("eksternal", (100, 100, 75)),  # a 100, b 75
    ("eksternal", (75, 50, None)),  # a 62.5, no b
    ("eksternal", (100, 75, 100)),  # a 87.5, b 100
    ("eksternal", (50, 75, 75)),  # a 62.5, b 75
    ("eksternal", (None, None, None)),  # nothing scored: not informative
    ("eksternal", (100, 100, None)),  # a 100, no b
    ("eksper", (25, 25, 0)),  # a 25, b 0
    ("eksper", (50, 25, 25)),  # a 37.5, b 25
]


async def test_worked_example_of_the_docs(tiny: Questionnaire, storage: Storage) -> None:
    moment = dt.datetime(2025, 6, 2, 1, 0, tzinfo=dt.UTC)
    for i, (group, scores) in enumerate(WORKED_EXAMPLE):
        await complete(storage, tiny, group, codes(*scores), when=moment + dt.timedelta(hours=i))
    async with storage.transaction() as tx:
        await add_correction(tx, "2025", "dinkes", 5.0, "contoh", moment)
        aggregate = await load_unit_aggregate(tx, "2025", "dinkes")
    score = score_unit(tiny, aggregate)
    assert score.shown and score.n == 14
    internal, eksternal = aggregate.groups["internal"], aggregate.groups["eksternal"]
    eksper = aggregate.groups["eksper"]
    # dimension tallies: internal a 375 / 5, b 300 / 5; eksternal a 412.5 / 5, b 250 / 3
    assert (internal.dimensions["a"].n, internal.dimensions["a"].total) == (5, 375.0)
    assert (internal.dimensions["b"].n, internal.dimensions["b"].total) == (5, 300.0)
    assert (eksternal.dimensions["a"].n, eksternal.dimensions["a"].total) == (5, 412.5)
    assert (eksternal.dimensions["b"].n, eksternal.dimensions["b"].total) == (3, 250.0)
    # group indices: internal (375 + 300) / (5 + 5) = 67.5; eksternal's b has 3 < 5
    # answers and does not count, so 412.5 / 5 = 82.5
    assert group_index(tiny, internal) == 67.5
    assert group_index(tiny, eksternal) == 82.5
    assert (eksternal.n, eksternal.n_indexed) == (6, 5)  # one all-"tidak tahu"
    # experts: 2 people, no dimension reaches 5, no group index at all
    assert group_index(tiny, eksper) is None and eksper.n == 2
    # unit: (0.35 · 67.5 + 0.45 · 82.5) / 0.8 = 60.75 / 0.8 = 75.9375; −5 → 70.9375
    assert score.index == pytest.approx(75.9375, abs=1e-12)
    assert score.corrected == pytest.approx(70.9375, abs=1e-12)
    assert (band_of(score.index or 0.0, tiny.bands), score.band) == ("waspada", "riskan")
    assert number(score.corrected or 0.0, "id") == "70,94"
    # interval: internal SE² = 1917 / (6 · 5) = 63.9, df 5;
    # eksternal SE² = 1437.5 / (5 · 4) = 71.875, df 4
    assert group_standard_error(tiny, internal) == pytest.approx(math.sqrt(63.9), abs=1e-12)
    assert group_standard_error(tiny, eksternal) == pytest.approx(math.sqrt(71.875), abs=1e-12)
    parts = (0.4375**2 * 63.9, 0.5625**2 * 71.875)  # 12.230859…, 22.741699…
    se = math.sqrt(sum(parts))
    df = sum(parts) ** 2 / (parts[0] ** 2 / 5 + parts[1] ** 2 / 4)
    assert (se, df) == (pytest.approx(5.913760, abs=1e-6), pytest.approx(7.681938, abs=1e-6))
    assert t_quantile(df) == pytest.approx(2.322729, abs=1e-6)
    assert score.ci == pytest.approx((57.201435, 84.673565), abs=1e-6)
    # the interval spans all three bands: the label says so
    assert undecided_bands(score, tiny.bands) == ["riskan", "waspada", "terjaga"]
    assert score.provisional and score.missing == {"eksper": 3}  # 5 − 2
    assert [g.index for g in score.groups] == [67.5, 82.5, None]
    assert [g.shown for g in score.groups] == [True, True, False]
    # /skor: the same index from the published tallies; the staff interval's width was
    # published with the fifth informative staff member (docs/scoring.md, section 10)
    async with storage.transaction() as tx:
        published = await published_unit_score(tx, tiny, "2025", "dinkes")
    assert published.corrected == score.corrected and published.ci is not None
    assert (number(published.ci[0], "id"), number(published.ci[1], "id")) == ("56,67", "85,20")


# -- the aggregates against an independent audit of the answers table --------------

AUDIT_K = 5  # docs/scoring.md section 6: a group under 5 respondents is not in U


@dataclass
class Audit:
    """Figures recomputed the auditor's way (docs/scoring.md), without core.scoring."""

    n: dict[str, int] = field(default_factory=dict)
    dimension_means: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
    group_indices: dict[str, float | None] = field(default_factory=dict)
    index: float | None = None
    corrected: float | None = None
    ci: tuple[float, float] | None = None


def audit(
    items: Iterable[tuple[int, str, str | None, float | None]],
    counted_responses: Mapping[int, str],
    dimension_weights: Mapping[str, float],
    group_weights: Mapping[str, float],
    deduction: float,
) -> Audit:
    """From (response, group, dimension, item score) rows of counted responses.

    A dimension counts in a group with at least AUDIT_K respondents who scored it;
    the group index is Σ w·(sum of D(r,d)) / Σ w·n(g,d) over those; a group enters
    the unit index with at least AUDIT_K informative respondents. The interval is
    the linearised one with Student's t, groups combined with Welch's df.
    """
    per_response: dict[int, dict[str, list[float]]] = {r: {} for r in counted_responses}
    for response_id, _group, dimension, score in items:
        if response_id in per_response and dimension and score is not None:
            per_response[response_id].setdefault(dimension, []).append(score)
    result = Audit()
    errors: dict[str, tuple[float, int] | None] = {}
    for group in group_weights:
        members = [r for r, g in counted_responses.items() if g == group]
        result.n[group] = len(members)
        means = [{d: sum(s) / len(s) for d, s in per_response[r].items()} for r in members]
        dims: dict[str, list[float]] = {}
        for m in means:
            for dimension, mean in m.items():
                dims.setdefault(dimension, []).append(mean)
        for dimension, values in dims.items():
            result.dimension_means[(group, dimension)] = (len(values), sum(values) / len(values))
        counted_dims = {d for d, v in dims.items() if len(v) >= AUDIT_K}
        informative = sum(1 for m in means if m)
        if not counted_dims:
            if dims:
                result.group_indices[group] = None
            continue
        top = sum(dimension_weights[d] * sum(dims[d]) for d in counted_dims)
        bottom = sum(dimension_weights[d] * len(dims[d]) for d in counted_dims)
        g_index = top / bottom
        result.group_indices[group] = g_index
        if informative < AUDIT_K:
            continue
        xy = [
            (
                sum(dimension_weights[d] for d in m if d in counted_dims),
                sum(dimension_weights[d] * v for d, v in m.items() if d in counted_dims),
            )
            for m in means
        ]
        xy = [(x, y) for x, y in xy if x > 0]
        k = len(xy)
        mean_x = sum(x for x, _ in xy) / k
        variance = sum(((y - g_index * x) / mean_x) ** 2 for x, y in xy) / (k * (k - 1))
        errors[group] = (variance, k - 1)
    shown = {
        g: i
        for g, i in result.group_indices.items()
        if i is not None and g in errors and result.n[g] >= AUDIT_K
    }
    if shown:
        total = sum(group_weights[g] for g in shown)
        result.index = sum(group_weights[g] * i for g, i in shown.items()) / total
        result.corrected = max(0.0, result.index - deduction)
        parts = []
        for g in shown:
            error = errors[g]
            assert error is not None
            parts.append(((group_weights[g] / total) ** 2 * error[0], error[1]))
        variance = sum(v for v, _ in parts)
        df = variance**2 / sum(v * v / d for v, d in parts)
        half = float(student_t.ppf(0.975, df)) * math.sqrt(variance)
        result.ci = (max(0.0, result.corrected - half), min(100.0, result.corrected + half))
    return result


def audit_database(db_path: Path, questionnaire: Questionnaire, unit: str) -> Audit:
    """Read raw rows with plain sqlite3 and score them from the questionnaire file alone."""
    questions = {q.id: q for q in questionnaire.questions}
    with closing(sqlite3.connect(db_path)) as db:
        counted = {
            int(r[0]): str(r[1])
            for r in db.execute(
                "SELECT id, group_code FROM responses WHERE period = ? AND unit_code = ? AND "
                "status = 'completed' AND counted = 1",
                (questionnaire.period, unit),
            )
        }
        raw = list(db.execute("SELECT response_id, question_id, value FROM answers"))
        deduction = db.execute(
            "SELECT COALESCE(SUM(deduction), 0) FROM corrections WHERE period = ? AND "
            "unit_code = ?",
            (questionnaire.period, unit),
        ).fetchone()[0]
    items = []
    for response_id, qid, value in raw:
        question = questions.get(qid)
        code = json.loads(value)
        if question is None or question.dimension is None or not isinstance(code, str):
            continue
        scores = {o.code: o.score for o in question.options}
        items.append(
            (int(response_id), counted.get(response_id, ""), question.dimension, scores.get(code))
        )
    return audit(
        items,
        counted,
        {d.code: d.weight for d in questionnaire.dimensions},
        {g.code: g.weight for g in questionnaire.groups},
        float(deduction),
    )


def assert_matches(aggregate: UnitAggregate, questionnaire: Questionnaire, expected: Audit) -> None:
    score = score_unit(questionnaire, aggregate)
    for group in questionnaire.groups:
        got = aggregate.groups.get(group.code, GroupAggregate())
        assert got.n == expected.n[group.code], group.code
        got_index = group_index(questionnaire, got)
        want = expected.group_indices.get(group.code)
        assert got_index == (None if want is None else pytest.approx(want, abs=1e-9))
        for dimension, tally in got.dimensions.items():
            n, mean = expected.dimension_means[(group.code, dimension)]
            assert (tally.n, tally.mean) == (n, pytest.approx(mean, abs=1e-9))
    assert {(g, d) for g, a in aggregate.groups.items() for d in a.dimensions} == set(
        expected.dimension_means
    )
    assert score.index == pytest.approx(expected.index, abs=1e-9)
    assert score.corrected == pytest.approx(expected.corrected, abs=1e-9)
    if expected.ci is None:
        assert score.ci is None
    else:
        assert score.ci == pytest.approx(expected.ci, abs=1e-9)


EKSTERNAL = ("Pengguna layanan", ["Ya, pernah", "Saya urus sendiri"])
INTERNAL = ("Pegawai unit", ["Ya, ASN", "Lebih dari 2 tahun"])
EKSPER = ("Ahli", ["Kejaksaan", "Ya"])
CODES = ("tidak_pernah", "jarang", "kadang", "sering", "sgt_sering", "tt")  # frekuensi, mostly


async def take_survey(
    engine: Engine,
    clock: Clock,
    user: str,
    who: tuple[str, list[str]],
    shift: int | None,
    seconds: float = 300.0,
) -> None:
    """One respondent at Dinas Kesehatan; shift None answers the first option throughout."""
    r = Respondent(engine, user_id=user)
    await start_as(r, who[0], who[1], "kesehatan")
    clock.advance(seconds=seconds)
    if shift is None:
        await answer_all(r)  # the first option throughout: a straight line
    else:
        await answer_all(r, cycling(CODES, shift))
    await r.press("Kirim")
    assert "Terima kasih" in r.text
    clock.advance(minutes=30)  # no burst of completions


async def test_aggregates_equal_an_audit_of_the_answers(
    engine: Engine, clock: Clock, storage: Storage, db_path: Path, questionnaire: Questionnaire
) -> None:
    for i in range(6):
        await take_survey(engine, clock, f"ex{i}", EKSTERNAL, shift=i)
    for i in range(5):
        await take_survey(engine, clock, f"in{i}", INTERNAL, shift=2 * i + 1)
    for i in range(2):
        await take_survey(engine, clock, f"ek{i}", EKSPER, shift=i + 3)
    async with storage.transaction() as tx:
        await add_correction(tx, questionnaire.period, "dinkes", 1.5, "pengarahan", clock.now)
        aggregate = await load_unit_aggregate(tx, questionnaire.period, "dinkes")
        flags = await flag_counts(tx, questionnaire.period, "dinkes")
    assert flags == {}
    expected = audit_database(db_path, questionnaire, "dinkes")
    assert expected.n == {"internal": 5, "eksternal": 6, "eksper": 2}
    assert expected.ci is not None and expected.index is not None
    # internal and eksternal (≥ 5) make the unit index; the two experts do not
    counted = expected.group_indices
    assert set(counted) == {"internal", "eksternal", "eksper"}
    assert expected.index == pytest.approx(
        (0.35 * counted["internal"] + 0.45 * counted["eksternal"]) / 0.8, abs=1e-9
    )
    assert_matches(aggregate, questionnaire, expected)
    # the answers really vary, "tidak tahu" included
    with closing(sqlite3.connect(db_path)) as db:
        values = {v for (v,) in db.execute("SELECT value FROM answers")}
    assert {'"tt"', '"jarang"', '"sering"', '"tidak_pernah"'} <= values


async def test_flags_and_exclusion_remove_exactly_one_contribution(
    questionnaire: Questionnaire, units: UnitRegistry, storage: Storage, db_path: Path, clock: Clock
) -> None:
    strict = questionnaire.model_copy(deep=True)
    strict.quality.exclude_flagged = True
    engine = Engine(strict, units, storage, SECRET, clock=clock)
    for i in range(6):  # one more than K, so that one can be flagged off below
        await take_survey(engine, clock, f"ex{i}", EKSTERNAL, shift=i)
    await take_survey(
        engine, clock, "fast", EKSTERNAL, shift=2, seconds=strict.quality.min_seconds - 1
    )
    await take_survey(engine, clock, "same", EKSTERNAL, shift=None)
    with closing(sqlite3.connect(db_path)) as db:
        rows = list(
            db.execute("SELECT id, flags, counted, duration_seconds FROM responses ORDER BY flags")
        )
    assert [(flags, counted) for _, flags, counted, _ in rows] == [("", 1)] * 6 + [
        (FLAG_SPEEDER, 0),
        (FLAG_STRAIGHT, 0),
    ]
    assert rows[6][3] == strict.quality.min_seconds - 1
    async with storage.transaction() as tx:
        assert await flag_counts(tx, strict.period, "dinkes") == {FLAG_SPEEDER: 1, FLAG_STRAIGHT: 1}
        before = await load_unit_aggregate(tx, strict.period, "dinkes")
    assert before.groups["eksternal"].n == 6
    assert_matches(before, strict, audit_database(db_path, strict, "dinkes"))

    # flag one more response: exactly its contribution goes, nothing else
    target = rows[2][0]
    async with storage.transaction() as tx:
        dimension_scores = dict(
            (r["dimension"], r["score"])
            for r in await tx.fetchall(
                "SELECT dimension, score FROM response_scores WHERE response_id = ?", (target,)
            )
        )
        await apply_response(tx, strict, target, -1)
        await apply_response(tx, strict, target, -1)  # idempotent
        after = await load_unit_aggregate(tx, strict.period, "dinkes")
    old, new = before.groups["eksternal"], after.groups["eksternal"]
    assert (old.n - new.n, old.n_indexed - new.n_indexed) == (1, 1)
    assert score_unit(strict, after).index is not None  # 5 left: still in the unit index
    for dimension, tally in old.dimensions.items():
        removed = new.dimensions.get(dimension, Tally())
        took = dimension_scores.get(dimension)
        assert tally.n - removed.n == (1 if took is not None else 0)
        assert tally.total - removed.total == pytest.approx(took or 0.0, abs=1e-9)
    assert_matches(after, strict, audit_database(db_path, strict, "dinkes"))

    async with storage.transaction() as tx:
        await apply_response(tx, strict, target, +1)
        restored = await load_unit_aggregate(tx, strict.period, "dinkes")
    assert restored.groups["eksternal"].n == old.n
    for dimension, tally in old.dimensions.items():
        back = restored.groups["eksternal"].dimensions[dimension]
        assert (back.n, back.total) == (tally.n, pytest.approx(tally.total, abs=1e-9))
    assert_matches(restored, strict, audit_database(db_path, strict, "dinkes"))


# -- what the text says -------------------------------------------------------------


def test_an_interval_across_a_cut_off_says_the_bands_cannot_be_told_apart(
    tiny: Questionnaire,
) -> None:
    # one group, indices 76 … 84: SE = √(40 / 4 / 5) = √2, 80 ± 2.776445 · √2 = 76.07 … 83.93
    aggregate = UnitAggregate(
        unit="dinkes",
        period="2025",
        groups={"internal": single_dimension_group([76.0, 78.0, 80.0, 82.0, 84.0])},
    )
    score = score_unit(tiny, aggregate)
    assert score.ci is not None and score.ci[0] < 78 < score.ci[1] and score.ci[0] > 73
    report = UnitReport(unit=Unit(code="dinkes", name="Dinas Kesehatan", kind="dinas"), score=score)
    text = render_unit(report, tiny, "id")
    assert "80,00 – waspada atau terjaga, belum dapat dibedakan" in text
    assert "terjaga, not yet distinguishable" in render_unit(report, tiny, "en")
    # a narrow interval inside one band: the band alone
    narrow = single_dimension_group([79.0, 80.0, 80.0, 80.0, 81.0])
    aggregate.groups["internal"] = narrow
    calm = UnitReport(unit=report.unit, score=score_unit(tiny, aggregate))
    assert "80,00 – terjaga" in render_unit(calm, tiny, "id")


def test_skor_and_rekap_say_the_cut_offs_are_borrowed_and_show_kpk(
    tiny: Questionnaire, tmp_path: Path
) -> None:
    aggregate = UnitAggregate(
        unit="dinkes", period="2025", groups={"internal": single_dimension_group([74.0] * 6)}
    )
    report = UnitReport(
        unit=Unit(code="dinkes", name="Dinas Kesehatan", kind="dinas"),
        score=score_unit(tiny, aggregate),
    )
    borrowed = "batas KPK (terjaga mulai 78, waspada mulai 73) yang dipinjam"
    assert borrowed in render_unit(report, tiny, "id")
    kpk = load_kpk_results(KPK_RESULTS_PATH)
    assert [(r.period, r.index) for r in kpk.results] == [("2023", 74.8), ("2024", 71.6)]
    recap = render_recap([report], tiny, "id", "Kota Semarang", {}, city_index=74.0, kpk=kpk)
    assert borrowed in recap
    assert "Indeks kota, seluruh responden digabung: 74,00" in recap
    # the questionnaire's period is 2025: KPK's latest result before it, with its year
    assert "Hasil resmi SPI KPK untuk kota (2024): 71,6" in recap
    in_2023 = tiny.model_copy(update={"period": "2023"})
    assert "(2023): 74,8" in render_recap([report], in_2023, "id", "Kota Semarang", {}, kpk=kpk)


def test_kpk_results_file_is_checked_at_load(tmp_path: Path) -> None:
    bad = tmp_path / "kpk.toml"
    bad.write_text(
        'government = "Kota Semarang"\n[[results]]\nperiod = "2023"\nindex = 748\nsource = "KPK"\n',
        encoding="utf-8",
    )
    with pytest.raises(KpkResultsError) as error:
        load_kpk_results(bad)
    assert "results[0].index" in str(error.value) and str(bad) in str(error.value)
    bad.write_text(
        'government = "Kota Semarang"\n'
        + '[[results]]\nperiod = "2023"\nindex = 74.8\nsource = "KPK"\n' * 2,
        encoding="utf-8",
    )
    with pytest.raises(KpkResultsError, match=r"results\[1\]\.period: duplicate '2023'"):
        load_kpk_results(bad)


def test_chart_and_text_share_one_number_formatter() -> None:
    import bot.chart
    import core.report

    assert bot.chart.number is core.report.number
    assert core.report.number(72.995, "id") == "73,00"  # and the band says waspada
