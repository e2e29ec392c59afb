"""Disclosure control, attacked: a unit official tries to recover one colleague's answers.

The official sees only what `/skor` publishes (core.publish.published_unit_score),
and is given more than the text shows: every published figure unrounded and the
exact number of respondents. Respondents are recorded through the production
path (``record_completion``, as the engine does on "Kirim"). The scale's step is
25 points (100, 75, 50, 25, 0); an attack succeeds if it recovers a person's
score to within that step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

import pytest

from core.aggregates import apply_response
from core.migrations import MIGRATIONS, V7_INDEX
from core.model import AnswerValue
from core.publish import published_city_index, published_unit_score, published_unit_scores
from core.questionnaire import Questionnaire, load_questionnaire
from core.report import UnitReport, render_unit
from core.scoring import K_ANONYMITY, UnitScore
from core.storage import Storage, Transaction, _statements
from core.units import Unit
from tests.support.responses import complete

STEP = 25.0
UNIT = Unit(code="dinkes", name="Dinas Kesehatan", kind="dinas")
SCORE_CODE = {100.0: "never", 75.0: "rare", 50.0: "some", 25.0: "often", 0.0: "always"}

SURVEY = """
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
title = { id = "Pegawai", en = "Staff" }
description = { id = "Pegawai", en = "Staff" }
weight = 0.35
min_sample = 5
target = 30

[[groups]]
code = "eksternal"
title = { id = "Pengguna", en = "Users" }
description = { id = "Pengguna", en = "Users" }
weight = 0.45
min_sample = 5
target = 30

[[groups]]
code = "eksper"
title = { id = "Ahli", en = "Experts" }
description = { id = "Ahli", en = "Experts" }
weight = 0.20
min_sample = 5
target = 8

[[dimensions]]
code = "transparansi"
title = { id = "Transparansi", en = "Transparency" }
groups = ["internal", "eksternal", "eksper"]

[[dimensions]]
code = "integritas"
title = { id = "Integritas", en = "Integrity" }
groups = ["internal", "eksternal", "eksper"]

[[dimensions]]
code = "pbj"
title = { id = "Pengadaan", en = "Procurement" }
groups = ["internal"]

[[questions]]
id = "t1"
type = "single"
scale = "freq"
groups = ["internal", "eksternal", "eksper"]
dimension = "transparansi"
text = { id = "Butir t1", en = "Item t1" }

[[questions]]
id = "i1"
type = "single"
scale = "freq"
groups = ["internal", "eksternal", "eksper"]
dimension = "integritas"
text = { id = "Butir i1", en = "Item i1" }

[[questions]]
id = "p1"
type = "single"
scale = "freq"
groups = ["internal"]
dimension = "pbj"
text = { id = "Butir p1", en = "Item p1" }

[[questions]]
id = "p2"
type = "single"
scale = "freq"
groups = ["internal"]
dimension = "pbj"
text = { id = "Butir p2", en = "Item p2" }
"""


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory) -> Questionnaire:
    path = tmp_path_factory.mktemp("disclosure") / "survey.toml"
    path.write_text(SURVEY, encoding="utf-8")
    return load_questionnaire(path)


def answers(**scores: float | None) -> dict[str, AnswerValue]:
    """Item scores as answers; an item not given (or None) is "tidak tahu"."""
    return {
        qid: ("tt" if scores.get(qid) is None else SCORE_CODE[scores[qid] or 0.0])
        for qid in ("t1", "i1", "p1", "p2")
    }


async def submit(storage: Storage, survey: Questionnaire, given: Mapping[str, AnswerValue]) -> int:
    return await complete(storage, survey, "internal", given, unit=UNIT.code)


async def official_reads(storage: Storage, survey: Questionnaire) -> UnitScore:
    """What `/skor` shows the unit's official."""
    async with storage.transaction() as tx:
        return await read(tx, survey)


async def read(tx: Transaction, survey: Questionnaire) -> UnitScore:
    return await published_unit_score(tx, survey, survey.period, UNIT.code)


def shown_dimensions(score: UnitScore) -> dict[str, float]:
    return {d.code: d.score for d in score.dimensions if d.score is not None}


