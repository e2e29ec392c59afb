"""End to end: the real PTB Application over HTTP against the fake Bot API, real SQLite."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fake_bot_api import BotMessage, FakeBotApi
from tests.support.telegram_driver import (
    TelegramUser,
    running_bot,
    settings_for,
    start_as_service_user,
)
from tests.support.walker import answer_one

USER = 55501234


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as server:
        yield server


def table_rows(db_path: Path, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db_path) as db:
        return list(db.execute(f"SELECT * FROM {table}"))


async def test_respondent_from_start_to_thanks(api: FakeBotApi, tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with running_bot(settings_for(api, db_path)):
        user = TelegramUser(api, USER)
        await start_as_service_user(user)
        answered = await user.answer_all()
        # Button answers edit the question message in place instead of flooding the chat.
        assert len(api.chat_messages(USER)) < answered // 2
        await user.press("Kirim", expect="Terima kasih")

        languages = {key[1] for key in api.commands}
        assert {"", "en"} <= languages or {None, "en"} <= languages

    responses = table_rows(db_path, "responses")
    assert [(r[4], r[5]) for r in responses] == [("dinkes", "completed")]
    assert len(table_rows(db_path, "answers")) >= 14
    with sqlite3.connect(db_path) as db:
        for table in ("responses", "answers", "sessions", "processed_events"):
            dump = "\n".join(str(row) for row in db.execute(f"SELECT * FROM {table}"))
            assert str(USER) not in dump, table
            assert "Budi" not in dump
    assert (db_path.stat().st_mode & 0o777) == 0o600


async def test_duplicate_update_changes_nothing(api: FakeBotApi, tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with running_bot(settings_for(api, db_path)):
        user = TelegramUser(api, USER)
        await start_as_service_user(user)
        press = api.press_label(USER, "Warga")
        await api.wait_for(lambda: "Pertanyaan 2" in (user.screen().text or ""))
        answers_before = table_rows(db_path, "answers")
        mark = api.mark()
        api.redeliver(press)
        typed = api.send_text(USER, "7")
        await api.wait_for(lambda: "Pertanyaan 3" in (user.screen().text or ""))
        api.redeliver(typed)  # a replayed "7" must not answer question 3
        await api.wait_for(lambda: api.mark() > mark + 1)
        await user.send("/privasi", expect="pseudonim")
        answers_after = table_rows(db_path, "answers")
        assert len(answers_after) == len(answers_before) + 1
        assert "Pertanyaan 3" in (user.screen().text or "")


def snapshot(db_path: Path) -> list[list[tuple[object, ...]]]:
    tables = ("sessions", "responses", "answers", "processed_events", "contacts")
    return [sorted(table_rows(db_path, table), key=repr) for table in tables]


async def test_redelivered_update_gets_the_current_screen_and_changes_nothing(
    api: FakeBotApi, tmp_path: Path
) -> None:
    """As after a crash between the commit and the reply: the person is not left hanging."""
    db_path = tmp_path / "spi.sqlite3"
    async with running_bot(settings_for(api, db_path)):
        user = TelegramUser(api, USER)
        await start_as_service_user(user)
        pressed = api.press_label(USER, "Warga")  # edits this message into question 2
        await api.wait_for(lambda: "Pertanyaan 2" in (user.screen().text or ""))
        typed = api.send_text(USER, "7")  # question 3 comes as a new message
        await api.wait_for(lambda: "Pertanyaan 3" in (user.screen().text or ""))
        current, before = user.screen(), snapshot(db_path)

        mark = api.mark()
        api.redeliver(typed)  # the "7" is not taken as the answer to question 3
        await api.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == USER, after=mark)
        again = api.chat_messages(USER)[-1]
        assert "Pertanyaan 3" in (again.text or "") and again.text == current.text
        assert FakeBotApi.buttons(again) == FakeBotApi.buttons(current)

        query_id = pressed["callback_query"]["id"]
        message_id = pressed["callback_query"]["message"]["message_id"]
        for _ in range(2):  # twice: the same answer each time
            mark = api.mark()
            api.redeliver(pressed)
            await api.wait_for_call(
                "answerCallbackQuery",
                lambda c: c.params["callback_query_id"] == query_id,
                after=mark,
            )

            def edited_message() -> BotMessage:
                return next(m for m in api.chat_messages(USER) if m.message_id == message_id)

            await api.wait_for(lambda: "Pertanyaan 3" in (edited_message().text or ""))
            edited = edited_message()
            assert edited.text == current.text
            assert FakeBotApi.buttons(edited) == FakeBotApi.buttons(current)
            assert snapshot(db_path) == before
        await user.press("Sangat jelas", expect="Pertanyaan 4")  # and the survey goes on


async def test_a_flood_from_one_account_does_not_delay_another(tmp_path: Path) -> None:
    """1,000 presses from one account while another person answers (20 ms round trips)."""
    async with FakeBotApi(latency=0.02) as api, running_bot(
        settings_for(api, tmp_path / "spi.sqlite3")
    ):
        user = TelegramUser(api, USER)
        await start_as_service_user(user)
        flooder = USER + 1
        flood_ids = {
            api.press_button(flooder, 1, f"{n}|a|x")["callback_query"]["id"]
            for n in range(1000)
        }
        latencies = []
        for _ in range(10):
            started = time.monotonic()
            await answer_one(user)
            latencies.append(time.monotonic() - started)
        latencies.sort()
        p95 = latencies[int(0.95 * len(latencies))]
        # Before the fix each press waited behind the whole flood (tens of seconds); the
        # bound is far from that, and loose enough for a loaded machine: the real figure
        # is measured in bench/, not asserted here.
        assert p95 < 5.0, f"press p95 {p95:.2f} s during a flood"
        # the flood was dropped without a Bot API call per press
        flood_answers = [
            c
            for c in api.calls_of("answerCallbackQuery")
            if c.params["callback_query_id"] in flood_ids
        ]
        assert len(flood_answers) <= 40


async def test_stale_and_forged_buttons(api: FakeBotApi, tmp_path: Path) -> None:
    async with running_bot(settings_for(api, tmp_path / "spi.sqlite3")):
        user = TelegramUser(api, USER)
        await start_as_service_user(user)
        old_data = api.button_data(USER, "Pelaku usaha")
        await user.press("Warga", expect="Pertanyaan 2")
        for data in (old_data, "0|a|x", "not-ours", "9" * 64):
            mark = api.mark()
            api.press_button(USER, user.screen().message_id, data)
            call = await api.wait_for_call("answerCallbackQuery", after=mark)
            assert call.params.get("text"), data
        assert "Pertanyaan 2" in (user.screen().text or "")
        assert not [c for c in api.calls if c.status >= 500]


async def test_group_chat_and_stickers(api: FakeBotApi, tmp_path: Path) -> None:
    async with running_bot(settings_for(api, tmp_path / "spi.sqlite3")):
        mark = api.mark()
        api.send_text(USER, "/start", chat_id=-100123, chat_type="supergroup")
        call = await api.wait_for_call("sendMessage", after=mark)
        assert call.params["chat_id"] == -100123 and "pribadi" in call.params["text"]
        user = TelegramUser(api, USER)
        mark = api.mark()
        api.send_update(
            {
                "message": {
                    "message_id": 9,
                    "date": 0,
                    "chat": {"id": USER, "type": "private"},
                    "from": {"id": USER, "is_bot": False, "first_name": "Budi"},
                    "sticker": {
                        "file_id": "s",
                        "file_unique_id": "s",
                        "width": 1,
                        "height": 1,
                        "is_animated": False,
                        "is_video": False,
                        "type": "regular",
                    },
                }
            }
        )
        call = await api.wait_for_call("sendMessage", after=mark)
        assert "teks" in call.params["text"]
        await user.send("halo", expect="/start")
