"""Every promise the consent text, /privasi and the thank-you screen make, attacked.

The adversaries: whoever holds the database file (with or without the key), and the
respondent's own old buttons after an erasure.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from contextlib import closing
from pathlib import Path

from core import broadcast as bc
from core.engine import Engine
from core.events import Choice
from core.identity import pseudonym
from core.migrations import MIGRATIONS, UNLINKABLE_SINCE
from core.retention import close_period, purge_due
from core.storage import Storage
from tests.conftest import SECRET
from tests.support.survey_driver import Respondent, answer_all, start_as

EKSTERNAL = ("Pengguna layanan", ["Ya, pernah", "Saya urus sendiri"])


def rows(db_path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(db_path)) as db:
        return list(db.execute(sql, params))


def raw(db_path: Path) -> bytes:
    """Every byte the file holder has: the database and, if any, its WAL."""
    wal = db_path.with_name(db_path.name + "-wal")
    return db_path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def complete_one(engine: Engine, user: str) -> Respondent:
    r = Respondent(engine, user_id=user)
    await start_as(r, *EKSTERNAL, "kesehatan")
    await answer_all(r)
    await r.press("Kirim")
    assert "Terima kasih" in r.text
    return r


async def test_declining_stores_nothing_and_brings_no_reminders(
    engine: Engine, storage: Storage, db_path: Path
) -> None:
    r = Respondent(engine, user_id="4242001")
    await r.command("bahasa")
    await r.press("Bahasa Indonesia")
    await r.command("start")
    await r.press("Tidak")
    assert "tidak akan menerima pengingat" in r.transcript[-1]
    assert rows(db_path, "SELECT COUNT(*) FROM contacts") == [(0,)]
    assert rows(db_path, "SELECT COUNT(*) FROM sessions") == [(0,)]
    async with storage.transaction() as tx:
        progress = bc.SurveyProgress(SECRET, engine.period)
        await bc.create_broadcast(
            tx,
            kind="manual",
            texts={"id": "Halo", "en": "Hello"},
            audience="all",
            channels=("telegram",),
            now=dt.datetime(2025, 6, 10, tzinfo=dt.UTC),
            progress=progress,
        )
    assert rows(db_path, "SELECT COUNT(*) FROM deliveries") == [(0,)]
    await storage.close()
    assert b"chat4242001" not in raw(db_path)
    assert pseudonym(SECRET, "telegram", "4242001").encode() not in raw(db_path)


async def test_erasure_cuts_completed_answers_loose_even_for_the_key_holder(
    engine: Engine, storage: Storage, db_path: Path
) -> None:
    r = await complete_one(engine, "4242002")
    stale = r.button("unit lain")  # a button from before the erasure
    key = pseudonym(SECRET, "telegram", "4242002")
    assert rows(db_path, "SELECT COUNT(*) FROM responses WHERE respondent_key = ?", (key,)) == [
        (1,)
    ]
    await r.command("hapus_data")
    await r.press("Ya")
    assert "tidak dapat lagi dihubungkan" in r.transcript[-1]
    # the key holder recomputes the pseudonym and finds nothing; the day is gone too
    assert rows(db_path, "SELECT COUNT(*) FROM responses WHERE respondent_key = ?", (key,)) == [
        (0,)
    ]
    assert rows(db_path, "SELECT status, completed_on FROM responses") == [("completed", None)]
    assert rows(db_path, "SELECT SUM(n) FROM agg_group") == [(1,)]  # still in the statistics
    assert rows(db_path, "SELECT COUNT(*) FROM contacts") == [(0,)]
    assert rows(db_path, "SELECT COUNT(*) FROM sessions") == [(0,)]
    # buttons from before the erasure do nothing
    outcome = await r.send(Choice(token=stale.token))
    assert outcome.notice is not None and "tidak berlaku" in outcome.notice
    assert rows(db_path, "SELECT COUNT(*) FROM sessions") == [(0,)]
    await storage.close()
    data = raw(db_path)
    assert key.encode() not in data and b"chat4242002" not in data


async def test_privacy_notice_names_controller_retention_and_legal_basis(engine: Engine) -> None:
    r = Respondent(engine, user_id="4242003")
    await r.command("privasi")
    text = r.transcript[-1]
    assert "90 hari" in text and "Inspektorat" in text and "UU 27/2022" in text
    assert "jam" in text  # no time of day is kept


async def test_closing_a_period_freezes_it_and_the_purge_keeps_only_anonymous_answers(
    engine: Engine, storage: Storage, db_path: Path
) -> None:
    await complete_one(engine, "4242004")
    halfway = Respondent(engine, user_id="4242005")
    await start_as(halfway, *EKSTERNAL, "kesehatan")
    await halfway.press_nth(0)
    async with storage.transaction() as tx:
        state = await close_period(tx, engine.period, dt.date(2025, 7, 1), retention_days=30)
        assert await purge_due(tx, dt.date(2025, 7, 30)) == []  # not yet
    assert state.purge_after == dt.date(2025, 7, 31)
    late = Respondent(engine, user_id="4242006")
    await late.command("start")
    await late.press("setuju")
    assert "ditutup" in late.transcript[-1]
    await answer_all(halfway)
    await halfway.press("Kirim")
    assert "ditutup" in halfway.transcript[-1]
    async with storage.transaction() as tx:
        [purged] = await purge_due(tx, dt.date(2025, 7, 31))
        assert await purge_due(tx, dt.date(2025, 8, 1)) == []  # once
    assert (purged.contacts, purged.sessions, purged.abandoned, purged.dissociated) == (
        2,
        2,
        1,
        1,
    )
    for table in ("contacts", "sessions", "deliveries", "processed_events"):
        assert rows(db_path, f"SELECT COUNT(*) FROM {table}") == [(0,)], table
    assert rows(db_path, "SELECT status FROM responses") == [("completed",)]
    key = pseudonym(SECRET, "telegram", "4242004")
    assert rows(db_path, "SELECT COUNT(*) FROM responses WHERE respondent_key = ?", (key,)) == [
        (0,)
    ]
    assert rows(db_path, "SELECT SUM(n) FROM agg_group") == [(1,)]


def v4_database(path: Path) -> None:
    """A database as the version before the unlinkable schema left it."""
    with closing(sqlite3.connect(path)) as db:
        for script in MIGRATIONS[: UNLINKABLE_SINCE - 1]:
            for statement in [s.strip() for s in script.split(";\n") if s.strip()]:
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {UNLINKABLE_SINCE - 1}")
        stamp = "2025-06-03T10:11:12+00:00"
        for rid, key in ((1, "a" * 64), (2, "b" * 64)):
            db.execute(
                "INSERT INTO responses(id, respondent_key, period, group_code, unit_code, "
                "status, channel, started_at, completed_at, duration_seconds, counted) "
                "VALUES (?, ?, '2025', 'eksternal', 'dinkes', 'completed', 'telegram', ?, ?, "
                "600, 1)",
                (rid, key, stamp, stamp),
            )
            db.execute(
                "INSERT INTO answers(response_id, question_id, value, answered_at) "
                "VALUES (?, 'ex_q', '\"tidak_pernah\"', ?)",
                (rid, stamp),
            )
            db.execute(
                "INSERT INTO sessions(respondent_key, state, updated_at) VALUES (?, ?, ?)",
                (key, f'{{"respondent_key": "{key}", "consented": true}}', stamp),
            )
        db.execute(
            "INSERT INTO contacts(channel, address, locale, survey_status, updated_at) "
            "VALUES ('telegram', '777', 'id', 'completed', ?)",
            (stamp,),
        )
        db.commit()


async def test_a_v4_database_migrates_and_keeps_no_linkable_column(db_path: Path) -> None:
    v4_database(db_path)
    storage = await Storage.open(db_path)
    await storage.close()
    with closing(sqlite3.connect(db_path)) as db:
        names = {
            table: [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            for table in ("responses", "answers", "sessions", "contacts")
        }
        responses = list(db.execute("SELECT id, completed_on FROM responses"))
        answers = list(db.execute("SELECT response_id, value FROM answers"))
        version = db.execute("PRAGMA user_version").fetchone()[0]
    assert version == len(MIGRATIONS)
    for table, columns in names.items():
        linkable = {"started_at", "completed_at", "answered_at", "updated_at"} & set(columns)
        assert not linkable, table
    assert "survey_status" not in names["contacts"]
    assert sorted(day for _, day in responses) == ["2025-06-03", "2025-06-03"]
    assert {rid for rid, _ in responses} != {1, 2}  # new random ids
    assert {rid for rid, _ in answers} == {rid for rid, _ in responses}
    assert b"10:11:12" not in raw(db_path)  # vacuumed: no old row left in a free page
