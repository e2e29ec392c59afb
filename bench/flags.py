"""Benchmark: how well the data-quality flags catch what they claim, and what they cost.

Why: a flag that marks honest respondents costs their answers (when flagged
responses are excluded) and the admins' time; one that misses coaching lets a
unit buy its band. docs/QUALITY.md records the figures printed here.

1. Simulated populations (tests/support/quality_sim.py, seeded): honest, speeding and
   coached respondents in a shuffled stream, flagged as record_completion does.
   Printed: the false-positive rate on the honest (any flag) and the catch rate
   of the speeder flag on speeders and of the straight-lining flag on the coached.
2. Bursts: organic completions through 8-hour days at a busy counter (with and
   without its population in the questionnaire) and a coached session of 15
   staff in ten minutes.
3. Cost: record_completion at 1,000 and 20,000 completed responses of the
   group (the speeder rule needs the group's median completion time).

Run from the repository root:  .venv/bin/python -m bench.flags [--seeds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from core.aggregates import record_completion
from core.config import PROJECT_ROOT
from core.quality import FLAG_SPEEDER, FLAG_STRAIGHT, BurstWatch
from core.questionnaire import Questionnaire, load_questionnaire
from core.storage import Storage, Transaction
from tests.support.quality_sim import burst_days, simulate

MOMENT = dt.datetime(2025, 6, 2, 1, 0, tzinfo=dt.UTC)
POPULATION = {"honest": 2000, "speeding": 400, "coached": 400}


def rates(questionnaire: Questionnaire, seeds: int) -> None:
    totals: dict[str, list[float]] = {"fp": [], "speed": [], "speed_any": [], "coached": []}
    for seed in range(seeds):
        result = simulate(questionnaire, seed, POPULATION)
        totals["fp"].append(result.rate("honest"))
        totals["speed"].append(result.rate("speeding", FLAG_SPEEDER))
        totals["speed_any"].append(result.rate("speeding"))
        totals["coached"].append(result.rate("coached", FLAG_STRAIGHT))
        straight_on_honest = result.rate("honest", FLAG_STRAIGHT)
        speeder_on_honest = result.rate("honest", FLAG_SPEEDER)
        print(
            f"seed {seed}: honest flagged {result.rate('honest'):.2%} "
            f"(speeder {speeder_on_honest:.2%}, straightline {straight_on_honest:.2%}); "
            f"speeders caught {result.rate('speeding', FLAG_SPEEDER):.2%} "
            f"(any flag {result.rate('speeding'):.2%}); "
            f"coached caught {result.rate('coached', FLAG_STRAIGHT):.2%}"
        )
    print(
        f"mean over {seeds} seeds x {sum(POPULATION.values())} responses: "
        f"false positives {statistics.fmean(totals['fp']):.2%}, "
        f"speeders {statistics.fmean(totals['speed']):.2%} "
        f"(any flag {statistics.fmean(totals['speed_any']):.2%}), "
        f"coached {statistics.fmean(totals['coached']):.2%}"
    )


def bursts(questionnaire: Questionnaire) -> None:
    busy = questionnaire.model_copy(deep=True)
    cases = [
        ("counter, 1,000 surveys/day, population unknown", questionnaire, "eksternal", 1000, 0),
        ("counter, 1,000 surveys/day, 3,000 users/day known", busy, "eksternal", 1000, 0),
        ("15 of 40 staff in one room (+3/day organic)", busy, "internal", 3, 15),
        ("same, staff count unknown", questionnaire, "internal", 3, 15),
    ]
    busy.quality.population = {"dinkes": {"eksternal": 3000, "internal": 40}}
    for label, q, group, per_day, session in cases:
        organic, caught = burst_days(q, 1, "dinkes", group, per_day, days=3, session=session)
        total = per_day * 3
        print(
            f"{label}: organic flagged {organic}/{total}"
            + (f", session caught {caught}/{session}" if session else "")
        )


async def median_cost(questionnaire: Questionnaire, sizes: tuple[int, ...]) -> None:
    """record_completion (the production call) for one more response of a group that
    has ``size`` completed: the first call after start-up reads the group's
    durations, later ones use the copy in memory."""
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            storage = await Storage.open(Path(tmp) / "bench.sqlite3")
            try:
                async with storage.transaction() as tx:
                    for i in range(size):
                        rid = await new_completed(tx, questionnaire, 200 + i % 400)
                watch = BurstWatch()
                timings = []
                for i in range(51):
                    async with storage.transaction() as tx:
                        rid = await new_completed(tx, questionnaire, 300)
                        start = time.perf_counter()
                        moment = MOMENT + dt.timedelta(hours=i)
                        await record_completion(tx, questionnaire, rid, 300, moment, watch)
                        timings.append((time.perf_counter() - start) * 1000)
            finally:
                await storage.close()
        print(
            f"record_completion with {size:,} completed responses in the group: "
            f"first after start-up {timings[0]:.2f} ms, then median "
            f"{statistics.median(timings[1:]):.2f} ms, max {max(timings[1:]):.2f} ms"
        )


async def new_completed(tx: Transaction, questionnaire: Questionnaire, seconds: int) -> int:
    rid = await tx.create_response(
        uuid.uuid4().hex, questionnaire.period, "eksternal", "dinkes", "bench"
    )
    await tx.complete_response(rid, MOMENT.date(), seconds)
    return rid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 20000])
    args = parser.parse_args()
    questionnaire = load_questionnaire(PROJECT_ROOT / "surveys" / "spi.toml")
    rates(questionnaire, args.seeds)
    bursts(questionnaire)
    asyncio.run(median_cost(questionnaire, tuple(args.sizes)))


if __name__ == "__main__":
    main()