def staff_answers(i: int) -> dict[str, AnswerValue]:
    """Colleagues without procurement duties: high scores, "tidak tahu" on procurement."""
    return answers(t1=100.0 if i % 2 else 75.0, i1=100.0, p1=None, p2=None)


# -- (a) subtraction through a hidden dimension ------------------------------------------


def subtract_hidden_dimension(score: UnitScore) -> float | None:
    """The attack: the group index is documented as the mean of the dimensions with data;
    the shown dimensions are known, so the one hidden dimension is what remains."""
    group = next(g for g in score.groups if g.code == "internal")
    if group.index is None:
        return None
    shown = shown_dimensions(score)
    return 3 * group.index - sum(shown.values())


async def lone_buyer_world(tmp_path: Path, survey: Questionnaire, pbj: float) -> UnitScore:
    storage = await Storage.open(tmp_path / f"pbj-{pbj}.sqlite3")
    try:
        for i in range(4):
            await submit(storage, survey, staff_answers(i))
        # the one colleague on the procurement committee also answers p1 and p2
        await submit(storage, survey, answers(t1=100.0, i1=100.0, p1=pbj, p2=pbj))
        score = await official_reads(storage, survey)
    finally:
        await storage.close()
    return score


async def test_a_hidden_dimension_cannot_be_recovered_by_subtraction(
    tmp_path: Path, survey: Questionnaire
) -> None:
    true_pbj = 25.0
    score = await lone_buyer_world(tmp_path, survey, true_pbj)
    assert score.shown, "the attack needs a shown group"
    assert "pbj" not in shown_dimensions(score)  # hidden in the breakdown (1 < 5)
    recovered = subtract_hidden_dimension(score)
    assert recovered is not None
    assert abs(recovered - true_pbj) >= STEP, f"recovered {recovered}, true {true_pbj}"
    # and nothing shown depends on it: the same colleague answering 100 changes no figure
    other = await lone_buyer_world(tmp_path, survey, 100.0)
    assert other.model_dump() == score.model_dump()


# -- (b) differencing across one submission ---------------------------------------------


async def test_b_one_submission_cannot_be_recovered_by_differencing(
    storage: Storage, survey: Questionnaire
) -> None:
    for i in range(10):
        await submit(storage, survey, staff_answers(i))
    before = await official_reads(storage, survey)
    newcomer = {"transparansi": 0.0, "integritas": 25.0}
    await submit(storage, survey, answers(t1=0.0, i1=25.0))
    after = await official_reads(storage, survey)

    # the attack: n goes from 10 to 11, so 11 · after − 10 · before is the newcomer
    dims_before, dims_after = shown_dimensions(before), shown_dimensions(after)
    assert set(dims_before) == {"transparansi", "integritas"}
    for code, true in newcomer.items():
        recovered = 11 * dims_after[code] - 10 * dims_before[code]
        assert abs(recovered - true) >= STEP, f"{code}: recovered {recovered}, true {true}"
    assert before.index is not None and after.index is not None
    recovered_index = 11 * after.index - 10 * before.index
    true_index = (0.0 + 25.0) / 2
    assert abs(recovered_index - true_index) >= STEP, f"index: recovered {recovered_index}"
    # the newcomer's answers move nothing until k informative changes have accumulated
    assert after.model_dump() == before.model_dump()


async def test_b_figures_move_after_k_changes_and_then_reveal_only_a_mean_of_k(
    storage: Storage, survey: Questionnaire
) -> None:
    for i in range(10):
        await submit(storage, survey, staff_answers(i))
    before = await official_reads(storage, survey)
    newcomers = [0.0, 25.0, 50.0, 0.0, 25.0]
    for j, value in enumerate(newcomers):
        await submit(storage, survey, answers(t1=value, i1=value))
        after = await official_reads(storage, survey)
        moved = after.model_dump() != before.model_dump()
        assert moved == (j + 1 == K_ANONYMITY), j
    # what differencing now gives is the mean of the five newcomers, nobody's own score
    shown_after, shown_before = shown_dimensions(after), shown_dimensions(before)
    recovered = (15 * shown_after["transparansi"] - 10 * shown_before["transparansi"]) / 5
    assert recovered == pytest.approx(sum(newcomers) / len(newcomers))
    # ranges, never exact counts: 10 → 15 both read "10–19"
    report = render_unit(UnitReport(unit=UNIT, score=after), survey, "en")
    assert "n 10–19" in report and "n=15" not in report and "15/" not in report


