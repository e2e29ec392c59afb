"""A database as months of use leave it, written through the storage API."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from bench.paths import PROJECT_ROOT, SECRET
from bench.respondents import Survey
from core.identity import pseudonym, seal_time
from core.model import AnswerValue, SessionState, utcnow
from core.storage import Storage, Transaction, new_response_id
from core.units import load_units

CHUNK = 500  # respondents per transaction


async def seed_unfinished(db_path: Path, count: int, survey: Survey, first_user: int) -> None:
    """Put ``count`` respondents mid-survey into a fresh database, as months of use would.

    Each gets a response under a random id with a sealed start, a few answers, a
    session on a question, a contact, and the update ids of the last day. Rows go in
    through the same ``Transaction`` calls the bot uses, so they follow the schema.
    """
    rng = random.Random(count)
    registry = load_units(PROJECT_ROOT / "surveys" / "units-kota-semarang.toml")
    units = [u.code for u in registry.units]
    now = utcnow()
    storage = await Storage.open(db_path)
    try:
        events = 0
        for start in range(0, count, CHUNK):
            async with storage.transaction() as tx:
                for i in range(start, min(count, start + CHUNK)):
                    user_id = first_user + i
                    events += await _seed_one(tx, survey, rng, units, user_id, i, events, now)
    finally:
        await storage.close()


async def _seed_one(
    tx: Transaction,
    survey: Survey,
    rng: random.Random,
    units: list[str],
    user_id: int,
    i: int,
    events: int,
    now: dt.datetime,
) -> int:
    """One respondent part-way through the survey; returns how many update ids it left."""
    key = pseudonym(SECRET.encode(), "telegram", str(user_id))
    group = "eksternal" if i % 3 else "internal"
    unit = rng.choice(units)
    questions = survey.q.questions_for(group)
    answered = rng.randint(1, min(8, len(questions) - 1))
    response_id = new_response_id()
    await tx.create_response(
        key,
        survey.q.period,
        group,
        unit,
        "telegram",
        started_seal=seal_time(SECRET.encode(), response_id, now),
        questionnaire_version=survey.q.version_label,
        response_id=response_id,
    )
    screening = {}
    for screen in survey.q.group(group).screening:  # type: ignore[union-attr]
        screening[screen.id] = next(o.code for o in screen.options if o.eligible)
        await tx.put_answer(response_id, f"screen_{screen.id}", screening[screen.id])
    for question in questions[:answered]:
        value: AnswerValue = question.options[0].code if question.options else 3
        if question.type == "multi":
            value = [question.options[0].code]
        await tx.put_answer(response_id, question.id, value)
    await tx.save_session(
        SessionState(
            respondent_key=key,
            stage="question",
            seq=10 + answered,
            consented=True,
            group=group,
            screening=screening,
            unit=unit,
            response_id=response_id,
            question_id=questions[answered].id,
        )
    )
    await tx.upsert_contact("telegram", str(user_id), "id")
    n_events = 8 + answered
    for k in range(n_events):
        tx.claim_event_on_commit(f"tg:{10_000_000 + events + k}", now)
    return n_events
