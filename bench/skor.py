"""Benchmark: the `/skor` computation at 1,000 and at 100,000 completed responses.

Why: `/skor` must answer at once however many people have taken part. The
aggregates (core/aggregates.py) make its cost depend on the number of units,
groups, dimensions and items, not on the number of responses, so p95 at 100k
should stay close to p95 at 1k.

Two ways to fill the databases (the same for both sizes), see FILL_METHODS:

* ``bulk`` (default): responses, answers and respondent dimension scores are
  inserted with ``executemany``, scored and flagged with the same functions
  that ``record_completion`` calls, and every response is then added to the
  tallies by the production ``apply_response``, one response at a time. About
  twice as fast as ``record``; the burst flag is not evaluated (it would not
  fire: completions are spread over weeks).
* ``record``: per response exactly the engine's path on "Kirim":
  ``complete_response`` then ``record_completion`` (about 4 ms per response,
  so roughly 7 minutes for 100k).

Many responses share one transaction. Completion times are spread over
weeks, in order, durations are above the speeder threshold except for a few
deliberate speeders (2 %) and straight-liners (1 %): flags occur, as in real
data, without marking everything.

Run from the repository root:  .venv/bin/python bench/skor.py
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from core.aggregates import (
    apply_response,
    flag_counts,
    load_unit_aggregate,
    quality_flags,
    record_completion,
)
from core.config import PROJECT_ROOT
from core.model import AnswerValue, iso
from core.navigation import is_visible
from core.questionnaire import Question, Questionnaire, load_questionnaire
from core.scoring import (
    UnitScore,
    respondent_dimension_scores,
    respondent_index,
    score_unit,
)
from core.storage import Storage, Transaction
from core.units import load_units

QUESTIONNAIRE_PATH = PROJECT_ROOT / "surveys" / "spi.toml"
UNITS_PATH = PROJECT_ROOT / "surveys" / "units-kota-semarang.toml"
GROUP_SHARE = {"internal": 0.40, "eksternal": 0.50, "eksper": 0.10}
SPREAD = dt.timedelta(weeks=8)  # completions of one period spread over the fieldwork
BATCH = 1000  # responses per transaction while filling
PREVIOUS_SIZE = 1000  # responses in the previous period (its rows count, not its n)
SPEEDER_SHARE = 0.02  # a few flags, as in real data, but not everything flagged
STRAIGHT_SHARE = 0.01
TARGET_P95_MS = 20.0
TARGET_RATIO = 1.5
FILL_METHODS = {
    "bulk": "bulk SQL inserts + production apply_response per response",
    "record": "production record_completion per response",
}


def choose_option(question: Question, quality: float, rng: random.Random) -> str:
    """A scored answer near the unit's quality level; sometimes "tidak tahu"."""
    unscored = [o for o in question.options if o.score is None]
    if unscored and rng.random() < 0.05:
        return unscored[0].code
    wanted = rng.gauss(quality, 22.0)
    scored = [o for o in question.options if o.score is not None]
    return min(scored, key=lambda o: (abs((o.score or 0.0) - wanted), rng.random())).code


def duration(minimum: int, rng: random.Random) -> float:
    """Seconds from start to "Kirim": mostly plausible, a few speeders."""
    if rng.random() < SPEEDER_SHARE:
        return rng.uniform(20.0, max(21.0, minimum - 1.0))
    return rng.uniform(minimum + 60.0, 1500.0)


def synthetic_answers(
    questionnaire: Questionnaire, group: str, quality: float, rng: random.Random
) -> dict[str, AnswerValue]:
    """One plausible respondent: skip logic respected, answers varied (a few straight-line)."""
    straight = rng.random() < STRAIGHT_SHARE
    answers: dict[str, AnswerValue] = {}
    spec = questionnaire.group(group)
    assert spec is not None
    for screen in spec.screening:
        answers[f"screen_{screen.id}"] = next(o.code for o in screen.options if o.eligible)
    for question in questionnaire.questions_for(group):
        if not is_visible(question, answers):
            continue
        if question.dimension is not None:
            answers[question.id] = (
                question.options[0].code if straight else choose_option(question, quality, rng)
            )
        elif question.type in ("single", "yesno"):
            answers[question.id] = rng.choice(question.options).code
        elif question.type == "multi":
            picked = rng.sample(question.options, k=rng.randint(1, 2))
            answers[question.id] = [o.code for o in question.options if o in picked]
        elif question.type == "number":
            answers[question.id] = rng.randint(int(question.min_value or 0), 10)
        else:
            answers[question.id] = None if rng.random() < 0.8 else "saran singkat"
    return answers


