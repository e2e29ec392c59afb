"""Group commit: one COMMIT, so one fsync, for the write sets of several people at once.

A transaction that read only cached rows has nothing left to do in the database but
its writes. Instead of a BEGIN … COMMIT each, such write sets queue here and go to
SQLite together: one BEGIN IMMEDIATE, a SAVEPOINT per write set (so one that fails,
say a redelivered event, is undone alone), one COMMIT. At most one batch is in flight;
whatever queues meanwhile forms the next. A caller's ``await`` returns only after the
COMMIT that holds its writes, so no reply goes out for an answer that is not durable.

All SQL runs on aiosqlite's connection thread, one hand-off per batch.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiosqlite

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]
# A write waiting for the next hand-off: sql, parameters, and whether it must change
# exactly one row (an event claim: changing none means the event was already processed).
Pending = tuple[str, Sequence[Any], bool]


class DuplicateEvent(Exception):
    """The event was already processed: its writes were undone, nothing changed."""


class StaleCache(Exception):
    """Another process committed while cached rows were in use: run the transaction again."""


def submit(db: aiosqlite.Connection, work: Work[T]) -> asyncio.Future[T]:
    """Queue ``work`` on the connection's thread now, without waiting for it.

    This is what aiosqlite does for each of its own methods (``Connection._execute``);
    doing it here keeps the queue order fixed at the moment of the call, which the
    batches below rely on. Under load every hand-off costs a thread switch with the GIL,
    so a transaction's statements go in one.
    """
    conn = db._conn  # raises if the connection is closed
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    db._tx.put_nowait((future, functools.partial(work, conn)))
    return future


def in_thread(db: aiosqlite.Connection, work: Work[T]) -> Awaitable[T]:
    return submit(db, work)


def begin(conn: sqlite3.Connection) -> int:
    """BEGIN IMMEDIATE; the data version tells whether another process committed since."""
    conn.execute("BEGIN IMMEDIATE")
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def run_statements(conn: sqlite3.Connection, statements: Sequence[Pending]) -> None:
    for sql, params, must_change in statements:
        cursor = conn.execute(sql, params)
        if must_change and cursor.rowcount != 1:
            raise DuplicateEvent


@dataclass
class WriteSet:
    """One transaction's writes, waiting for the COMMIT that makes them durable."""

    statements: list[Pending]
    used_cache: bool
    on_failure: Callable[[], None]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


Outcomes = list[BaseException | None]


def run_batch(
    conn: sqlite3.Connection, batch: Sequence[WriteSet], expected: int | None
) -> tuple[int, Outcomes]:
    """One transaction for the whole batch.

    First all write sets straight through (each statement costs the connection's
    thread a GIL hand-back, so fewer statements mean shorter batches); if any fails,
    that is undone and the batch runs again with a savepoint per write set, so only
    the failing ones are left out.
    """
    seen = begin(conn)
    stale = expected is not None and seen != expected
    if not stale or not any(write_set.used_cache for write_set in batch):
        try:
            for write_set in batch:
                run_statements(conn, write_set.statements)
            conn.execute("COMMIT")
            return seen, [None] * len(batch)
        except (sqlite3.Error, DuplicateEvent):
            conn.execute("ROLLBACK")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        seen = begin(conn)
    return seen, _run_each(conn, batch, expected, seen)


def _run_each(
    conn: sqlite3.Connection, batch: Sequence[WriteSet], expected: int | None, seen: int
) -> Outcomes:
    """The batch again, a savepoint per write set (the transaction is begun)."""
    outcomes: Outcomes = []
    try:
        for write_set in batch:
            if write_set.used_cache and expected is not None and seen != expected:
                outcomes.append(StaleCache())
                continue
            conn.execute("SAVEPOINT write_set")
            try:
                run_statements(conn, write_set.statements)
            except (sqlite3.Error, DuplicateEvent) as exc:
                conn.execute("ROLLBACK TO write_set")
                outcomes.append(exc)
            else:
                outcomes.append(None)
            conn.execute("RELEASE write_set")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


class GroupCommit:
    """The queue of write sets and the one task that commits them, batch after batch."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        lock: asyncio.Lock,
        version: Callable[[], int | None],
        seen: Callable[[int], None],
    ) -> None:
        self._db = db
        self._lock = lock  # the storage lock: no batch starts inside another transaction
        self._version = version
        self._seen = seen
        self._queued: list[WriteSet] = []
        self._flusher: asyncio.Task[None] | None = None

    def enqueue(self, write_set: WriteSet) -> None:
        self._queued.append(write_set)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())

    def take(self) -> list[WriteSet]:
        """The queued write sets, for a transaction that begins in the database now."""
        batch, self._queued = self._queued, []
        return batch

    def settle(
        self, batch: Sequence[WriteSet], result: tuple[int, Outcomes] | BaseException
    ) -> None:
        """Wake each waiter with its own outcome; undo the cache of those that failed."""
        if isinstance(result, BaseException):
            outcomes: Outcomes = [result] * len(batch)
        else:
            seen, outcomes = result
            self._seen(seen)
        for write_set, outcome in zip(batch, outcomes, strict=True):
            if outcome is not None:
                write_set.on_failure()
            if write_set.done.done():
                continue
            if outcome is None:
                write_set.done.set_result(None)
            else:
                write_set.done.set_exception(outcome)

    async def _flush(self) -> None:
        try:
            while self._queued:
                async with self._lock:
                    batch = self.take()
                    if not batch:
                        break
                    future = submit(
                        self._db, functools.partial(_batch_work, batch, self._version())
                    )
                try:
                    result: tuple[int, Outcomes] | BaseException = await future
                except Exception as exc:  # the whole batch failed (disk full, I/O error)
                    result = exc
                self.settle(batch, result)
        finally:
            self._flusher = None

    async def drain(self) -> None:
        """Wait until every queued write set is committed (at shutdown)."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)


def _batch_work(
    batch: Sequence[WriteSet], expected: int | None, conn: sqlite3.Connection
) -> tuple[int, Outcomes]:
    return run_batch(conn, batch, expected)
