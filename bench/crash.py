"""Crash test under load: SIGKILL the bot at random moments, restart it, let everyone finish.

Respondents take the survey concurrently against the bot process (``python -m bot run``)
and a fake Bot API on 127.0.0.1. Several times the bot is killed with SIGKILL at a
random moment and started again on the same database. A respondent whose update went
unanswered waits for the restart (the fake delivers unconfirmed updates again, as
Telegram does), then sends /lanjut and carries on from the question shown, as a real
user would.

Afterwards the SQLite file must show: every answer the bot acknowledged (the fake
received the edit or message showing the next screen) stored with the value pressed;
no respondent with two completed responses; every respondent completed.

    python bench/crash.py [--respondents 100] [--kills N] [--latency-ms 0] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from bench.db_check import check_database
from bench.fake_api import BenchApi
from bench.process import bot_env, start_process, stop_process, tail, wait_polling
from bench.respondents import Survey, SurveyRespondent
from bench.stats import Controller, Stats

BOT_ARGS = ["-m", "bot", "run"]
FIRST_USER = 200_000_000


async def _later(delay: float, respondent: SurveyRespondent) -> None:
    await asyncio.sleep(delay)
    await respondent.run()


async def main_async(args: argparse.Namespace) -> int:
    # A killed bot drops requests half-sent; the fake's server would log each as an error.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    survey = Survey.load()
    workdir = Path(tempfile.mkdtemp(prefix="spi-crash-"))
    db_path, log_path = workdir / "crash.sqlite3", workdir / "bot.log"
    rng = random.Random(args.seed)
    kills_planned = args.kills if args.kills is not None else rng.randint(3, 5)
    api = BenchApi(latency=args.latency_ms / 1000)
    await api.start()
    stats, ctl = Stats(), Controller()
    people = [
        SurveyRespondent(api, FIRST_USER + i, survey, stats, ctl, seed=args.seed, burst=False)
        for i in range(args.respondents)
    ]
    print(
        f"{args.respondents} respondents, {kills_planned} kills planned, "
        f"latency {args.latency_ms} ms; work files in {workdir}",
        flush=True,
    )
    kills: list[str] = []
    process = start_process(BOT_ARGS, bot_env(api, db_path), log_path)
    start = time.monotonic()
    try:
        await wait_polling(api, process, log_path)
        tasks = [asyncio.create_task(_later(rng.uniform(0, 0.5), p)) for p in people]
        for _ in range(kills_planned):
            await asyncio.sleep(rng.uniform(args.min_gap, args.max_gap))
            if all(task.done() for task in tasks):
                break
            acknowledged = stats.actions
            ctl.killed()
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait)
            kills.append(
                f"kill {len(kills) + 1} at {time.monotonic() - start:5.1f} s, "
                f"after {acknowledged} acknowledged updates"
            )
            print(f"  {kills[-1]}", flush=True)
            await asyncio.sleep(rng.uniform(0.1, 1.0))  # down for a moment
            process = start_process(BOT_ARGS, bot_env(api, db_path), log_path)
            await wait_polling(api, process, log_path)
            ctl.restarted()
            print(f"    polling again at {time.monotonic() - start:5.1f} s", flush=True)
        _, pending = await asyncio.wait(tasks, timeout=args.timeout)
        for task in pending:
            task.cancel()
        if pending:
            stats.error(f"{len(pending)} respondents still running after {args.timeout:.0f} s")
    finally:
        code = await stop_process(process)
        await api.stop()
    elapsed = time.monotonic() - start
    if code not in (0, -15):
        print(f"warning: last bot exited with {code}\n{tail(log_path, 10)}", file=sys.stderr)

    check = check_database(db_path, people, exact=False)
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        completed_rows = db.execute(
            "SELECT COUNT(*) FROM responses WHERE status = 'completed'"
        ).fetchone()[0]
        duplicated_units = db.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM responses WHERE status = 'completed' "
            "GROUP BY respondent_key, period, unit_code HAVING COUNT(*) > 1)"
        ).fetchone()[0]
    resumes = sum(p.resumes for p in people)
    log_text = log_path.read_text(errors="replace")
    print()
    print(f"kills:                         {len(kills)}")
    print(f"resumes (/lanjut after a kill): {resumes}")
    print(f"acknowledged answers checked:  {check.acknowledged}")
    print(f"missing:                       {len(check.missing)}")
    print(f"stored with another value:     {len(check.wrong)}")
    print(f"duplicated responses:          {len(check.duplicates) + duplicated_units}")
    print(f"order errors:                  {len(check.order)}")
    print(f"completed/expected:            {check.completed}/{len(people)}")
    print(f"completed responses in the DB: {completed_rows}")
    print(f"stuck respondents:             {len(stats.errors)}")
    print(f"database integrity:            {integrity}")
    print(f"tracebacks in the bot's log:   {log_text.count('Traceback')}")
    print(f"run time:                      {elapsed:.1f} s")
    for problem in check.examples(10) + stats.errors[:10]:
        print(f"  {problem}")
    ok = (
        check.ok
        and not stats.errors
        and duplicated_units == 0
        and completed_rows == len(people)
        and integrity == "ok"
        and len(kills) >= min(3, kills_planned)
    )
    print("PASS" if ok else "FAIL")
    if ok and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--respondents", type=int, default=100)
    parser.add_argument("--kills", type=int, default=None, help="default: 3 to 5 at random")
    parser.add_argument("--latency-ms", type=int, default=0, help="added to every Bot API call")
    parser.add_argument("--quick", action="store_true", help="30 respondents, 3 kills")
    parser.add_argument("--seed", type=int, default=7)
    # 100 surveys take about 8 s without kills: shorter gaps land every kill mid-survey.
    parser.add_argument("--min-gap", type=float, default=1.0, help="seconds between kills, min")
    parser.add_argument("--max-gap", type=float, default=2.5, help="seconds between kills, max")
    parser.add_argument("--timeout", type=float, default=240.0, help="for everyone to finish")
    parser.add_argument("--keep", action="store_true", help="keep the database and bot log")
    args = parser.parse_args()
    if args.quick:
        if args.respondents == 100:
            args.respondents = 30
        if args.kills is None:
            args.kills = 3
        # A small run finishes in seconds: kill sooner so every kill lands mid-survey.
        args.min_gap, args.max_gap = min(args.min_gap, 0.7), min(args.max_gap, 1.5)
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
