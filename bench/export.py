"""Benchmark: `spi-bot export` and `--free-text` on a closed period of many responses.

Why: the export now draws ids, shuffles, and checks k-anonymity per unit and
group (a greedy pass over the attributes, each a count over the cell's
responses), and free text gets a regular-expression redaction pass. This
measures what that costs at a realistic size, end to end through the command.

Responses are inserted through the storage API (create, answers, complete,
record_completion), spread over the 52 units and the three groups, with a
free-text suggestion from one respondent in five; the period is then closed.

Run from the repository root:  .venv/bin/python bench/export.py [--responses N]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from bench.skor import GROUP_SHARE, QUESTIONNAIRE_PATH, UNITS_PATH, synthetic_answers
from bot.export_cli import export_command
from core.aggregates import BurstWatch, record_completion
from core.config import load_settings
from core.export import SUPPRESSED
from core.questionnaire import load_questionnaire
from core.storage import Storage
from core.units import load_units

BATCH = 500
SUGGESTION = "Pak Budi (Kasi Pelayanan) sering minta uang, hp 0812-3456-7890"


async def seed(path: Path, count: int, rng: random.Random) -> None:
    questionnaire = load_questionnaire(QUESTIONNAIRE_PATH)
    units = [u.code for u in load_units(UNITS_PATH).units]
    storage = await Storage.open(path)
    bursts = BurstWatch()
    day = dt.datetime(2025, 6, 2, 1, 0, tzinfo=dt.UTC)
    try:
        for first in range(0, count, BATCH):
            async with storage.transaction() as tx:
                for i in range(first, min(first + BATCH, count)):
                    group = rng.choices(list(GROUP_SHARE), list(GROUP_SHARE.values()))[0]
                    answers = synthetic_answers(questionnaire, group, rng.uniform(60, 92), rng)
                    text = next(
                        q.id for q in questionnaire.questions_for(group) if q.type == "text"
                    )
                    answers[text] = SUGGESTION if rng.random() < 0.2 else None
                    response_id = await tx.create_response(
                        rng.randbytes(32).hex(),
                        questionnaire.period,
                        group,
                        rng.choice(units),
                        "bench",
                    )
                    for qid, value in answers.items():
                        if value is not None:
                            await tx.put_answer(response_id, qid, value)
                    seconds = int(rng.uniform(180, 2700))
                    now = day + dt.timedelta(days=i % 40, seconds=i)
                    await tx.complete_response(response_id, now.date(), seconds)
                    await record_completion(tx, questionnaire, response_id, seconds, now, bursts)
        async with storage.transaction() as tx:
            await tx.execute(
                "INSERT INTO periods(period, closed_on, purge_after) VALUES (?, ?, ?)",
                (questionnaire.period, "2025-08-01", "2025-11-01"),
            )
    finally:
        await storage.close()


async def timed(label: str, run: object) -> float:
    began = time.perf_counter()
    assert await run == 0  # type: ignore[misc]
    seconds = time.perf_counter() - began
    print(f"{label:<28} {seconds:6.2f} s")
    return seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--responses", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = root / "spi.sqlite3"
        began = time.perf_counter()
        await seed(db, args.responses, random.Random(7))
        print(f"seeded {args.responses} responses in {time.perf_counter() - began:.1f} s")
        settings = load_settings(database_path=db, spi_secret_key=None)
        await timed("export xlsx", export_command(settings, "xlsx", root / "e.xlsx"))
        await timed("export csv", export_command(settings, "csv", root / "csv"))
        await timed(
            "free text csv", export_command(settings, "csv", None, free_text=root / "t.csv")
        )
        print(f"xlsx size {os.path.getsize(root / 'e.xlsx') / 1e6:.1f} MB")
        suppression(root / "csv" / "jawaban.csv")


def suppression(path: Path) -> None:
    """How much the k rule withholds: share of suppressed values per kind of column."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_response = {r["response_id"]: r for r in rows}
    for column in ("completed_on", "duration", "flags"):
        hidden = sum(r[column] == SUPPRESSED for r in by_response.values())
        print(f"{column:<28} {hidden / len(by_response):6.1%} of responses suppressed")
    profile = [r for r in rows if not r["dimension"]]
    hidden = sum(r["value"] == SUPPRESSED for r in profile)
    print(f"{'profile values':<28} {hidden / max(1, len(profile)):6.1%} suppressed")


if __name__ == "__main__":
    asyncio.run(main())
