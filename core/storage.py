"""SQLite storage behind a small interface: one long-lived writer connection.

Why one connection: SQLite allows one writer at a time, so a single connection
guarded by an asyncio lock gives every event one short, serial transaction with
no "database is locked" retries. WAL with ``synchronous=FULL`` makes a commit
durable before the bot shows the next question: an acknowledged answer survives
a crash or power loss.

Why a cache and deferred writes: every statement handed to aiosqlite's thread costs a
thread switch with the GIL, and under load that, not SQL, is what a press costs. The
answer path reads the session and answers from a write-through cache and hands its
writes over once, at commit, together with other people's (``core/group_commit.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import json
import logging
import os
import re
import secrets
import sqlite3
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite
from pydantic import BaseModel

from core.group_commit import (
    DuplicateEvent,
    GroupCommit,
    Outcomes,
    Pending,
    StaleCache,
    Work,
    WriteSet,
    begin,
    in_thread,
    run_batch,
    run_statements,
)
from core.migrations import MIGRATIONS, UNLINKABLE_SINCE
from core.model import AnswerValue, SessionState, SurveyStatus, iso

__all__ = [
    "Contact",
    "DuplicateEvent",
    "ResponseRow",
    "RowCache",
    "StaleCache",
    "Storage",
    "StorageError",
    "Transaction",
    "new_response_id",
]
T = TypeVar("T")
log = logging.getLogger(__name__)
RESPONSE_ID_SPACE = 2**53 - 1  # exact in a spreadsheet and in JSON
# Pages in the WAL before a commit checkpoints by itself when background checkpoints run.
BACKGROUND_AUTOCHECKPOINT = 10_000


class StorageError(Exception):
    """The database cannot be used (corrupt, unreadable, newer schema)."""


class ResponseRow(BaseModel):
    id: int
    respondent_key: str
    period: str
    group: str
    unit: str
    status: Literal["in_progress", "completed"]
    started_seal: str | None = None
    completed_on: str | None = None


class Contact(BaseModel):
    """A reachable chat, kept apart from answers: no pseudonym, no time, no row order."""

    channel: str
    address: str
    locale: str
    opted_out: bool = False
    active: bool = True


def new_response_id() -> int:
    """Random, so the responses table's order says nothing about arrival order."""
    return secrets.randbelow(RESPONSE_ID_SPACE) + 1


CACHE_LIMIT = 2048  # sessions and answer sets kept per kind; least recently used go first
# Raw writes naming these tables invalidate the cache (cascades included).
_CACHED_TABLES = re.compile(r"\b(sessions|answers)\b|\bdelete\s+from\s+responses\b", re.I)


class RowCache:
    """Sessions and answer sets as this process last committed them (write-through).

    Reads on the answer path come from here; a transaction that fails drops what it
    touched, and a commit by another process (``PRAGMA data_version``) empties it.
    """

    def __init__(self, limit: int = CACHE_LIMIT) -> None:
        self.limit = limit
        self.sessions: OrderedDict[str, SessionState | None] = OrderedDict()
        self.answers: OrderedDict[int, dict[str, AnswerValue]] = OrderedDict()
        self.data_version: int | None = None

    def clear(self) -> None:
        self.sessions.clear()
        self.answers.clear()

    def saw_version(self, seen: int) -> None:
        """Another process committed since the last look: nothing cached can be trusted."""
        if self.data_version is not None and seen != self.data_version:
            self.clear()
        self.data_version = seen

    def put_session(self, key: str, state: SessionState | None) -> None:
        self.sessions[key] = state
        self.sessions.move_to_end(key)
        if len(self.sessions) > self.limit:
            self.sessions.popitem(last=False)

    def put_answers(self, response_id: int, answers: dict[str, AnswerValue]) -> None:
        self.answers[response_id] = answers
        self.answers.move_to_end(response_id)
        if len(self.answers) > self.limit:
            self.answers.popitem(last=False)


@dataclass
class _Failed:
    exc: BaseException


def _commit(conn: sqlite3.Connection) -> None:
    conn.execute("COMMIT")


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:  # BEGIN itself may be what failed
        conn.execute("ROLLBACK")


