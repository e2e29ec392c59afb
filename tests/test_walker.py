"""The survey walker picks by action code, so the wording of the screens does not matter."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from core.engine import Engine
from core.questionnaire import Questionnaire
from tests.support.survey_driver import Respondent, answer_all, start_as
from tests.support.walker import TYPED_ANSWER, Screen, cycling, find, submit

EKSTERNAL = ("Pengguna layanan", ["Ya, pernah", "Saya urus sendiri"])
FREQUENCY = ("tidak_pernah", "jarang", "kadang", "sering", "sgt_sering", "tt")


def answers_by_response(db_path: Path) -> list[list[tuple[str, str]]]:
    with closing(sqlite3.connect(db_path)) as db:
        ids = [row[0] for row in db.execute("SELECT id FROM responses WHERE status = 'completed'")]
        return sorted(
            sorted(
                db.execute(
                    "SELECT question_id, value FROM answers WHERE response_id = ?", (i,)
                ).fetchall()
            )
            for i in ids
        )


async def test_the_walker_answers_the_same_in_english_as_in_indonesian(
    engine: Engine, db_path: Path
) -> None:
    indonesian = Respondent(engine, user_id="2001")
    english = Respondent(engine, user_id="2002")
    for r in (indonesian, english):
        await start_as(r, EKSTERNAL[0], EKSTERNAL[1], "kesehatan")
    await english.command("bahasa")
    await english.press("English")
    assert "Question 1 of" in english.text
    answered = await answer_all(indonesian)
    assert answered > 10
    assert await answer_all(english) == answered
    for r in (indonesian, english):
        await submit(r)
    by_indonesian, by_english = answers_by_response(db_path)
    assert by_indonesian == by_english


async def test_cycling_answers_vary_from_question_to_question(
    engine: Engine, db_path: Path
) -> None:
    r = Respondent(engine, user_id="2003")
    await start_as(r, EKSTERNAL[0], EKSTERNAL[1], "kesehatan")
    await answer_all(r, cycling(FREQUENCY, 2))
    await submit(r)
    [answers] = answers_by_response(db_path)
    assert len({value for _, value in answers}) >= 4


def test_a_missing_button_is_named_by_its_action() -> None:
    screen = Screen("Pertanyaan 1 dari 2", (("Tidak pernah", "7|a|tidak_pernah"),))
    assert find(screen, "a", "tidak_pernah") == ("Tidak pernah", "7|a|tidak_pernah")
    with pytest.raises(AssertionError, match=r"no button sk\|"):
        find(screen, "sk")


def test_the_typed_answer_fits_every_typed_question(questionnaire: Questionnaire) -> None:
    typed = [q for q in questionnaire.questions if q.type in ("number", "text")]
    assert any(q.type == "number" for q in typed)
    for q in typed:
        if q.type == "number":
            assert q.min_value is not None and q.max_value is not None
            assert q.min_value <= int(TYPED_ANSWER) <= q.max_value, q.id
        else:
            assert len(TYPED_ANSWER) <= q.max_length, q.id
