"""`spi-bot close-period PERIOD` and `spi-bot purge`: freeze a period, purge what expired."""

from __future__ import annotations

import datetime as dt

from core.config import Settings
from core.retention import PurgeCounts, close_period, purge_due
from core.storage import Storage


def today(settings: Settings) -> dt.date:
    return dt.datetime.now(settings.tz).date()


async def close_period_command(settings: Settings, period: str) -> int:
    storage = await Storage.open(settings.database_path)
    try:
        async with storage.transaction() as tx:
            state = await close_period(tx, period, today(settings), settings.retention_days)
            purged = await purge_due(tx, today(settings))
            await tx.audit("cli", "close_period", f"period={period}", dt.datetime.now(dt.UTC))
    finally:
        await storage.close()
    print(
        f"period {state.period} closed on {state.closed_on}; contacts, sessions, unfinished "
        f"responses and deliveries are purged on or after {state.purge_after}"
    )
    for counts in purged:
        print(describe(counts))
    return 0


async def purge_command(settings: Settings) -> int:
    storage = await Storage.open(settings.database_path)
    try:
        async with storage.transaction() as tx:
            purged = await purge_due(tx, today(settings))
            if purged:
                periods = ",".join(c.period for c in purged)
                await tx.audit("cli", "purge", f"periods={periods}", dt.datetime.now(dt.UTC))
    finally:
        await storage.close()
    for counts in purged:
        print(describe(counts))
    if not purged:
        print("nothing to purge")
    return 0


def describe(counts: PurgeCounts) -> str:
    return (
        f"period {counts.period} purged: {counts.contacts} contacts, {counts.sessions} "
        f"sessions, {counts.abandoned} unfinished responses, {counts.deliveries} deliveries, "
        f"{counts.events} update ids; {counts.dissociated} completed responses detached "
        "from their pseudonyms"
    )
