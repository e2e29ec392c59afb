"""Playing the adversary who holds the database file and wants to know which personal
invitation opened which response (and so, with the send-out list, whose answers they are).

The promise: a used token is never stored with, or linkable to, its response: not by a
column, not by a time, not by row order, not by a shared transaction.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from core.engine import Engine
from core.invitations import issue, personal_token
from core.storage import Storage
from tests.conftest import SECRET
from tests.support.survey_driver import Respondent, answer_all

PEOPLE = 8
INTERNAL_SCREENING = ["Ya, ASN", "Lebih dari 2 tahun"]


def tables(db_path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Invitations and responses as stored, in the file's own order (no ORDER BY)."""
    with sqlite3.connect(db_path) as db:
        invitations = list(db.execute("SELECT * FROM invitations"))
        responses = list(db.execute("SELECT * FROM responses"))
    return invitations, responses


@pytest.fixture
async def tokens(storage: Storage) -> list[str]:
    codes = [personal_token() for _ in range(12)]
    async with storage.transaction() as tx:
        await issue(tx, SECRET, codes, "2025", "dinkes", "internal", "sample")
    return codes


async def test_invitation_table_has_no_rowid_no_time_and_no_response_column(
    storage: Storage, db_path: Path, tokens: list[str]
) -> None:
    with sqlite3.connect(db_path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(invitations)")]
        assert columns == ["token_hash", "period", "unit_code", "group_code", "kind", "used"]
        with pytest.raises(sqlite3.OperationalError):
            db.execute("SELECT rowid FROM invitations")
        route = [row for row in db.execute("PRAGMA table_info(responses)") if row[1] == "route"]
        assert route and route[0][2] == "TEXT"


async def test_used_tokens_cannot_be_joined_to_their_responses(
    engine: Engine, storage: Storage, db_path: Path, tokens: list[str]
) -> None:
    order = random.Random(7).sample(range(len(tokens)), PEOPLE)
    changed_both = []
    for person, index in enumerate(order):
        r = Respondent(engine, user_id=str(5000 + person))
        steps = [
            lambda r=r, code=tokens[index]: r.command("start", code),
            lambda r=r: r.press("setuju"),
            *[lambda r=r, label=label: r.press(label) for label in INTERNAL_SCREENING],
        ]
        for step in steps:
            before = tables(db_path)
            await step()
            after = tables(db_path)
            if before[0] != after[0] and before[1] != after[1]:
                changed_both.append(person)
        await answer_all(r)
        await r.press("Kirim")
    # Never one transaction for the token's use and the response's creation.
    assert changed_both == []

    invitations, responses = tables(db_path)
    used = [row for row in invitations if row[5] == 1]
    assert len(used) == PEOPLE
    completed = [row for row in responses if row[5] == "completed"]
    assert len(completed) == PEOPLE
    # No column of a used invitation holds anything of a response or a session.
    with sqlite3.connect(db_path) as db:
        response_side = {str(v) for row in db.execute("SELECT * FROM responses") for v in row}
        response_side |= {str(v) for row in db.execute("SELECT * FROM sessions") for v in row}
    shared = {str(v) for row in used for v in row} & response_side
    assert shared <= {"2025", "dinkes", "internal", "1", "sample"}  # aggregates only
    # Row order is hash order, whatever the order the tokens were used in.
    assert [row[0] for row in invitations] == sorted(row[0] for row in invitations)
    # Every sampled response says only "sample": nothing tells them apart by invitation.
    assert {row for row in (r_[-1] for r_ in completed)} == {"sample"}


async def test_the_file_never_holds_a_token(
    engine: Engine, storage: Storage, db_path: Path, tokens: list[str]
) -> None:
    """A leaked database (and its WAL) neither reveals nor redeems a link."""
    r = Respondent(engine, user_id="6000")
    await r.command("start", tokens[0])
    await r.press("setuju")
    raw = db_path.read_bytes()
    wal = db_path.with_name(db_path.name + "-wal")
    if wal.exists():
        raw += wal.read_bytes()
    for code in tokens:
        assert code.encode() not in raw
