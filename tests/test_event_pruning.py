"""Processed update ids are forgotten after Telegram's redelivery horizon, on a timer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bot.app import build_application
from bot.jobs import _CLOCK_KEY, PRUNE_JOB, prune_processed_events
from bot.services import EVENT_MEMORY, open_services
from core.storage import Storage
from tests.support.fake_bot_api import FakeBotApi
from tests.support.telegram_driver import settings_for

T0 = dt.datetime(2025, 6, 10, 2, 0, tzinfo=dt.UTC)


async def test_ids_are_kept_through_the_horizon_and_forgotten_after(storage: Storage) -> None:
    async with storage.transaction() as tx:
        assert await tx.claim_event("tg:1", T0)
        assert await tx.claim_event("tg:2", T0 + dt.timedelta(hours=23))
    assert EVENT_MEMORY.total_seconds() == 24 * 3600  # the whole horizon, no more

    # a day minus a minute after the first: both are still recognised as processed
    assert await prune_processed_events(storage, T0 + EVENT_MEMORY - dt.timedelta(minutes=1)) == 0
    # a minute past the horizon: the first is forgotten, the second kept
    assert await prune_processed_events(storage, T0 + EVENT_MEMORY + dt.timedelta(minutes=1)) == 1
    async with storage.transaction() as tx:
        assert not await tx.claim_event("tg:2", T0 + dt.timedelta(hours=25))
        # an id Telegram hands out again after a week of silence is a new update
        assert await tx.claim_event("tg:1", T0 + dt.timedelta(days=8))


async def test_pruning_runs_hourly_on_the_job_queue(tmp_path: Path) -> None:
    async with FakeBotApi() as api:
        svc = await open_services(settings_for(api, tmp_path / "spi.sqlite3"))
        app = build_application(svc)
        try:
            async with app:
                assert app.post_init is not None and app.job_queue is not None
                await app.post_init(app)
                [job] = app.job_queue.get_jobs_by_name(PRUNE_JOB)
                assert dt.timedelta(0) < job.job.trigger.interval <= dt.timedelta(hours=1)
                async with svc.storage.transaction() as tx:
                    await tx.claim_event("tg:old", T0 - dt.timedelta(hours=25))
                    await tx.claim_event("tg:recent", T0 - dt.timedelta(hours=1))
                app.bot_data[_CLOCK_KEY] = lambda: T0  # the job reads the injected clock
                await job.run(app)
                async with svc.storage.transaction() as tx:
                    rows = await tx.fetchall("SELECT event_id FROM processed_events")
                assert [r["event_id"] for r in rows] == ["tg:recent"]
        finally:
            await svc.close()
