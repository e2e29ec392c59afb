"""Storage: durability settings, migrations, one-answer-per-question, checkpoints."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from core.migrations import MIGRATIONS
from core.storage import Storage, StorageError

NOW = dt.datetime(2025, 6, 10, tzinfo=dt.UTC)


async def test_durability_pragmas_and_migrations(db_path: Path) -> None:
    storage = await Storage.open(db_path)
    async with storage.transaction() as tx:
        pragmas = {
            name: (await tx.fetchone(f"PRAGMA {name}") or [None])[0]
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout",
                         "user_version")
        }
    await storage.close()
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1,
                       "busy_timeout": 5000, "user_version": len(MIGRATIONS)}
    reopened = await Storage.open(db_path)  # migrating again is a no-op
    await reopened.close()
    with sqlite3.connect(db_path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StorageError, match="newer than this program"):
        await Storage.open(db_path)


async def test_an_answer_is_keyed_by_response_and_question(storage: Storage) -> None:
    async with storage.transaction() as tx:
        response = await tx.create_response("key", "2025", "eksternal", "dinkes", "t")
        await tx.put_answer(response, "q1", "a")
        await tx.put_answer(response, "q1", "b")
        assert await tx.answers(response) == {"q1": "b"}
    with pytest.raises(sqlite3.IntegrityError):
        async with storage.transaction() as tx:
            await tx.create_response("key", "2025", "eksternal", "bappeda", "t")
    async with storage.transaction() as tx:  # the failed transaction left nothing behind
        assert (await tx.open_response("key")) is not None
        await tx.complete_response(response, NOW.date(), 600)
        second = await tx.create_response("key", "2025", "eksternal", "dinkes", "t")
    # the unique index refuses a second completed response for the same unit and period
    with pytest.raises(sqlite3.IntegrityError):
        async with storage.transaction() as tx:
            await tx.complete_response(second, NOW.date(), 600)
    async with storage.transaction() as tx:
        rows = await tx.fetchall("SELECT status FROM responses ORDER BY status")
    assert [r["status"] for r in rows] == ["completed", "in_progress"]


async def test_background_checkpoints_move_pages_into_the_database(db_path: Path) -> None:
    storage = await Storage.open(db_path)
    before = db_path.stat().st_size
    async with storage.transaction() as tx:
        for i in range(300):
            await tx.upsert_contact("telegram", str(i), "id")
    storage.start_background_checkpoints(interval=0.05)
    for _ in range(100):
        await asyncio.sleep(0.05)
        if db_path.stat().st_size > before:
            break
    await storage.close()
    assert db_path.stat().st_size > before
