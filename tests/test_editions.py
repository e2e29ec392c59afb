"""Old responses keep scoring with the questionnaire edition they were answered on.

Version 2 rewrote items: `in_balasan` was a frequency ("jarang" = 75) and is now a
reverse-keyed statement, where the same code does not exist. A response answered on
version 1 must keep its version-1 scores in every tally, including when a flag is
cleared later and its contribution is added back.
"""

from __future__ import annotations

from core.aggregates import apply_response
from core.questionnaire import Questionnaire
from core.storage import Storage
from tests.support.responses import complete

V1 = "2025/1"


def test_the_archived_edition_is_loaded_beside_the_current_one(
    questionnaire: Questionnaire,
) -> None:
    first = questionnaire.edition(V1)
    assert first is not questionnaire and first.version == "1"
    assert questionnaire.edition("") is first  # stored before versions were recorded
    assert questionnaire.edition(questionnaire.version_label) is questionnaire
    assert questionnaire.edition("2025/99") is questionnaire  # unknown: the current one
    old = first.question("in_balasan")
    new = questionnaire.question("in_balasan")
    assert old is not None and new is not None
    assert old.option("jarang") is not None and new.option("jarang") is None


async def answered_on(
    storage: Storage, questionnaire: Questionnaire, edition: str, value: str, count: int = 1
) -> list[int]:
    """``count`` completed responses of Dinas Kesehatan staff answering only
    `in_balasan` = ``value`` on ``edition``."""
    return [
        await complete(
            storage, questionnaire, "internal", {"in_balasan": value}, 900, version=edition
        )
        for _ in range(count)
    ]


async def item_total(storage: Storage, question_id: str) -> tuple[int, float]:
    async with storage.transaction() as tx:
        row = await tx.fetchone(
            "SELECT n, total FROM agg_item WHERE question_id = ?", (question_id,)
        )
    return (int(row["n"]), float(row["total"])) if row is not None else (0, 0.0)


async def test_a_version_1_response_keeps_its_version_1_scores(
    questionnaire: Questionnaire, storage: Storage
) -> None:
    (response,) = await answered_on(storage, questionnaire, V1, "jarang")
    assert await item_total(storage, "in_balasan") == (1, 75.0)
    async with storage.transaction() as tx:
        scores = await tx.fetchall(
            "SELECT dimension, score FROM response_scores WHERE response_id = ?", (response,)
        )
    assert [(r["dimension"], r["score"]) for r in scores] == [("sdm", 75.0)]
    # taken out (a flag) and added back (the flag cleared): the same version-1 score
    async with storage.transaction() as tx:
        await apply_response(tx, questionnaire, response, -1)
    assert await item_total(storage, "in_balasan") == (0, 0.0)
    async with storage.transaction() as tx:
        await apply_response(tx, questionnaire, response, +1)
    assert await item_total(storage, "in_balasan") == (1, 75.0)
