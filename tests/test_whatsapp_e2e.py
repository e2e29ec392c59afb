"""End to end: the real WhatsApp channel over HTTP against the fake Cloud API, real SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_whatsapp_api import FakeWhatsAppApi
from tests.whatsapp_driver import WhatsAppUser, running_whatsapp, settings_for, start_survey

WA_ID = "6281234567890"


@pytest.fixture
async def api() -> AsyncIterator[FakeWhatsAppApi]:
    async with FakeWhatsAppApi() as server:
        yield server


def rows(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db_path) as db:
        return list(db.execute(sql))


@pytest.mark.parametrize("group", ["eksternal", "internal", "eksper"])
async def test_respondent_completes_each_group(
    api: FakeWhatsAppApi, tmp_path: Path, group: str
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with running_whatsapp(api, settings_for(api, db_path)) as runtime:
        user = WhatsAppUser(api, runtime, WA_ID)
        await start_survey(user, group)
        answered = await user.answer_all()
        await user.press("Kirim", expect="Terima kasih")
        print(api.transcript(WA_ID))
    assert answered >= 14
    assert not api.refused, api.refused  # every screen fitted WhatsApp's limits
    assert rows(db_path, "SELECT group_code, unit_code, status, channel FROM responses") == [
        (group, "dinkes", "completed", "whatsapp")
    ]
    with sqlite3.connect(db_path) as db:
        for table in ("responses", "answers", "sessions", "processed_events", "response_scores"):
            dump = "\n".join(str(row) for row in db.execute(f"SELECT * FROM {table}"))
            assert WA_ID not in dump, table
            assert "Budi" not in dump, table
