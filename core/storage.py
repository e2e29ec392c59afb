"""SQLite storage behind a small interface: one long-lived writer connection.

Why one connection: SQLite allows one writer at a time, so a single connection
guarded by an asyncio lock gives every event one short, serial transaction with
no "database is locked" retries. WAL with ``synchronous=FULL`` makes a commit
durable before the bot shows the next question: an acknowledged answer survives
a crash or power loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import json
import logging
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import aiosqlite
from pydantic import BaseModel

from core.migrations import MIGRATIONS, UNLINKABLE_SINCE
from core.model import AnswerValue, SessionState, SurveyStatus, iso

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


class Transaction:
    """Typed operations run inside one SQLite transaction."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    # Each helper is a single hand-off to the connection's thread: under load the
    # storage lock is held for these hops, so fewer hops mean more answers per second.
    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self.db.execute_fetchall(sql, params)
        return next(iter(rows), None)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(await self.db.execute_fetchall(sql, params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self.db.execute(sql, params)
        return cursor.rowcount

    async def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        await self.db.executemany(sql, params)

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self.db.execute(sql, params)
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    # -- idempotency -----------------------------------------------------
    async def claim_event(self, event_id: str, now: dt.datetime) -> bool:
        """Record an incoming event once; False means it was already processed."""
        changed = await self.execute(
            "INSERT OR IGNORE INTO processed_events(event_id, processed_at) VALUES (?, ?)",
            (event_id, iso(now)),
        )
        return changed == 1

    async def prune_events(self, before: dt.datetime) -> int:
        """Forget old event ids; Telegram redelivers an update for at most a day."""
        return await self.execute(
            "DELETE FROM processed_events WHERE processed_at < ?", (iso(before),)
        )

    # -- conversation state ----------------------------------------------
    async def get_session(self, key: str) -> SessionState | None:
        row = await self.fetchone("SELECT state FROM sessions WHERE respondent_key = ?", (key,))
        return SessionState.model_validate_json(row["state"]) if row else None

    async def save_session(self, state: SessionState) -> None:
        await self.execute(
            "INSERT INTO sessions(respondent_key, state) VALUES (?, ?) "
            "ON CONFLICT(respondent_key) DO UPDATE SET state = excluded.state",
            (state.respondent_key, state.model_dump_json()),
        )

    async def delete_session(self, key: str) -> None:
        await self.execute("DELETE FROM sessions WHERE respondent_key = ?", (key,))

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
        await self.execute(
            "INSERT INTO responses(id, respondent_key, period, group_code, unit_code, status, "
            "channel, questionnaire_version, started_seal) "
            "VALUES (?, ?, ?, ?, ?, 'in_progress', ?, ?, ?)",
            (response_id, key, period, group, unit, channel, questionnaire_version, started_seal),
        )
        return response_id

    async def complete_response(
        self, response_id: int, day: dt.date, duration_seconds: int | None
    ) -> None:
        """Completed: the start is forgotten; the day and the duration remain."""
        await self.execute(
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
        await self.execute(
            "DELETE FROM responses WHERE id = ? AND status = 'in_progress'", (response_id,)
        )

    # -- answers ---------------------------------------------------------
    async def answers(self, response_id: int) -> dict[str, AnswerValue]:
        rows = await self.fetchall(
            "SELECT question_id, value FROM answers WHERE response_id = ?", (response_id,)
        )
        return {r["question_id"]: json.loads(r["value"]) for r in rows}

    async def put_answer(self, response_id: int, question_id: str, value: AnswerValue) -> None:
        await self.execute(
            "INSERT INTO answers(response_id, question_id, value) VALUES (?, ?, ?) "
            "ON CONFLICT(response_id, question_id) DO UPDATE SET value = excluded.value",
            (response_id, question_id, json.dumps(value, ensure_ascii=False)),
        )

    async def delete_answers(self, response_id: int, question_ids: Sequence[str]) -> None:
        for qid in question_ids:
            await self.execute(
                "DELETE FROM answers WHERE response_id = ? AND question_id = ?",
                (response_id, qid),
            )

    # -- contacts --------------------------------------------------------
    # Contact rows are written only by explicit chat-side actions (consent, language,
    # reminder preferences, erasure, a blocked bot), never when an answer is saved.
    async def upsert_contact(self, channel: str, address: str, locale: str) -> None:
        await self.execute(
            "INSERT INTO contacts(channel, address, locale, opted_out, active) "
            "VALUES (?, ?, ?, 0, 1) ON CONFLICT(channel, address) DO "
            "UPDATE SET locale = excluded.locale, active = 1",
            (channel, address, locale),
        )

    async def set_contact_locale(self, channel: str, address: str, locale: str) -> None:
        await self.execute(
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
        await self.execute(
            "UPDATE contacts SET active = 0 WHERE channel = ? AND address = ?",
            (channel, address),
        )

    async def delete_contact(self, channel: str, address: str) -> None:
        await self.execute(
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
        await self.execute(
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
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._db)
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

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
