"""Benchmark: the `/skor` computation at 1,000 and at 100,000 completed responses.

Why: `/skor` must answer at once however many people have taken part. The
aggregates (core/aggregates.py) make its cost depend on the number of units,
groups, dimensions and items, not on the number of responses, so p95 at 100k
should stay close to p95 at 1k.

It times the production call, :meth:`core.desk.Desk.unit_report`: an
official's `/skor` (the target) and an admin's `/skor <unit>` (which also counts
data-quality flags), each one read transaction on the read-only connection.

The databases are filled through the storage API, exactly the engine's path on
"Kirim" for every response: ``create_response``, ``put_answer`` per answer,
``complete_response`` and ``record_completion`` (about 4 ms per response, so
100k takes minutes; ``--sizes 200 2000`` is a quick run). Officials are
registered through the desk's own invites.

Completions are spread over weeks, durations are above the speeder threshold
except for a few deliberate speeders (2 %) and straight-liners (1 %): flags
occur, as in real data, without marking everything.

Run from the repository root:  .venv/bin/python bench/skor.py
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from core.aggregates import BurstWatch, record_completion
from core.config import PROJECT_ROOT, load_settings
from core.desk import Caller, Desk, InviteCreated, Registered, UnitView
from core.model import AnswerValue
from core.navigation import is_visible
from core.questionnaire import Question, Questionnaire, load_questionnaire
from core.storage import Storage, Transaction
from core.units import UnitRegistry, load_units

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
ADMIN = 1  # the benchmark's admin; officials are OFFICIAL_BASE + unit index
OFFICIAL_BASE = 1000
BENCH_KEY = b"bench-secret-key-that-is-long-enough-0123456789"


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
) -> None:
    """Add `count` completed responses in completion order, as the engine does."""
    quality = {code: rng.uniform(60.0, 92.0) for code in unit_codes}
    offsets = sorted(rng.uniform(0.0, SPREAD.total_seconds()) for _ in range(count))
    minimum = questionnaire.quality.min_seconds
    bursts = BurstWatch()
    for first in range(0, count, BATCH):
        async with storage.transaction() as tx:
            for offset in offsets[first : first + BATCH]:
                completed = start + dt.timedelta(seconds=offset)
                group = rng.choices(list(GROUP_SHARE), list(GROUP_SHARE.values()))[0]
                unit = rng.choice(unit_codes)
                answers = synthetic_answers(questionnaire, group, quality[unit], rng)
                seconds = int(duration(minimum, rng))
                await complete(
                    tx, questionnaire, period, group, unit, answers, seconds, completed, bursts, rng
                )


async def complete(
    tx: Transaction,
    questionnaire: Questionnaire,
    period: str,
    group: str,
    unit: str,
    answers: dict[str, AnswerValue],
    seconds: int,
    completed: dt.datetime,
    bursts: BurstWatch,
    rng: random.Random,
) -> None:
    """The engine's path on "Kirim", through the storage API."""
    response_id = await tx.create_response(
        rng.randbytes(32).hex(), period, group, unit, "bench", questionnaire_version="bench"
    )
    for question_id, value in answers.items():
        await tx.put_answer(response_id, question_id, value)
    await tx.complete_response(response_id, completed.date(), seconds)
    await record_completion(tx, questionnaire, response_id, seconds, completed, bursts)


def make_desk(storage: Storage, questionnaire: Questionnaire, units: UnitRegistry) -> Desk:
    settings = load_settings(
        spi_secret_key=BENCH_KEY.decode(), admin_ids=[ADMIN], survey_period=questionnaire.period
    )
    return Desk(
        settings=settings,
        questionnaire=questionnaire,
        units=units,
        storage=storage,
        secret_key=BENCH_KEY,
    )


