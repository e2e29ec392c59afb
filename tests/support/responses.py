"""Completed responses written the way "Kirim" writes them, without a conversation."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

from core.aggregates import BurstWatch, record_completion
from core.model import AnswerValue
from core.questionnaire import Questionnaire
from core.storage import Storage

MOMENT = dt.datetime(2025, 6, 2, 1, 0, tzinfo=dt.UTC)


async def complete(
    storage: Storage,
    questionnaire: Questionnaire,
    group: str,
    answers: Mapping[str, AnswerValue],
    seconds: int | None = 600,
    when: dt.datetime = MOMENT,
    bursts: BurstWatch | None = None,
    unit: str = "dinkes",
    version: str = "",
) -> int:
    """A completed response through the production path (record_completion);
    ``version`` is the questionnaire edition it was answered on ("" = before versions)."""
    async with storage.transaction() as tx:
        response_id = await tx.create_response(
            uuid.uuid4().hex,
            questionnaire.period,
            group,
            unit,
            "test",
            questionnaire_version=version,
        )
        for qid, value in answers.items():
            await tx.put_answer(response_id, qid, value)
        await tx.complete_response(response_id, when.date(), seconds)
        await record_completion(
            tx, questionnaire, response_id, seconds, when, bursts or BurstWatch()
        )
    return response_id