async def fill(
    storage: Storage,
    questionnaire: Questionnaire,
    unit_codes: list[str],
    period: str,
    count: int,
    start: dt.datetime,
    rng: random.Random,
    method: str,
) -> None:
    """Insert `count` completed responses in completion order (see FILL_METHODS)."""
    quality = {code: rng.uniform(60.0, 92.0) for code in unit_codes}
    offsets = sorted(rng.uniform(0.0, SPREAD.total_seconds()) for _ in range(count))
    minimum = questionnaire.quality.min_seconds
    for first in range(0, count, BATCH):
        batch: list[Synthetic] = []
        for offset in offsets[first : first + BATCH]:
            completed = start + dt.timedelta(seconds=offset)
            group = rng.choices(list(GROUP_SHARE), list(GROUP_SHARE.values()))[0]
            unit = rng.choice(unit_codes)
            batch.append(
                Synthetic(
                    key=rng.randbytes(32).hex(),
                    group=group,
                    unit=unit,
                    started=completed - dt.timedelta(seconds=duration(minimum, rng)),
                    completed=completed,
                    answers=synthetic_answers(questionnaire, group, quality[unit], rng),
                )
            )
        async with storage.transaction() as tx:
            if method == "record":
                await _insert_recorded(tx, questionnaire, period, batch)
            else:
                await _insert_bulk(tx, questionnaire, period, batch)


@dataclass
class Synthetic:
    key: str
    group: str
    unit: str
    started: dt.datetime
    completed: dt.datetime
    answers: dict[str, AnswerValue]


def _answer_rows(response_id: int, item: Synthetic) -> list[tuple[int, str, str, str]]:
    return [
        (response_id, qid, json.dumps(value, ensure_ascii=False), iso(item.started))
        for qid, value in item.answers.items()
    ]


async def _insert_recorded(
    tx: Transaction, questionnaire: Questionnaire, period: str, batch: list[Synthetic]
) -> None:
    """Exactly the engine's path on "Kirim": complete, then record_completion."""
    for item in batch:
        response_id = await tx.create_response(
            item.key, period, item.group, item.unit, "bench", item.started
        )
        await tx.db.executemany(
            "INSERT INTO answers(response_id, question_id, value, answered_at) VALUES (?,?,?,?)",
            _answer_rows(response_id, item),
        )
        await tx.complete_response(response_id, item.completed)
        await record_completion(tx, questionnaire, response_id, item.completed)


async def _insert_bulk(
    tx: Transaction, questionnaire: Questionnaire, period: str, batch: list[Synthetic]
) -> None:
    """Rows in bulk, scored and flagged by the functions record_completion uses, then
    tallied one response at a time by the production `apply_response`."""
    row = await tx.fetchone("SELECT COALESCE(MAX(id), 0) AS last FROM responses")
    next_id = int(row["last"] if row else 0) + 1
    responses: list[tuple[object, ...]] = []
    answers: list[tuple[int, str, str, str]] = []
    scores: list[tuple[int, str, float]] = []
    counted: list[int] = []
    for response_id, item in enumerate(batch, start=next_id):
        duration = (item.completed - item.started).total_seconds()
        dimensions = respondent_dimension_scores(questionnaire, item.group, item.answers)
        flags = quality_flags(questionnaire, item.group, item.answers, duration)
        responses.append(
            (
                response_id,
                item.key,
                period,
                item.group,
                item.unit,
                iso(item.started),
                iso(item.completed),
                int(duration),
                respondent_index(questionnaire, dimensions),
                ",".join(sorted(flags)),
            )
        )
        answers += _answer_rows(response_id, item)
        scores += [(response_id, dim, score) for dim, score in dimensions.items()]
        if not (flags and questionnaire.quality.exclude_flagged):
            counted.append(response_id)
    await tx.db.executemany(
        "INSERT INTO responses(id, respondent_key, period, group_code, unit_code, status, "
        "channel, started_at, completed_at, duration_seconds, respondent_index, flags) "
        "VALUES (?, ?, ?, ?, ?, 'completed', 'bench', ?, ?, ?, ?, ?)",
        responses,
    )
    await tx.db.executemany(
        "INSERT INTO answers(response_id, question_id, value, answered_at) VALUES (?,?,?,?)",
        answers,
    )
    await tx.db.executemany(
        "INSERT INTO response_scores(response_id, dimension, score) VALUES (?, ?, ?)", scores
    )
    for response_id in counted:
        await apply_response(tx, questionnaire, response_id, +1)


async def skor_once(
    storage: Storage, questionnaire: Questionnaire, unit: str, period: str, previous: str | None
) -> tuple[UnitScore, UnitScore | None]:
    """What `/skor <unit>` computes: this period's score and the previous one if any."""
    async with storage.transaction() as tx:
        score = score_unit(questionnaire, await load_unit_aggregate(tx, period, unit))
        before = None
        if previous is not None:
            aggregate = await load_unit_aggregate(tx, previous, unit)
            if aggregate.groups:
                before = score_unit(questionnaire, aggregate)
    return score, before


async def skor_ms(
    storage: Storage, questionnaire: Questionnaire, unit: str, period: str, previous: str | None
) -> float:
    began = time.perf_counter()
    await skor_once(storage, questionnaire, unit, period, previous)
    return (time.perf_counter() - began) * 1000


async def flags_ms(storage: Storage, unit: str, period: str) -> float:
    """The admin view also counts flags; informative, outside the `/skor` target."""
    began = time.perf_counter()
    async with storage.transaction() as tx:
        await flag_counts(tx, period, unit)
    return (time.perf_counter() - began) * 1000


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


