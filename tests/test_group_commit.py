"""Group commit and the row cache: one COMMIT for many, each write set on its own."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from core import group_commit
from core.model import SessionState
from core.storage import DuplicateEvent, StaleCache, Storage

NOW = dt.datetime(2025, 6, 10, 2, 0, tzinfo=dt.UTC)
CONTACT = "INSERT INTO contacts(channel, address, locale) VALUES ('t', ?, 'id')"


def addresses(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as db:
        return sorted(row[0] for row in db.execute("SELECT address FROM contacts"))


async def test_a_failing_write_set_is_undone_alone_in_its_batch(
    storage: Storage, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with storage.transaction() as tx:
        await tx.claim_event("tg:2", NOW)  # the second one below is a redelivery
    batches: list[int] = []
    real_batch = group_commit.run_batch

    def counting(conn: sqlite3.Connection, batch: list[group_commit.WriteSet], expected: int | None
                 ) -> tuple[int, group_commit.Outcomes]:
        batches.append(len(batch))
        return real_batch(conn, batch, expected)

    monkeypatch.setattr(group_commit, "run_batch", counting)

    async def one(n: int) -> str:
        try:
            async with storage.transaction() as tx:
                tx.claim_event_on_commit(f"tg:{n}", NOW)
                await tx.write(CONTACT, (f"chat{n}",))
        except DuplicateEvent:
            return "duplicate"
        return "ok"

    assert await asyncio.gather(*(one(n) for n in (1, 2, 3))) == ["ok", "duplicate", "ok"]
    assert batches == [3]  # one COMMIT for the three
    assert addresses(db_path) == ["chat1", "chat3"]


async def test_a_failing_batch_fails_every_waiter_and_keeps_nothing(
    storage: Storage, db_path: Path
) -> None:
    async def one(n: int, sql: str) -> str:
        try:
            async with storage.transaction() as tx:
                await tx.write(sql, (f"chat{n}",))
        except sqlite3.Error:
            return "error"
        return "ok"

    broken = "INSERT INTO no_such_table(address) VALUES (?)"
    results = await asyncio.gather(one(1, CONTACT), one(2, broken), one(3, CONTACT))
    assert results == ["ok", "error", "ok"]
    assert addresses(db_path) == ["chat1", "chat3"]


async def test_another_process_writing_empties_the_cache(storage: Storage, db_path: Path) -> None:
    state = SessionState(respondent_key="k", stage="group", seq=5, consented=True)
    async with storage.transaction() as tx:
        await tx.save_session(state)
    async with storage.transaction() as tx:  # now cached
        assert (await tx.get_session("k")) is state
        await tx.save_session(state)
    changed = state.model_copy(update={"seq": 9})
    with sqlite3.connect(db_path) as db:  # e.g. a maintenance command
        db.execute("UPDATE sessions SET state = ?", (changed.model_dump_json(),))
    with pytest.raises(StaleCache):  # a write built on the cached row is refused
        async with storage.transaction() as tx:
            cached = await tx.get_session("k")
            assert cached is not None
            cached.seq += 1
            await tx.save_session(cached)
    async with storage.transaction() as tx:  # and the next one reads the database
        fresh = await tx.get_session("k")
    assert fresh is not None and fresh.seq == 9


async def test_a_rolled_back_transaction_leaves_no_trace_in_the_cache(storage: Storage) -> None:
    async with storage.transaction() as tx:
        response = await tx.create_response("k", "2025", "eksternal", "dinkes", "t")
        await tx.put_answer(response, "q1", "a")
        await tx.save_session(SessionState(respondent_key="k", seq=1, response_id=response))
    with pytest.raises(RuntimeError):
        async with storage.transaction() as tx:
            state = await tx.get_session("k")
            assert state is not None
            state.seq = 2
            await tx.put_answer(response, "q1", "b")
            await tx.save_session(state)
            raise RuntimeError("handler failed")
    async with storage.transaction() as tx:
        state = await tx.get_session("k")
        assert state is not None and state.seq == 1
        assert await tx.answers(response) == {"q1": "a"}


async def test_a_write_after_a_stale_read_is_refused_even_when_a_read_came_first(
    storage: Storage, db_path: Path
) -> None:
    state = SessionState(respondent_key="k", stage="group", seq=5, consented=True)
    async with storage.transaction() as tx:
        await tx.save_session(state)
    async with storage.transaction() as tx:
        await tx.fetchone("SELECT 1")  # learns the data version
    with sqlite3.connect(db_path) as db:
        changed = state.model_copy(update={"seq": 9}).model_dump_json()
        db.execute("UPDATE sessions SET state = ?", (changed,))
    with pytest.raises(StaleCache):
        async with storage.transaction() as tx:
            cached = await tx.get_session("k")  # the stale row, from the cache
            assert cached is not None and cached.seq == 5
            await tx.fetchone("SELECT 1")  # the first hand-off: the other commit is seen
            cached.seq += 1
            await tx.save_session(cached)
    async with storage.transaction() as tx:
        fresh = await tx.get_session("k")
    assert fresh is not None and fresh.seq == 9
