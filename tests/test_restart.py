"""The bot process is killed mid-survey and restarted: nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

from tests.support.bot_process import start_bot
from tests.support.fake_bot_api import FakeBotApi
from tests.support.telegram_driver import TelegramUser, start_as_service_user

USER = 66602345


async def wait_until_polling(api: FakeBotApi) -> None:
    mark = api.mark()
    await api.wait_for_call("getUpdates", after=mark, timeout=30)


async def test_killed_bot_resumes_where_the_respondent_was(tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    log_path = tmp_path / "bot.log"
    async with FakeBotApi() as api:
        process = start_bot(api, db_path, log_path)
        try:
            await wait_until_polling(api)
            user = TelegramUser(api, USER)
            await user.send("/bantuan", expect="/lanjut", timeout=15)  # the bot is up
            await start_as_service_user(user, "tembalang", "Kecamatan Tembalang")
            await user.press("Warga", expect="Pertanyaan 2 dari")
            await user.send("4", expect="Pertanyaan 3 dari")
            await user.press("Sangat jelas", expect="Pertanyaan 4 dari")
        finally:
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait, 10)

        with sqlite3.connect(db_path) as db:
            acknowledged = db.execute(
                "SELECT COUNT(*) FROM answers WHERE question_id NOT LIKE 'screen%'"
            ).fetchone()[0]
        assert acknowledged == 3

        process = start_bot(api, db_path, log_path)
        try:
            await wait_until_polling(api)
            user = TelegramUser(api, USER)
            await user.send("/lanjut", expect="Pertanyaan 4 dari", timeout=15)
            await user.answer_all()
            await user.press("Kirim", expect="Terima kasih")
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 30)
        assert process.returncode == 0, log_path.read_text()

    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT status FROM responses").fetchall() == [("completed",)]
    log_text = log_path.read_text()
    assert api.token not in log_text
    assert "Traceback" not in log_text, log_text
