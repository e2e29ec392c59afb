"""The file holder's attack: link chats to answers with nothing but the database file.

Sixty simulated respondents answer over four days (an injected clock), a reminder goes
out in between, some stop halfway. Then the adversary, who has the database file and
its backup but not the key, tries every join we could think of between the chat side
(contacts, deliveries) and the answer side (sessions, responses, answers, scores):
exact and near timestamps, row order (rowids and stored order), and session rows.
Each attack guesses one response per chat; the guesses are checked against the truth,
which only the test knows (it holds the key). A random guess links about one chat in
expectation, so every attack must link at most chance + 1 = 2.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

import core.engine
import core.storage
from core import broadcast as bc
from core.engine import Engine
from core.identity import pseudonym
from core.questionnaire import Questionnaire
from core.storage import Storage
from core.units import UnitRegistry
from tests.conftest import SECRET
from tests.support.survey_driver import Clock, Respondent, answer_all, start_as

RESPONDENTS = 60
DAYS = 4
CHANCE = 1  # expected correct links of a random one-to-one guess
NEAR = dt.timedelta(hours=1)
GROUPS = [
    ("Pengguna layanan", ["Ya, pernah", "Saya urus sendiri"], ["kesehatan", "tembalang"]),
    ("Pegawai unit", ["Ya, ASN", "Lebih dari 2 tahun"], ["kesehatan", "inspektorat"]),
]
Guess = dict[str, int]  # chat address → response id


@dataclass
class World:
    db_path: Path
    backup_path: Path
    truth: dict[str, set[int]]  # chat address → its responses (known only with the key)


@pytest.fixture
async def world(
    tmp_path: Path,
    questionnaire: Questionnaire,
    units: UnitRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    # Response ids come from the operating system's random source in production; a
    # seeded source here makes the count of accidental matches reproducible.
    ids = random.Random(20250610)
    for module in (core.storage, core.engine):
        monkeypatch.setattr(module, "new_response_id", lambda: ids.randrange(1, 2**53))
    db_path = tmp_path / "spi.sqlite3"
    storage = await Storage.open(db_path)
    clock = Clock(dt.datetime(2025, 6, 2, 1, 0, tzinfo=dt.UTC))
    engine = Engine(questionnaire, units, storage, SECRET, clock=clock)
    plan = random.Random(7)
    reminded = False
    for i in range(RESPONDENTS):
        day = i * DAYS // RESPONDENTS
        clock.now = dt.datetime(2025, 6, 2 + day, 1, 0, tzinfo=dt.UTC) + dt.timedelta(
            minutes=plan.randrange(0, 600)
        )
        if day == 2 and not reminded:
            await remind_everyone(storage, clock.now)
            reminded = True
            clock.advance(minutes=plan.randrange(1, 5))  # answering the reminder at once
        group, screening, unit_queries = GROUPS[i % len(GROUPS)]
        r = Respondent(engine, user_id=str(5_000_000 + i))
        await start_as(r, group, screening, plan.choice(unit_queries))
        clock.advance(minutes=plan.randrange(1, 4))
        if i % 10 == 9:
            await r.press_nth(0)  # one answer, then abandoned
            continue
        await answer_all(r)
        clock.advance(minutes=plan.randrange(4, 15))
        await r.press("Kirim")
        assert "Terima kasih" in r.text
    backup_path = tmp_path / "backup.sqlite3"
    await storage.backup(backup_path)
    await storage.close()
    truth: dict[str, set[int]] = {}
    with closing(sqlite3.connect(db_path)) as db:
        for i in range(RESPONDENTS):
            user = str(5_000_000 + i)
            key = pseudonym(SECRET, "telegram", user)
            found = db.execute("SELECT id FROM responses WHERE respondent_key = ?", (key,))
            truth[f"chat{user}"] = {int(rid) for (rid,) in found}
    assert all(truth.values()), "every respondent left a response"
    return World(db_path, backup_path, truth)


async def remind_everyone(storage: Storage, now: dt.datetime) -> None:
    """A reminder to every contact, each delivery marked sent at the reminder's time."""
    progress = bc.SurveyProgress(SECRET, "2025")
    async with storage.transaction() as tx:
        await bc.create_broadcast(
            tx,
            kind="reminder",
            texts={"id": "Ayo isi survei", "en": "Please take the survey"},
            audience="not_completed",
            channels=("telegram",),
            now=now,
            progress=progress,
        )
        while (delivery := await bc.claim_next(tx, "telegram", now, progress)) is not None:
            await bc.mark_sent(tx, delivery, now)


# -- what the file holder can read ------------------------------------------------
def tables(db: sqlite3.Connection) -> list[str]:
    return [
        name
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not name.startswith("sqlite_")
    ]


def columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def moments(values: tuple[object, ...]) -> Iterator[dt.datetime]:
    """Every value that reads as a time or a day, in any column."""
    for value in values:
        if not isinstance(value, str) or len(value) < 10 or value[4:5] != "-":
            continue
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            continue
        yield moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def chat_side_times(db: sqlite3.Connection) -> dict[str, list[dt.datetime]]:
    """Times the chat side keeps per address (contacts, deliveries: any column)."""
    found: dict[str, list[dt.datetime]] = {}
    for table in tables(db):
        if "address" not in columns(db, table):
            continue
        cursor = db.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cursor.description]
        for row in cursor:
            address = row[names.index("address")]
            found.setdefault(address, []).extend(moments(row))
    return found