async def prepare(
    path: Path,
    questionnaire: Questionnaire,
    unit_codes: list[str],
    size: int,
    seed: int,
    method: str,
) -> Storage:
    """Open a filled database, filling it first unless it already holds `size` responses."""
    rng = random.Random(seed + size)
    period = questionnaire.period
    previous = str(int(period) - 1) if period.isdigit() else None
    storage = await Storage.open(path)
    async with storage.transaction() as tx:
        row = await tx.fetchone("SELECT COUNT(*) AS n FROM responses WHERE period = ?", (period,))
    found = int(row["n"]) if row is not None else 0
    if found == size:
        print(f"  reusing {path.name}")
    elif found:
        await storage.close()
        raise SystemExit(f"{path} holds {found:,} responses, not {size:,}: delete it first")
    else:
        began = time.perf_counter()
        start = dt.datetime(2025, 5, 1, tzinfo=dt.UTC)
        if previous is not None:
            last_year = start - dt.timedelta(days=365)
            await fill(
                storage, questionnaire, unit_codes, previous, PREVIOUS_SIZE, last_year, rng, method
            )
        await fill(storage, questionnaire, unit_codes, period, size, start, rng, method)
        print(f"  filled by {FILL_METHODS[method]} in {time.perf_counter() - began:.1f} s")
    async with storage.transaction() as tx:
        row = await tx.fetchone(
            "SELECT COUNT(*) AS n, SUM(flags != '') AS flagged, SUM(counted) AS counted "
            "FROM responses WHERE period = ? AND status = 'completed'",
            (period,),
        )
    assert row is not None
    print(
        f"  {row['n']:,} completed responses (+{PREVIOUS_SIZE:,} in period {previous}); "
        f"flagged {row['flagged'] or 0:,}, counted {row['counted']:,}"
    )
    return storage


async def measure(
    stores: dict[int, Storage],
    questionnaire: Questionnaire,
    unit_codes: list[str],
    reps: int,
    seed: int,
) -> dict[int, tuple[list[float], list[float]]]:
    """Interleaved: each repetition times the same random unit in every database, in random
    order, so load from other processes on the machine hits all sizes alike."""
    rng = random.Random(seed)
    period = questionnaire.period
    previous = str(int(period) - 1) if period.isdigit() else None
    for storage in stores.values():
        for unit in unit_codes[:20]:  # warm-up: caches, code paths
            await skor_once(storage, questionnaire, unit, period, previous)
    results: dict[int, tuple[list[float], list[float]]] = {size: ([], []) for size in stores}
    for _ in range(reps):
        unit = rng.choice(unit_codes)
        order = list(stores)
        rng.shuffle(order)
        for size in order:
            skor, flags = results[size]
            skor.append(await skor_ms(stores[size], questionnaire, unit, period, previous))
            flags.append(await flags_ms(stores[size], unit, period))
    return results


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1_000, 100_000])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20250602)
    parser.add_argument("--fill", choices=sorted(FILL_METHODS), default="bulk")
    parser.add_argument(
        "--dir", type=Path, help="keep the databases here and reuse them (default: temporary)"
    )
    args = parser.parse_args()
    questionnaire = load_questionnaire(QUESTIONNAIRE_PATH)
    unit_codes = [u.code for u in load_units(UNITS_PATH).units]
    small, large = args.sizes
    print(
        f"/skor benchmark: {len(unit_codes)} units, {len(questionnaire.groups)} groups, "
        f"{args.reps} repetitions per size on random units; fill: {FILL_METHODS[args.fill]}"
    )
    with tempfile.TemporaryDirectory(prefix="spi-bench-") as tmp:
        directory = args.dir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        stores: dict[int, Storage] = {}
        try:
            for size in (small, large):
                print(f"{size:,} responses:")
                stores[size] = await prepare(
                    directory / f"skor-{size}.sqlite3",
                    questionnaire,
                    unit_codes,
                    size,
                    args.seed,
                    args.fill,
                )
            results = await measure(stores, questionnaire, unit_codes, args.reps, args.seed)
        finally:
            for storage in stores.values():
                await storage.close()
    for size in (small, large):
        skor, flags = results[size]
        print(
            f"{size:>9,} responses  /skor: median {statistics.median(skor):.2f} ms, "
            f"p95 {p95(skor):.2f} ms   (admin flag_counts: median "
            f"{statistics.median(flags):.2f} ms, p95 {p95(flags):.2f} ms)"
        )
    p95_small, p95_large = p95(results[small][0]), p95(results[large][0])
    ratio = p95_large / p95_small
    met_p95 = p95_large <= TARGET_P95_MS
    met_ratio = ratio <= TARGET_RATIO
    print(
        f"p95 at {large:,}: {p95_large:.2f} ms (target <= {TARGET_P95_MS:g} ms: "
        f"{'met' if met_p95 else 'NOT met'}); ratio p95({large:,})/p95({small:,}) = "
        f"{ratio:.2f} (target <= {TARGET_RATIO:g}: {'met' if met_ratio else 'NOT met'})"
    )
    return 0 if met_p95 and met_ratio else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
