"""Scores through Telegram: officials see their own unit only; admins see everything."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import openpyxl
import pytest

from tests.support.fake_bot_api import FakeBotApi
from tests.support.telegram_driver import (
    TelegramUser,
    running_bot,
    settings_for,
    start_as_service_user,
)

ADMIN = 900001
OFFICIAL = 900002
STRANGER = 900003


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as server:
        yield server


async def complete_survey(user: TelegramUser, unit_query: str, unit_label: str) -> None:
    await start_as_service_user(user, unit_query, unit_label)
    await user.answer_all()
    await user.press("Kirim", expect="Terima kasih")


async def command(api: FakeBotApi, user_id: int, text: str, method: str = "sendMessage") -> str:
    mark = api.mark()
    api.send_text(user_id, text)
    call = await api.wait_for_call(
        method, predicate=lambda c: c.params.get("chat_id") == user_id, after=mark, timeout=10
    )
    return str(call.params.get("text") or call.params.get("caption") or "")


async def test_official_admin_and_stranger(api: FakeBotApi, tmp_path: Path) -> None:
    settings = settings_for(
        api, tmp_path / "spi.sqlite3", admin_ids=[ADMIN], chat_export_enabled=True
    )
    async with running_bot(settings) as svc:
        respondents = [TelegramUser(api, 700000 + i) for i in range(6)]
        await asyncio.gather(
            *(complete_survey(r, "kesehatan", "Dinas Kesehatan") for r in respondents)
        )

        refusal = await command(api, STRANGER, "/skor dinkes")
        assert "hanya untuk" in refusal
        assert "hanya untuk" in await command(api, STRANGER, "/peringkat")
        assert "hanya untuk" in await command(api, STRANGER, "/undang dinkes")
        assert "hanya untuk" in await command(api, STRANGER, "/ekspor")

        invite = await command(api, ADMIN, "/undang dinkes")
        code = re.search(r"/daftar ([A-Z0-9]{10})", invite)
        assert code, invite
        welcome = await command(api, OFFICIAL, f"/daftar {code.group(1)}")
        assert "Dinas Kesehatan" in welcome
        assert "sudah digunakan" in await command(api, STRANGER, f"/daftar {code.group(1)}")

        own = await command(api, OFFICIAL, "/skor")
        assert "Dinas Kesehatan" in own and "Indeks integritas" in own
        assert re.search(r"[🟢🟡🔴] \d", own), own
        assert "sementara" in own  # internal and expert samples are still missing
        photo = await api.wait_for_call(
            "sendPhoto", predicate=lambda c: c.params.get("chat_id") == OFFICIAL
        )
        assert photo.params["photo"].content.startswith(b"\x89PNG")
        other = await command(api, OFFICIAL, "/skor tembalang")
        assert "hanya untuk" in other

        recorded = await command(api, ADMIN, "/koreksi dinkes pengarahan 1,5 arahan atasan")
        assert "Koreksi #" in recorded and "pengarahan responden" in recorded
        corrected = await command(api, OFFICIAL, "/skor")
        assert "Faktor koreksi yang berlaku" in corrected
        assert "• pengarahan responden: −1,50" in corrected
        assert "arahan atasan" not in corrected  # the reason is for the inspectorate
        number = re.search(r"#(\d+)", recorded)
        assert number is not None
        await command(api, ADMIN, f"/koreksi batal {number.group(1)}")
        assert "Faktor koreksi" not in await command(api, OFFICIAL, "/skor")

        ranking = await command(api, ADMIN, "/peringkat")
        assert "1. Dinas Kesehatan" in ranking
        recap = await command(api, ADMIN, "/rekap")
        assert "n 5–9 " in recap  # six service users, shown as a range
        await command(api, ADMIN, "/ekspor", method="sendDocument")
        document = api.calls_of("sendDocument")[-1].params["document"]
        workbook = openpyxl.load_workbook(io.BytesIO(document.content))
        assert workbook.sheetnames == ["Skor unit", "Skor dimensi", "Buku kode", "Audit"]
        async with svc.storage.read() as tx:
            audit = await tx.fetchall("SELECT actor, action, detail FROM audit_log")
        assert (f"telegram:{ADMIN}", "export") in [(r["actor"], r["action"]) for r in audit]


async def test_chat_export_is_off_unless_enabled(api: FakeBotApi, tmp_path: Path) -> None:
    settings = settings_for(api, tmp_path / "spi.sqlite3", admin_ids=[ADMIN])
    async with running_bot(settings) as svc:
        answer = await command(api, ADMIN, "/ekspor")
        assert "spi-bot export" in answer
        assert not api.calls_of("sendDocument")
        async with svc.storage.read() as tx:
            assert await tx.fetchall("SELECT 1 FROM audit_log WHERE action = 'export'") == []