def answer_side_times(db: sqlite3.Connection) -> dict[int, list[dt.datetime]]:
    """Times the answer side keeps per response: its row, its answers, scores, session."""
    found: dict[int, list[dt.datetime]] = {}
    keys: dict[str, list[int]] = {}
    for rid, key, *rest in db.execute("SELECT id, respondent_key, * FROM responses"):
        found.setdefault(int(rid), []).extend(moments(tuple(rest)))
        keys.setdefault(key, []).append(int(rid))
    for table in tables(db):
        names = columns(db, table)
        if "response_id" in names:
            for row in db.execute(f"SELECT response_id, * FROM {table}"):
                found.setdefault(int(row[0]), []).extend(moments(row[1:]))
        elif "respondent_key" in names and table != "responses":
            for row in db.execute(f"SELECT respondent_key, * FROM {table}"):
                for rid in keys.get(row[0], []):
                    found[rid].extend(moments(row[1:]))
    return found


# -- the attacks ------------------------------------------------------------------
def nearest_time(db: sqlite3.Connection, window: dt.timedelta) -> Guess:
    """Each chat gets the response with the closest time on record, if within ``window``."""
    chats, answers = chat_side_times(db), answer_side_times(db)
    guess: Guess = {}
    for address, chat_times in chats.items():
        best: tuple[dt.timedelta, int] | None = None
        for rid, times in sorted(answers.items()):
            for a in chat_times:
                for b in times:
                    gap = abs(a - b)
                    if gap <= window and (best is None or gap < best[0]):
                        best = (gap, rid)
        if best is not None:
            guess[address] = best[1]
    return guess


def ordered(db: sqlite3.Connection, table: str, column: str, by_rowid: bool) -> list[object]:
    try:
        order = " ORDER BY rowid" if by_rowid else ""
        return [value for (value,) in db.execute(f"SELECT {column} FROM {table}{order}")]
    except sqlite3.OperationalError:  # WITHOUT ROWID: there is no insertion order to read
        return []


def same_rank(db: sqlite3.Connection, by_rowid: bool) -> Guess:
    """The k-th contact is taken to be the k-th response (rowid or stored order)."""
    contacts = ordered(db, "contacts", "address", by_rowid)
    responses = ordered(db, "responses", "id", by_rowid)
    return {str(a): int(str(r)) for a, r in zip(contacts, responses, strict=False)}


def session_rank(db: sqlite3.Connection) -> Guess:
    """The k-th contact is taken to be the k-th session's respondent, by rowid."""
    contacts = ordered(db, "contacts", "address", by_rowid=True)
    sessions = ordered(db, "sessions", "respondent_key", by_rowid=True)
    guess: Guess = {}
    for address, key in zip(contacts, sessions, strict=False):
        row = db.execute("SELECT id FROM responses WHERE respondent_key = ?", (key,)).fetchone()
        if row is not None:
            guess[str(address)] = int(row[0])
    return guess


ATTACKS = {
    "exact timestamps": lambda db: nearest_time(db, dt.timedelta(0)),
    "near timestamps": lambda db: nearest_time(db, NEAR),
    "rowid order": lambda db: same_rank(db, by_rowid=True),
    "stored order": lambda db: same_rank(db, by_rowid=False),
    "session rowid order": session_rank,
}


def linked(guess: Guess, truth: dict[str, set[int]]) -> int:
    return sum(1 for address, rid in guess.items() if rid in truth.get(address, set()))


@pytest.mark.parametrize("copy", ["database", "backup"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_the_file_alone_links_no_chat_to_its_answers(
    world: World, attack: str, copy: str
) -> None:
    path = world.db_path if copy == "database" else world.backup_path
    with closing(sqlite3.connect(path)) as db:
        guess = ATTACKS[attack](db)
    assert linked(guess, world.truth) <= CHANCE + 1, (
        f"{attack} on the {copy} linked {linked(guess, world.truth)} of {RESPONDENTS} chats"
    )


async def test_an_idle_bot_leaves_no_commit_order_in_the_wal(
    db_path: Path, engine: Engine, storage: Storage, clock: Clock
) -> None:
    """The WAL keeps page images in commit order: a consent writes a session and a contact
    together. Once the bot is idle the log is emptied, so a copy of the live directory
    holds no such pairs."""
    storage.start_background_checkpoints(interval=0.05)
    for i in range(5):
        r = Respondent(engine, user_id=str(6_000_000 + i))
        await start_as(r, *GROUPS[0][:2], "kesehatan")
        clock.advance(minutes=3)
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0  # busy: the log holds recent commits
    for _ in range(100):
        await asyncio.sleep(0.05)
        if wal.stat().st_size == 0:
            break
    assert wal.stat().st_size == 0
    raw = db_path.read_bytes()
    assert b"chat6000000" in raw  # the contact is in the database file, as it should be