async def test_b_a_flagged_and_excluded_response_counts_as_a_change(
    storage: Storage, survey: Questionnaire
) -> None:
    ids = [await submit(storage, survey, staff_answers(i)) for i in range(10)]
    before = await official_reads(storage, survey)
    async with storage.transaction() as tx:
        for response_id in ids[:4]:
            await apply_response(tx, survey, response_id, -1)
        assert (await read(tx, survey)).model_dump() == before.model_dump()
        await apply_response(tx, survey, ids[4], -1)
        after = await read(tx, survey)
    assert after.model_dump() != before.model_dump()
    assert next(g.n for g in after.groups if g.code == "internal") == 5


# -- (c) "tidak tahu" accounts do not make a group --------------------------------------


async def test_c_four_dont_know_accounts_and_one_person_are_not_a_group(
    storage: Storage, survey: Questionnaire
) -> None:
    for _ in range(4):
        await submit(storage, survey, answers())  # "tidak tahu" throughout
    await submit(storage, survey, answers(t1=25.0, i1=50.0, p1=0.0, p2=0.0))
    score = await official_reads(storage, survey)
    group = next(g for g in score.groups if g.code == "internal")
    assert not group.shown and group.index is None and group.ci is None
    assert score.index is None and score.corrected is None and not score.shown
    assert shown_dimensions(score) == {} and score.priorities == []
    text = render_unit(UnitReport(unit=UNIT, score=score), survey, "en")
    assert not any(figure in text for figure in ("25.00", "50.00", "37.50"))


# -- upgrading a database that has tallies -----------------------------------------------


async def test_an_existing_database_publishes_its_tallies_once_at_the_upgrade(
    tmp_path: Path, survey: Questionnaire
) -> None:
    path = tmp_path / "before.sqlite3"
    before = MIGRATIONS.index(V7_INDEX)
    with closing(sqlite3.connect(path)) as db:
        for script in MIGRATIONS[:before]:
            for statement in _statements(script):
                db.execute(statement)
        db.execute(
            "INSERT INTO agg_group(period, unit_code, group_code, n, n_indexed, sum_index, "
            "sumsq_index) VALUES ('2025', 'dinkes', 'internal', 7, 6, 0, 0)"
        )
        db.executemany(
            "INSERT INTO agg_dimension(period, unit_code, group_code, dimension, n, total) "
            "VALUES ('2025', 'dinkes', 'internal', ?, ?, ?)",
            [("transparansi", 6, 480.0), ("integritas", 6, 540.0), ("pbj", 1, 25.0)],
        )
        db.execute(f"PRAGMA user_version = {before}")
        db.commit()
    storage = await Storage.open(path)
    try:
        score = await official_reads(storage, survey)
    finally:
        await storage.close()
    # (480 + 540) / (6 + 6); pbj (1 < 5) left out; no interval until republished
    assert score.index == 85.0 and score.ci is None
    assert next(g.n for g in score.groups if g.code == "internal") == 6
    assert shown_dimensions(score) == {"transparansi": 80.0, "integritas": 90.0}


async def test_the_city_index_pools_published_tallies_only(
    storage: Storage, survey: Questionnaire
) -> None:
    for unit, level in (("dinkes", 100.0), ("disdik", 50.0)):
        for _ in range(5):
            await complete(storage, survey, "internal", answers(t1=level, i1=level), unit=unit)
    await complete(storage, survey, "internal", answers(t1=0.0, i1=0.0), unit="disdik")
    async with storage.transaction() as tx:
        city = await published_city_index(tx, survey, survey.period, ["dinkes", "disdik"])
        scores = await published_unit_scores(tx, survey, survey.period, ["dinkes", "disdik"])
    # pooled: (5 · 100 + 5 · 50) per dimension over 10 people; the sixth at disdik is
    # not published yet (1 change < 5), so it is in neither figure
    assert city == 75.0
    assert (scores["dinkes"].index, scores["disdik"].index) == (100.0, 50.0)