async def register_officials(desk: Desk, unit_codes: list[str]) -> None:
    """One official per unit, through the desk's own invites."""
    for index, code in enumerate(unit_codes):
        invite = await desk.create_invite(Caller("bench", ADMIN), code)
        assert isinstance(invite, InviteCreated), invite
        official = Caller("bench", OFFICIAL_BASE + index)
        assert isinstance(await desk.redeem_invite(official, invite.code), Registered)


async def skor_ms(desk: Desk, caller: Caller, query: str = "") -> float:
    """One production `/skor`: Desk.unit_report (render and send are not timed)."""
    began = time.perf_counter()
    view = await desk.unit_report(caller, query)
    elapsed = (time.perf_counter() - began) * 1000
    assert isinstance(view, UnitView), view
    return elapsed


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


async def prepare(
    path: Path,
    questionnaire: Questionnaire,
    units: UnitRegistry,
    size: int,
    seed: int,
) -> Desk:
    """A desk on a filled database, filling it first unless it already holds `size` responses."""
    rng = random.Random(seed + size)
    unit_codes = [u.code for u in units.units]
    period = questionnaire.period
    previous = str(int(period) - 1) if period.isdigit() else None
    storage = await Storage.open(path)
    desk = make_desk(storage, questionnaire, units)
    async with storage.read() as tx:
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
            await fill(storage, questionnaire, unit_codes, previous, PREVIOUS_SIZE, last_year, rng)
        await fill(storage, questionnaire, unit_codes, period, size, start, rng)
        await register_officials(desk, unit_codes)
        print(f"  filled through the storage API in {time.perf_counter() - began:.1f} s")
    async with storage.read() as tx:
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
    return desk


async def measure(
    desks: dict[int, Desk], unit_codes: list[str], reps: int, seed: int
) -> dict[int, tuple[list[float], list[float]]]:
    """Interleaved: each repetition times the same random unit in every database, in random
    order, so load from other processes on the machine hits all sizes alike."""
    rng = random.Random(seed)
    for desk in desks.values():
        for index in range(min(20, len(unit_codes))):  # warm-up: caches, code paths
            await skor_ms(desk, Caller("bench", OFFICIAL_BASE + index))
    results: dict[int, tuple[list[float], list[float]]] = {size: ([], []) for size in desks}
    for _ in range(reps):
        index = rng.randrange(len(unit_codes))
        order = list(desks)
        rng.shuffle(order)
        for size in order:
            official, admin = results[size]
            desk = desks[size]
            official.append(await skor_ms(desk, Caller("bench", OFFICIAL_BASE + index)))
            admin.append(await skor_ms(desk, Caller("bench", ADMIN), unit_codes[index]))
    return results


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[1_000, 100_000])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20250602)
    parser.add_argument(
        "--dir", type=Path, help="keep the databases here and reuse them (default: temporary)"
    )
    args = parser.parse_args()
    questionnaire = load_questionnaire(QUESTIONNAIRE_PATH)
    units = load_units(UNITS_PATH)
    unit_codes = [u.code for u in units.units]
    small, large = args.sizes
    print(
        f"/skor benchmark (Desk.unit_report): {len(unit_codes)} units, "
        f"{len(questionnaire.groups)} groups, {args.reps} repetitions per size on random units"
    )
    with tempfile.TemporaryDirectory(prefix="spi-bench-") as tmp:
        directory = args.dir or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        desks: dict[int, Desk] = {}
        try:
            for size in (small, large):
                print(f"{size:,} responses:")
                desks[size] = await prepare(
                    directory / f"skor-{size}.sqlite3", questionnaire, units, size, args.seed
                )
            results = await measure(desks, unit_codes, args.reps, args.seed)
        finally:
            for desk in desks.values():
                await desk.storage.close()
    for size in (small, large):
        skor, admin = results[size]
        print(
            f"{size:>9,} responses  official /skor: median {statistics.median(skor):.2f} ms, "
            f"p95 {p95(skor):.2f} ms   (admin /skor <unit>, with flags: median "
            f"{statistics.median(admin):.2f} ms, p95 {p95(admin):.2f} ms)"
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