def _copy(answers: dict[str, AnswerValue]) -> dict[str, AnswerValue]:
    return {k: list(v) if isinstance(v, list) else v for k, v in answers.items()}


class Transaction:
    """Typed operations run inside one SQLite transaction.

    Writes whose result nobody needs wait in ``_pending`` and go to the database with
    the next read, or with COMMIT: a button press that only reads cached rows costs a
    single hand-off to the connection's thread (BEGIN, its writes, COMMIT).
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        cache: RowCache | None = None,
        group: GroupCommit | None = None,
    ) -> None:
        self.db = db
        self._cache = cache
        self._group = group
        self._begun = cache is None  # without a cache the caller began the transaction
        self._pending: list[Pending] = []
        self._used_cache = False
        self._writes = False  # anything written (or waiting to be) in this transaction
        self._stale = False  # cached rows were used, then another process committed
        self._touched_sessions: set[str] = set()
        self._written_sessions: set[str] = set()
        self._touched_answers: set[int] = set()

    # -- hand-offs ---------------------------------------------------------
    async def _hop(self, work: Work[T] | None = None) -> T | None:
        """Begin if needed, flush pending writes, then run ``work``: all in one hand-off.

        Beginning here commits the write sets queued for group commit first, so this
        transaction reads everything written before it.
        """
        pending, self._pending = self._pending, []
        begin_now = not self._begun
        self._begun = True
        cache = self._cache
        expected = cache.data_version if cache is not None else None
        stale_matters = self._used_cache and bool(pending)
        batch = self._group.take() if begin_now and self._group is not None else []

        def run(
            conn: sqlite3.Connection,
        ) -> tuple[tuple[int, Outcomes] | BaseException | None, int | None, T | None]:
            batch_result: tuple[int, Outcomes] | BaseException | None = None
            if batch:
                try:
                    batch_result = run_batch(conn, batch, expected)
                except Exception as exc:
                    batch_result = exc
            try:
                seen = None
                if begin_now:
                    seen = begin(conn)
                    if stale_matters and expected is not None and seen != expected:
                        raise StaleCache
                run_statements(conn, pending)
                return batch_result, seen, (work(conn) if work is not None else None)
            except BaseException as exc:  # handed back so the batch is settled first
                return batch_result, None, _Failed(exc)  # type: ignore[return-value]

        batch_result, seen, result = await in_thread(self.db, run)
        if batch_result is not None and self._group is not None:
            self._group.settle(batch, batch_result)
        if isinstance(result, _Failed):
            if isinstance(result.exc, StaleCache) and cache is not None:
                cache.clear()
            raise result.exc
        if cache is not None and seen is not None:
            if self._used_cache and expected is not None and seen != expected:
                self._stale = True  # writes built on what was read are refused at commit
            cache.saw_version(seen)
        return result

    def _defer(self, sql: str, params: Sequence[Any] = (), must_change: bool = False) -> None:
        if self._cache is None:
            raise RuntimeError("deferred writes need a managed transaction")
        self._writes = True
        self._pending.append((sql, params, must_change))

    def _invalidate_for(self, sql: str) -> None:
        if self._cache is not None and _CACHED_TABLES.search(sql):
            self._cache.clear()

    async def commit(self) -> WriteSet | None:
        """COMMIT; or, if only cached rows were read, queue the writes for group commit.

        Returns the queued write set, whose ``done`` completes after its COMMIT.
        """
        if self._stale and self._writes:
            raise StaleCache
        self._forget_unsaved()
        if not self._begun and self._pending and self._group is not None:
            write_set = WriteSet(self._pending, self._used_cache, self._undo_cache)
            self._pending = []
            self._group.enqueue(write_set)
            return write_set
        if self._pending or self._begun:
            await self._hop(_commit)
        return None

    async def rollback(self) -> None:
        self._pending = []
        if self._begun:
            await in_thread(self.db, _rollback)
        self._undo_cache()

    def _undo_cache(self) -> None:
        cache = self._cache
        if cache is not None:
            for key in self._touched_sessions:
                cache.sessions.pop(key, None)
            for response_id in self._touched_answers:
                cache.answers.pop(response_id, None)

    def _forget_unsaved(self) -> None:
        """A session read but not saved may have been changed in memory: drop it."""
        if self._cache is not None:
            for key in self._touched_sessions - self._written_sessions:
                self._cache.sessions.pop(key, None)

    # Each helper is a single hand-off to the connection's thread, with the writes
    # waiting before it.
    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = await self._hop(lambda c: c.execute(sql, params).fetchone())
        return row

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        rows = await self._hop(lambda c: c.execute(sql, params).fetchall())
        return list(rows or [])

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._writes = True
        self._invalidate_for(sql)
        count = await self._hop(lambda c: c.execute(sql, params).rowcount)
        return int(count or 0)

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self._writes = True
        self._invalidate_for(sql)
        await self._hop(lambda c: c.executemany(sql, params))

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._writes = True
        self._invalidate_for(sql)
        rowid = await self._hop(lambda c: c.execute(sql, params).lastrowid)
        assert rowid is not None
        return int(rowid)

    # -- idempotency -----------------------------------------------------
    async def claim_event(self, event_id: str, now: dt.datetime) -> bool:
        """Record an incoming event once; False means it was already processed."""
        changed = await self.execute(
            "INSERT OR IGNORE INTO processed_events(event_id, processed_at) VALUES (?, ?)",
            (event_id, iso(now)),
        )
        return changed == 1

    def claim_event_on_commit(self, event_id: str, now: dt.datetime) -> None:
        """Record the event with this transaction's writes, at no extra hand-off.

        If it was already processed, the transaction raises :class:`DuplicateEvent`
        (from the next read or the commit) and is rolled back whole.
        """
        self._defer(
            "INSERT OR IGNORE INTO processed_events(event_id, processed_at) VALUES (?, ?)",
            (event_id, iso(now)),
            must_change=True,
        )

    async def prune_events(self, before: dt.datetime) -> int:
        """Forget old event ids; Telegram redelivers an update for at most a day."""
        return await self.execute(
            "DELETE FROM processed_events WHERE processed_at < ?", (iso(before),)
        )

    # -- conversation state ----------------------------------------------
    async def get_session(self, key: str) -> SessionState | None:
        cache = self._cache
        if cache is not None:
            self._touched_sessions.add(key)
            if key in cache.sessions:
                self._used_cache = True
                cache.sessions.move_to_end(key)
                return cache.sessions[key]
        row = await self.fetchone("SELECT state FROM sessions WHERE respondent_key = ?", (key,))
        state = SessionState.model_validate_json(row["state"]) if row else None
        if cache is not None:
            cache.put_session(key, state)
        return state

    async def save_session(self, state: SessionState) -> None:
        sql = (
            "INSERT INTO sessions(respondent_key, state) VALUES (?, ?) "
            "ON CONFLICT(respondent_key) DO UPDATE SET state = excluded.state"
        )
        params = (state.respondent_key, state.model_dump_json())
        if self._cache is None:
            await self.execute(sql, params)
            return
        self._defer(sql, params)
        self._touched_sessions.add(state.respondent_key)
        self._written_sessions.add(state.respondent_key)
        self._cache.put_session(state.respondent_key, state)

    async def delete_session(self, key: str) -> None:
        sql, params = "DELETE FROM sessions WHERE respondent_key = ?", (key,)
        if self._cache is None:
            await self.execute(sql, params)
            return
        self._defer(sql, params)
        self._touched_sessions.add(key)
        self._written_sessions.add(key)
        self._cache.put_session(key, None)

    async def _write(self, sql: str, params: Sequence[Any]) -> None:
        """A write by a helper that keeps the cache right itself."""
        if self._cache is None:
            await self.execute(sql, params)
        else:
            self._defer(sql, params)

    async def write(self, sql: str, params: Sequence[Any] = ()) -> None:
        """A write whose result nobody reads: it waits for the next read or the commit.

        Errors (a constraint, say) surface there too, and roll the transaction back.
        """
        if self._cache is None:
            await self.execute(sql, params)
        else:
            self._invalidate_for(sql)
            self._defer(sql, params)

    # -- responses -------------------------------------------------------
    async def open_response(self, key: str) -> ResponseRow | None:
        row = await self.fetchone(
            "SELECT * FROM responses WHERE respondent_key = ? AND status = 'in_progress'", (key,)
        )
        return _response(row) if row else None

    async def get_response(self, response_id: int) -> ResponseRow | None:
        row = await self.fetchone("SELECT * FROM responses WHERE id = ?", (response_id,))
        return _response(row) if row else None

    async def has_completed(self, key: str, period: str, unit: str) -> bool:
        row = await self.fetchone(
            "SELECT 1 FROM responses WHERE respondent_key = ? AND period = ? AND unit_code = ? "
            "AND status = 'completed'",
            (key, period, unit),
        )
        return row is not None

    async def completed_internal_unit(self, key: str, period: str) -> str | None:
        row = await self.fetchone(
            "SELECT unit_code FROM responses WHERE respondent_key = ? AND period = ? "
            "AND group_code = 'internal' AND status = 'completed'",
            (key, period),
        )
        return str(row["unit_code"]) if row else None

    async def completed_units(self, key: str, period: str, group: str) -> list[str]:
        """The units (sorted by code) this pseudonym completed as ``group`` in the period."""
        rows = await self.fetchall(
            "SELECT DISTINCT unit_code FROM responses WHERE respondent_key = ? AND period = ? "
            "AND group_code = ? AND status = 'completed' ORDER BY unit_code",
            (key, period, group),
        )
        return [str(row["unit_code"]) for row in rows]

    async def create_response(
        self,
        key: str,
        period: str,
        group: str,
        unit: str,
        channel: str,
        started_seal: str | None = None,
        questionnaire_version: str = "",
        response_id: int | None = None,
    ) -> int:
        """A new in-progress response under a random id (or the one given)."""
        response_id = response_id if response_id is not None else new_response_id()
        await self._write(
            "INSERT INTO responses(id, respondent_key, period, group_code, unit_code, status, "
            "channel, questionnaire_version, started_seal) "
            "VALUES (?, ?, ?, ?, ?, 'in_progress', ?, ?, ?)",
            (response_id, key, period, group, unit, channel, questionnaire_version, started_seal),
        )
        if self._cache is not None:  # a new id has no answers yet
            self._touched_answers.add(response_id)
            self._cache.put_answers(response_id, {})
        return response_id

    async def complete_response(
        self, response_id: int, day: dt.date, duration_seconds: int | None
    ) -> None:
        """Completed: the start is forgotten; the day and the duration remain."""
        await self._write(
            "UPDATE responses SET status = 'completed', completed_on = ?, started_seal = NULL, "
            "duration_seconds = ? WHERE id = ? AND status = 'in_progress'",
            (day.isoformat(), duration_seconds, response_id),
        )

    async def dissociate(self, key: str) -> int:
        """Cut a person's completed responses loose from their pseudonym (/hapus_data).

        Each gets a random key of its own and loses its day: the answers stay in the
        statistics, but nobody, not even the key holder, can find them from the person.
        """
        rows = await self.fetchall(
            "SELECT id FROM responses WHERE respondent_key = ? AND status = 'completed'", (key,)
        )
        for row in rows:
            await self.execute(
                "UPDATE responses SET respondent_key = ?, completed_on = NULL WHERE id = ?",
                (secrets.token_hex(32), row["id"]),
            )
        return len(rows)

    async def discard_response(self, response_id: int) -> None:
        """Delete an unfinished response; its answers go with it (ON DELETE CASCADE)."""
        await self._write(
            "DELETE FROM responses WHERE id = ? AND status = 'in_progress'", (response_id,)
        )
        if self._cache is not None:
            self._touched_answers.add(response_id)
            self._cache.answers.pop(response_id, None)

    # -- answers ---------------------------------------------------------
    async def answers(self, response_id: int) -> dict[str, AnswerValue]:
        """A copy the caller may change; the cached set changes only through writes."""
        cache = self._cache
        if cache is not None:
            self._touched_answers.add(response_id)
            cached = cache.answers.get(response_id)
            if cached is not None:
                self._used_cache = True
                cache.answers.move_to_end(response_id)
                return _copy(cached)
        rows = await self.fetchall(
            "SELECT question_id, value FROM answers WHERE response_id = ?", (response_id,)
        )
        answers: dict[str, AnswerValue] = {r["question_id"]: json.loads(r["value"]) for r in rows}
        if cache is not None:
            cache.put_answers(response_id, _copy(answers))
        return answers

    async def put_answer(self, response_id: int, question_id: str, value: AnswerValue) -> None:
        await self._write(
            "INSERT INTO answers(response_id, question_id, value) VALUES (?, ?, ?) "
            "ON CONFLICT(response_id, question_id) DO UPDATE SET value = excluded.value",
            (response_id, question_id, json.dumps(value, ensure_ascii=False)),
        )
        if self._cache is not None:
            self._touched_answers.add(response_id)
            cached = self._cache.answers.get(response_id)
            if cached is not None:
                cached[question_id] = list(value) if isinstance(value, list) else value

    async def delete_answers(self, response_id: int, question_ids: Sequence[str]) -> None:
        for qid in question_ids:
            await self._write(
                "DELETE FROM answers WHERE response_id = ? AND question_id = ?",
                (response_id, qid),
            )
        if self._cache is not None:
            self._touched_answers.add(response_id)
            cached = self._cache.answers.get(response_id, {})
            for qid in question_ids:
                cached.pop(qid, None)

    # -- contacts --------------------------------------------------------
    # Contact rows are written only by explicit chat-side actions (consent, language,
    # reminder preferences, erasure, a blocked bot), never when an answer is saved.
    async def upsert_contact(self, channel: str, address: str, locale: str) -> None:
        await self._write(
            "INSERT INTO contacts(channel, address, locale, opted_out, active) "
            "VALUES (?, ?, ?, 0, 1) ON CONFLICT(channel, address) DO "
            "UPDATE SET locale = excluded.locale, active = 1",
            (channel, address, locale),
        )

    async def set_contact_locale(self, channel: str, address: str, locale: str) -> None:
        await self._write(
            "UPDATE contacts SET locale = ? WHERE channel = ? AND address = ?",
            (locale, channel, address),
        )

    async def set_contact_opt_out(self, channel: str, address: str, opted_out: bool) -> bool:
        changed = await self.execute(
            "UPDATE contacts SET opted_out = ? WHERE channel = ? AND address = ?",
            (int(opted_out), channel, address),
        )
        return changed == 1

    async def mark_contact_inactive(self, channel: str, address: str) -> None:
        await self._write(
            "UPDATE contacts SET active = 0 WHERE channel = ? AND address = ?",
            (channel, address),
        )

    async def delete_contact(self, channel: str, address: str) -> None:
        await self._write(
            "DELETE FROM contacts WHERE channel = ? AND address = ?", (channel, address)
        )

    async def get_contact(self, channel: str, address: str) -> Contact | None:
        row = await self.fetchone(
            "SELECT * FROM contacts WHERE channel = ? AND address = ?", (channel, address)
        )
        if row is None:
            return None
        return Contact(
            channel=row["channel"],
            address=row["address"],
            locale=row["locale"],
            opted_out=bool(row["opted_out"]),
            active=bool(row["active"]),
        )

    async def survey_status(self, key: str, period: str) -> SurveyStatus:
        """Derived from the responses at the moment it is needed (reminders), with the
        pseudonym the caller computed: contacts never store it."""
        row = await self.fetchone(
            "SELECT MAX(status = 'completed') AS done, MAX(status = 'in_progress') AS open "
            "FROM responses WHERE respondent_key = ? AND (period = ? OR status = 'in_progress')",
            (key, period),
        )
        if row is None or row["done"] is None:
            return "none"
        if row["done"]:  # as before: someone who completed is not reminded again
            return "completed"
        return "started" if row["open"] else "none"

    async def audit(self, actor: str, action: str, detail: str, now: dt.datetime) -> None:
        """Append one line to the audit log (the table refuses updates and deletes)."""
        await self._write(
            "INSERT INTO audit_log(at, actor, action, detail) VALUES (?, ?, ?, ?)",
            (iso(now), actor, action, detail),
        )


def _response(row: sqlite3.Row) -> ResponseRow:
    return ResponseRow(
        id=row["id"],
        respondent_key=row["respondent_key"],
        period=row["period"],
        group=row["group_code"],
        unit=row["unit_code"],
        status=row["status"],
        started_seal=row["started_seal"],
        completed_on=row["completed_on"],
    )


class Storage:
    """The database: open once at start-up, run short transactions, close at exit."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._lock = asyncio.Lock()
        self.cache = RowCache()
        self._group = GroupCommit(
            db, self._lock, lambda: self.cache.data_version, self.cache.saw_version
        )
        self._checkpoints: asyncio.Task[None] | None = None
        self._reader: aiosqlite.Connection | None = None
        self._read_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, *, existing: bool = False) -> Storage:
        """Open (creating and migrating if needed) the database at ``path``.

        With ``existing``, the file must already hold a spi-bot schema and is neither
        created nor migrated: a tool reading the live database (``spi-bot backup``)
        must not conjure an empty one from a mistyped path, nor change its schema.
        Every failure is a :class:`StorageError` naming the path and the reason.
        """
        path = Path(path)
        try:
            if existing:
                _require_database_file(path)
            elif str(path) != ":memory:":
                _prepare_location(path)
                _create_private(path)
        except OSError as exc:
            doing = "open" if existing else "create"
            raise StorageError(f"{path}: cannot {doing} database: {_os_reason(exc)}") from None
        try:
            db = await aiosqlite.connect(str(path), isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: cannot open database: {exc}") from None
        db.row_factory = sqlite3.Row
        storage = cls(db, path)
        try:
            await storage._configure()
            await storage._check_integrity()
            if existing:
                await storage._require_schema()
            else:
                await storage._migrate()
        except sqlite3.DatabaseError as exc:
            await db.close()
            raise StorageError(f"{path}: cannot use database: {exc}") from None
        except StorageError:
            await db.close()
            raise
        return storage

    async def _require_schema(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        if not row or int(row[0]) == 0:
            raise StorageError(f"{self.path}: not a spi-bot database (no schema); check the path")

    async def close(self) -> None:
        await self._group.drain()
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
            self._checkpoints = None
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.close()
        await self._db.close()

    def start_background_checkpoints(self, interval: float = 1.0) -> None:
        """Checkpoint the WAL from a second connection, off the answer path.

        SQLite's automatic checkpoint runs inside a commit and, with synchronous=FULL,
        fsyncs the database file while the storage lock is held; a PASSIVE checkpoint
        from another connection copies the same pages without blocking the writer.
        The automatic one stays on, with a larger threshold, as a safety net.
        """
        if self._checkpoints is None:
            self._checkpoints = asyncio.create_task(self._checkpoint_loop(interval))

    async def _checkpoint_loop(self, interval: float) -> None:
        await self._db.execute(f"PRAGMA wal_autocheckpoint = {BACKGROUND_AUTOCHECKPOINT}")
        checkpointer = await aiosqlite.connect(str(self.path))
        try:
            await checkpointer.execute("PRAGMA busy_timeout = 5000")
            previous: tuple[int, int] | None = None
            while True:
                await asyncio.sleep(interval)
                try:
                    previous = await _checkpoint(checkpointer, previous)
                except sqlite3.Error as exc:  # never let housekeeping stop the bot
                    log.warning("background checkpoint failed: %s", exc)
        finally:
            await checkpointer.close()

    async def _configure(self) -> None:
        for pragma in (
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = FULL",
            "PRAGMA foreign_keys = ON",
            "PRAGMA busy_timeout = 5000",
            # Deleted rows (a declined consent, an erased contact) are overwritten,
            # not left readable in free pages of the file.
            "PRAGMA secure_delete = ON",
        ):
            await self._db.execute(pragma)

    async def _check_integrity(self) -> None:
        async with self._db.execute("PRAGMA quick_check") as cur:
            rows = await cur.fetchall()
        result = [str(r[0]) for r in rows]
        if result != ["ok"]:
            raise StorageError(
                f"{self.path}: database failed its integrity check ({'; '.join(result[:3])}); "
                "restore it from a backup (spi-bot backup) before starting"
            )

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise StorageError(
                f"{self.path}: schema version {version} is newer than this program "
                f"({len(MIGRATIONS)}); upgrade spi-bot"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(script):
                    await self._db.execute(statement)
                await self._db.execute(f"PRAGMA user_version = {number}")
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
        if 0 < version < UNLINKABLE_SINCE <= len(MIGRATIONS):
            # Rows of the linkable tables may survive in freed pages: rewrite the file.
            await self._db.execute("VACUUM")
            await self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One serial, durable transaction; rolled back whole on any error."""
        async with self._lock:
            tx = Transaction(self._db, self.cache, self._group)
            try:
                yield tx
                write_set = await tx.commit()
            except BaseException:
                await tx.rollback()
                raise
        if write_set is not None:  # others may compute while its COMMIT runs
            await write_set.done

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Transaction]:
        """A consistent snapshot on a second, read-only connection (WAL: readers never
        wait for the writer, and the writer never waits for them). Any write fails."""
        if str(self.path) == ":memory:":  # no second connection can see it
            async with self.transaction() as tx:
                yield tx
            return
        async with self._read_lock:
            if self._reader is None:
                self._reader = await self._open_reader()
            await self._reader.execute("BEGIN DEFERRED")
            try:
                yield Transaction(self._reader)
            finally:
                await self._reader.execute("COMMIT")

    async def _open_reader(self) -> aiosqlite.Connection:
        reader = await aiosqlite.connect(
            self.path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None
        )
        reader.row_factory = sqlite3.Row
        await reader.execute("PRAGMA query_only = ON")
        await reader.execute("PRAGMA busy_timeout = 5000")
        return reader

    async def backup(self, target: Path) -> None:
        """Copy the live database with SQLite's online backup API."""
        try:
            _prepare_location(target)
            _create_private(target)
        except OSError as exc:
            raise StorageError(f"{target}: cannot write backup: {_os_reason(exc)}") from None
        async with self._lock:
            dest = await aiosqlite.connect(str(target))
            try:
                await self._db.backup(dest)
            except sqlite3.Error as exc:
                raise StorageError(f"{target}: cannot write backup: {exc}") from None
            finally:
                await dest.close()


async def _checkpoint(
    checkpointer: aiosqlite.Connection, previous: tuple[int, int] | None
) -> tuple[int, int] | None:
    """A PASSIVE checkpoint; once no frame was added since the last tick, TRUNCATE.

    Frames left in the WAL are page images in commit order, and commit order is what
    the schema avoids keeping anywhere else: emptying the log whenever the bot is idle
    leaves at most the last moments of writes in it (see docs/PRIVACY.md).
    """
    async with checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)") as cursor:
        row = await cursor.fetchone()
    state = (int(row[1]), int(row[2])) if row is not None else None
    if state is not None and state == previous and state[0] > 0 and state[0] == state[1]:
        await checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return None
    return state


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";\n") if s.strip()]


def _create_private(path: Path) -> None:
    """Create the file with mode 0600 before SQLite does, so it is never world-readable."""
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a database file")
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    os.chmod(path, 0o600)
    # SQLite writes path-wal and path-shm beside the file: the directory must be writable.
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"directory {path.parent} is not writable")


def _prepare_location(path: Path) -> None:
    """The parent directories, created if missing; a file in the way is named."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{parent} is a file, not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)


def _require_database_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such file (check DATABASE_PATH)")
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a database file")
    if path.stat().st_size == 0:
        raise FileNotFoundError(errno.ENOENT, "file is empty, not a database (check DATABASE_PATH)")


def _os_reason(exc: OSError) -> str:
    """The operating system's reason alone: the path is already in the message."""
    return exc.strerror or str(exc)
