"""Hostile input at scale: ≥ 10,000 random updates against the real bot.

The same generators as tests/test_fuzz.py (text of any Unicode and length,
unknown commands, forged and over-long callback data, other users' buttons,
edited messages, group and channel posts, photos, stickers, contacts,
locations), many more of them. After every batch a probe user must get an
answer; at the end no handler may have raised and the victim's answers must be
unchanged. Prints updates sent, throughput, errors and the probe latency.

Run from the repository root:  .venv/bin/python bench/fuzz.py [--updates 10000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.telegram_driver import TelegramUser
from tests.test_fuzz import (
    PROBE,
    VICTIM,
    BotInThread,
    ErrorCounter,
    updates,
    victim_answers,
    victim_mid_survey,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=10_000)
    args = parser.parse_args()
    batch_size = 8
    examples = -(-args.updates // batch_size)

    counter = ErrorCounter()
    logging.getLogger().addHandler(counter)
    with tempfile.TemporaryDirectory() as tmp:
        bot = BotInThread(Path(tmp) / "spi.sqlite3")
        bot.start()
        victim = TelegramUser(bot.api, VICTIM)

        bot.run(victim_mid_survey(victim))
        before = victim_answers(bot.db_path)
        sent = 0
        probe_ms: list[float] = []
        probe = TelegramUser(bot.api, PROBE)

        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(batch=st.lists(updates(), min_size=batch_size, max_size=batch_size))
        def run(batch: list[dict[str, Any]]) -> None:
            nonlocal sent

            async def send_and_probe() -> None:
                for update in batch:
                    bot.api.send_update(update)
                started = time.perf_counter()
                await probe.send("/bantuan", expect="/lanjut", timeout=15)
                probe_ms.append(1000 * (time.perf_counter() - started))

            bot.run(send_and_probe())
            sent += len(batch)

        started = time.perf_counter()
        run()
        elapsed = time.perf_counter() - started
        after = victim_answers(bot.db_path)
        bot.stop()
    logging.getLogger().removeHandler(counter)

    errors = [r.getMessage() for r in counter.records]
    probe_ms.sort()
    print(f"random updates sent:        {sent}")
    print(f"time:                       {elapsed:.1f} s ({sent / elapsed:.0f} updates/s "
          "including a probe round trip per batch)")
    print(f"probe answered:             {len(probe_ms)}/{examples} batches")
    print(f"probe latency p50 / p95:    {statistics.median(probe_ms):.1f} / "
          f"{probe_ms[int(0.95 * (len(probe_ms) - 1))]:.1f} ms")
    print(f"errors logged by handlers:  {len(errors)}")
    print(f"victim's answers unchanged: {after == before}")
    ok = sent >= args.updates and not errors and after == before
    print("PASS" if ok else "FAIL")
    for message in errors[:5]:
        print("  error:", message)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
