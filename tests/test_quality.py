"""Data-quality flags that catch what they claim, and the admins' review of them."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sqlite3
import subprocess
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

import pytest

from core.aggregates import (
    ReviewError,
    apply_response,
    load_unit_aggregate,
    review_flag,
)
from core.model import AnswerValue, iso
from core.quality import (
    FLAG_BURST,
    FLAG_SPEEDER,
    FLAG_STRAIGHT,
    BurstWatch,
    burst_threshold,
    flag_counts,
    flagged_responses,
    nonresponse_rates,
    quality_flags,
    reading_floor,
    speeder_threshold,
    straight_lined,
)
from core.questionnaire import Question, Questionnaire
from core.storage import Storage
from tests.conftest import SECRET
from tests.support.bot_process import run_cli
from tests.support.quality_sim import burst_days, coached, simulate, walk
from tests.support.responses import MOMENT, complete


def flags_of(db_path: Path, response_id: int) -> set[str]:
    with closing(sqlite3.connect(db_path)) as db:
        (flags,) = db.execute("SELECT flags FROM responses WHERE id = ?", (response_id,)).fetchone()
    return set(filter(None, str(flags).split(",")))


def answers_by(
    questionnaire: Questionnaire, group: str, pick: str, seed: int = 1
) -> dict[str, AnswerValue]:
    """Every scored item answered the same way: best, worst, first, middle or tt."""

    def choose(question: Question, rng: random.Random) -> AnswerValue:
        scored = [o for o in question.options if o.score is not None]
        if pick == "best":
            return max(scored, key=lambda o: o.score or 0.0).code
        if pick == "first":
            return question.options[0].code
        if pick == "middle":
            return scored[len(scored) // 2].code
        if pick == "tt":
            return "tt" if question.option("tt") else "tm"
        raise ValueError(pick)

    return walk(questionnaire, group, choose, random.Random(seed))


# -- simulated populations -------------------------------------------------------------


def test_simulated_populations_honest_speeding_coached(questionnaire: Questionnaire) -> None:
    rates = simulate(
        questionnaire, seed=2025, population={"honest": 1000, "speeding": 200, "coached": 200}
    )
    assert rates.rate("honest") <= 0.01  # any flag: the false-positive rate
    assert rates.rate("speeding", FLAG_SPEEDER) >= 0.95
    assert rates.rate("coached", FLAG_STRAIGHT) == 1.0


def test_simulated_bursts_scale_with_population(questionnaire: Questionnaire) -> None:
    busy = questionnaire.model_copy(deep=True)
    # a counter with a QR code: 3,000 service users a day, a third fill in the survey
    assert burst_days(busy, 7, "dinkes", "eksternal", per_day=1000, days=3)[0] > 0
    busy.quality.population = {"dinkes": {"eksternal": 3000, "internal": 40}}
    assert burst_days(busy, 7, "dinkes", "eksternal", per_day=1000, days=3) == (0, 0)
    # 15 of 40 staff filling in together in one room is a burst; the trickle is not
    assert burst_days(busy, 7, "dinkes", "internal", per_day=3, days=5, session=15) == (0, 15)


# -- speeders ---------------------------------------------------------------------------


def test_speeder_floor_follows_the_words_of_each_group(questionnaire: Questionnaire) -> None:
    internal = reading_floor(questionnaire, "internal")
    eksternal = reading_floor(questionnaire, "eksternal")
    assert internal > 1.5 * eksternal  # 31 questions against 27, many of them short
    assert eksternal >= questionnaire.quality.min_seconds
    answers = answers_by(questionnaire, "internal", "middle")
    just_under = quality_flags(questionnaire, "internal", answers, internal - 1)
    assert just_under == {FLAG_SPEEDER}
    assert quality_flags(questionnaire, "eksternal", answers, internal - 1) == set()
    # once enough responses exist, half the group's median decides
    durations = [400] * questionnaire.quality.median_after
    assert speeder_threshold(questionnaire, "eksternal", durations) == 200
    assert speeder_threshold(questionnaire, "eksternal", durations[:-1]) == eksternal


async def test_speeders_against_the_group_median_in_the_database(
    questionnaire: Questionnaire, storage: Storage, db_path: Path
) -> None:
    answers = answers_by(questionnaire, "eksternal", "middle")
    internal_answers = answers_by(questionnaire, "internal", "middle")
    # before enough responses: the reading floor (about a minute for service users)
    early = await complete(storage, questionnaire, "eksternal", answers, seconds=150)
    assert flags_of(db_path, early) == set()
    for _ in range(questionnaire.quality.median_after):
        await complete(storage, questionnaire, "eksternal", answers, seconds=400)
    late = await complete(storage, questionnaire, "eksternal", answers, seconds=150)
    assert flags_of(db_path, late) == {FLAG_SPEEDER}  # under half of 400
    # the staff's median is their own: no staff response yet, so their floor applies
    staff = await complete(storage, questionnaire, "internal", internal_answers, seconds=150)
    assert flags_of(db_path, staff) == set()
    # speeders do not drag the median down for the next respondent, whether the
    # durations come from the database (after a restart) or from memory
    watch = BurstWatch()
    for _ in range(3 * questionnaire.quality.median_after):
        await complete(storage, questionnaire, "eksternal", answers, seconds=100, bursts=watch)
    for bursts in (watch, BurstWatch()):
        again = await complete(storage, questionnaire, "eksternal", answers, 150, bursts=bursts)
        assert FLAG_SPEEDER in flags_of(db_path, again)  # (a burst too: same minute)
    # honest, slower responses raise the median kept in memory: 60 more at 800 s
    for _ in range(2 * questionnaire.quality.median_after):
        await complete(storage, questionnaire, "eksternal", answers, seconds=800, bursts=watch)
    for bursts in (watch, BurstWatch()):
        slow = await complete(storage, questionnaire, "eksternal", answers, 250, bursts=bursts)
        assert FLAG_SPEEDER in flags_of(db_path, slow)  # median now 800: under 400


# -- straight-lining --------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["internal", "eksternal", "eksper"])
def test_straight_lining_flags_inconsistency_not_honesty(
    questionnaire: Questionnaire, group: str
) -> None:
    def flagged(answers: Mapping[str, AnswerValue]) -> bool:
        return straight_lined(questionnaire, group, answers)

    assert not flagged(answers_by(questionnaire, group, "best"))  # all-best, read properly
    assert not flagged(answers_by(questionnaire, group, "tt"))  # "tidak tahu" throughout
    assert not flagged(answers_by(questionnaire, group, "middle"))  # neutral throughout
    assert flagged(answers_by(questionnaire, group, "first"))  # the same column throughout
    coached_answers = coached(questionnaire, group, random.Random(3)).answers
    assert flagged(coached_answers)  # "Tidak pernah + Setuju"
    # without the reverse-keyed items, the same pattern would be indistinguishable
    reverse = [q.id for q in questionnaire.questions_for(group) if q.scale == "setuju_terbalik"]
    assert reverse
    assert not flagged({k: v for k, v in coached_answers.items() if k not in reverse})


# -- bursts -------------------------------------------------------------------------------------


async def test_bursts_count_per_group_and_scale_with_population(
    questionnaire: Questionnaire, storage: Storage, db_path: Path
) -> None:
    rules = questionnaire.quality
    assert burst_threshold(rules, "dinkes", "internal") == rules.burst_base["internal"]
    staff = answers_by(questionnaire, "internal", "middle")
    users = answers_by(questionnaire, "eksternal", "middle")
    watch = BurstWatch()
    ids = []
    # 9 staff and 9 service users in ten minutes: neither group reaches its bar
    for i in range(9):
        when = MOMENT + dt.timedelta(seconds=60 * i)
        ids.append(
            await complete(storage, questionnaire, "internal", staff, when=when, bursts=watch)
        )
        ids.append(
            await complete(storage, questionnaire, "eksternal", users, when=when, bursts=watch)
        )
    assert all(flags_of(db_path, rid) == set() for rid in ids)
    # the tenth staff member makes a burst of the ten staff, not of the users
    tenth = await complete(
        storage,
        questionnaire,
        "internal",
        staff,
        when=MOMENT + dt.timedelta(seconds=590),
        bursts=watch,
    )
    flagged = {rid for rid in [*ids, tenth] if FLAG_BURST in flags_of(db_path, rid)}
    assert flagged == {*ids[0::2], tenth}

    busy = questionnaire.model_copy(deep=True)
    busy.quality.population = {"pasar": {"eksternal": 1500}}
    assert burst_threshold(busy.quality, "pasar", "eksternal") == 150
    assert burst_threshold(busy.quality, "kecil", "eksternal") == rules.burst_base["eksternal"]
    watch = BurstWatch()
    crowd = [
        await complete(
            storage,
            busy,
            "eksternal",
            users,
            unit="pasar",
            bursts=watch,
            when=MOMENT + dt.timedelta(seconds=15 * i),
        )
        for i in range(40)
    ]
    assert all(flags_of(db_path, rid) == set() for rid in crowd)


# -- review -----------------------------------------------------------------------------------


async def test_unflag_with_a_reason_restores_the_contribution_and_is_logged(
    questionnaire: Questionnaire, storage: Storage, db_path: Path
) -> None:
    strict = questionnaire.model_copy(deep=True)
    strict.quality.exclude_flagged = True
    honest = answers_by(strict, "eksternal", "middle")
    for _ in range(5):
        await complete(storage, strict, "eksternal", honest)
    fast = await complete(storage, strict, "eksternal", honest, seconds=10)
    line = await complete(storage, strict, "eksternal", answers_by(strict, "eksternal", "first"))
    with closing(sqlite3.connect(db_path)) as db:
        assert db.execute("SELECT COUNT(*) FROM audit_log").fetchone() == (0,)  # no times
    async with storage.transaction() as tx:
        before = await load_unit_aggregate(tx, strict.period, "dinkes")
        listed = await flagged_responses(tx, strict.period, "dinkes")
    assert before.groups["eksternal"].n == 5
    assert {(f.id, tuple(f.flags), f.counted) for f in listed} == {
        (fast, (FLAG_SPEEDER,), False),
        (line, (FLAG_STRAIGHT,), False),
    }
    review_time = MOMENT + dt.timedelta(days=3)
    async with storage.transaction() as tx:
        with pytest.raises(ReviewError, match="reason"):
            await review_flag(tx, strict, fast, "unflag", "admin:1", "  ", review_time)
        kept = await review_flag(
            tx, strict, line, "keep", "admin:1", "sama persis dengan 9 lainnya", review_time
        )
        cleared = await review_flag(
            tx, strict, fast, "unflag", "admin:1", "pegawai loket, dicek langsung", review_time
        )
        with pytest.raises(ReviewError, match="no flag"):
            await review_flag(tx, strict, fast, "unflag", "admin:1", "lagi", review_time)
        after = await load_unit_aggregate(tx, strict.period, "dinkes")
        counts = await flag_counts(tx, strict.period, "dinkes")
        await apply_response(tx, strict, fast, +1)  # idempotent: still counted once
        again = await load_unit_aggregate(tx, strict.period, "dinkes")
    assert (kept, cleared) == ([FLAG_STRAIGHT], [FLAG_SPEEDER])
    assert after.groups["eksternal"].n == 6 and again.groups["eksternal"].n == 6
    assert counts == {FLAG_STRAIGHT: 1}
    assert flags_of(db_path, fast) == set() and flags_of(db_path, line) == {FLAG_STRAIGHT}
    with closing(sqlite3.connect(db_path)) as db:
        log = db.execute("SELECT at, actor, action, detail FROM audit_log ORDER BY id").fetchall()
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("DELETE FROM audit_log")
    # the time of the review, never of the answers
    assert [(at, actor, action) for at, actor, action, _ in log] == [
        (iso(review_time), "admin:1", "flag.keep"),
        (iso(review_time), "admin:1", "flag.unflag"),
    ]
    assert json.loads(log[1][3]) == {
        "response": fast,
        "flags": [FLAG_SPEEDER],
        "reason": "pegawai loket, dicek langsung",
    }


# -- "tidak tahu" and "tidak ingin menjawab" per item, and the commands --------------------------


async def test_nonresponse_rates_per_item(
    questionnaire: Questionnaire, storage: Storage, db_path: Path
) -> None:
    base = answers_by(questionnaire, "eksternal", "middle")
    for i in range(10):
        answers = dict(base)
        answers["ex_diminta"] = "tt" if i < 3 else ("tm" if i < 5 else "tidak_pernah")
        answers["ex_beri"] = "tm" if i == 0 else "tidak"
        await complete(storage, questionnaire, "eksternal", answers)
    async with storage.transaction() as tx:
        rates = await nonresponse_rates(tx, questionnaire, questionnaire.period, "dinkes")
        elsewhere = await nonresponse_rates(tx, questionnaire, questionnaire.period, "bapenda")
    diminta = rates["ex_diminta"]
    assert (diminta.n, diminta.dont_know, diminta.no_answer) == (10, 3, 2)
    assert diminta.share(diminta.dont_know) == 0.3
    assert (rates["ex_beri"].n, rates["ex_beri"].no_answer) == (10, 1)
    assert rates["in_promosi"].n == 0 and elsewhere["ex_diminta"].n == 0
    assert "ex_sebagai" not in rates  # a profile question offers neither

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "SPI_"))}
    env.update(DATABASE_PATH=str(db_path), SPI_SECRET_KEY=SECRET.decode())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(env, *args, timeout=60)

    table = run("item-rates", "--unit", "dinkes")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("ex_diminta "))
    assert row.split()[2:] == ["10", "30.0", "%", "20.0", "%"]
    unknown = run("item-rates", "--unit", "atlantis")
    assert unknown.returncode == 1 and "unknown unit 'atlantis'" in unknown.stderr

    fast = await complete(storage, questionnaire, "eksternal", base, seconds=5)
    listed = run("flags", "list")
    assert listed.returncode == 0 and str(fast) in listed.stdout and FLAG_SPEEDER in listed.stdout
    missing = run("flags", "unflag", str(fast))
    assert missing.returncode == 2 and "--reason" in missing.stderr
    done = run("flags", "unflag", str(fast), "--reason", "diperiksa: responden tunanetra")
    assert done.returncode == 0, done.stderr
    assert f"response {fast}: unflagged (speeder)" in done.stdout
    assert flags_of(db_path, fast) == set()
    with closing(sqlite3.connect(db_path)) as db:
        (action, detail) = db.execute("SELECT action, detail FROM audit_log").fetchone()
    assert action == "flag.unflag" and "tunanetra" in detail
    twice = run("flags", "unflag", str(fast), "--reason", "lagi")
    assert twice.returncode == 1 and twice.stderr.count("\n") == 1  # one clear line
