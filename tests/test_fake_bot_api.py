"""Checks that the fake Bot API speaks well enough to the real python-telegram-bot stack."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)

from tests.support.fake_bot_api import FakeBotApi

TOKEN = "123456:TEST"
USER = 1001


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TOKEN) as server:
        yield server


@pytest.fixture
async def bot(api: FakeBotApi) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=api.base_url) as client:
        yield client


def keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(text, callback_data=data)] for text, data in pairs]
    )


async def test_get_me_send_and_edit(api: FakeBotApi, bot: Bot) -> None:
    assert bot.username == api.bot_username
    first = await bot.send_message(USER, "Halo", reply_markup=keyboard(("Mulai", "start")))
    second = await bot.send_message(USER, "<b>Dua</b> &amp; tiga", parse_mode="HTML")
    assert (first.message_id, second.message_id) == (1, 2)
    assert first.chat.id == USER and first.from_user is not None and first.from_user.is_bot
    assert first.reply_markup == keyboard(("Mulai", "start"))
    assert second.text == "Dua & tiga"

    edited = await bot.edit_message_text(
        "Halo lagi", chat_id=USER, message_id=1, reply_markup=keyboard(("Ya", "yes"))
    )
    assert isinstance(edited, type(first)) and edited.text == "Halo lagi"
    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await bot.edit_message_text(
            "Halo lagi", chat_id=USER, message_id=1, reply_markup=keyboard(("Ya", "yes"))
        )
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER, message_id=99)
    with pytest.raises(BadRequest, match=r"(?i)can.t parse entities"):
        await bot.send_message(USER, "1 < 2", parse_mode="HTML")

    first_stored = api.chat_messages(USER)[0]
    assert (first_stored.text, first_stored.edits) == ("Halo lagi", 1)
    assert api.buttons(first_stored) == [("Ya", "yes")]
    assert api.button_data(USER, "ya") == "yes"
    assert api.last_message(USER).message_id == 2
    assert api.calls_of("sendMessage")[0].params["text"] == "Halo"
    assert await bot.delete_message(USER, 2)
    assert [m.message_id for m in api.chat_messages(USER)] == [1]


async def test_files_commands_and_errors(api: FakeBotApi, bot: Bot) -> None:
    photo = await bot.send_photo(USER, b"\x89PNG fake", caption="Grafik", filename="chart.png")
    assert photo.photo and photo.caption == "Grafik"
    doc = await bot.send_document(USER, b"a,b\n1,2\n", filename="hasil.csv")
    assert doc.document is not None and doc.document.file_name == "hasil.csv"
    upload = api.calls_of("sendPhoto")[0].params["photo"]
    assert (upload.filename, upload.content) == ("chart.png", b"\x89PNG fake")
    assert api.last_message(USER).is_document

    await bot.set_my_commands([("start", "Mulai")], language_code="id")
    await bot.set_my_commands([("start", "Start")])
    assert [c.description for c in await bot.get_my_commands(language_code="id")] == ["Mulai"]
    assert [c.description for c in await bot.get_my_commands()] == ["Start"]
    assert await bot.delete_my_commands(language_code="id")
    assert await bot.get_my_commands(language_code="id") == ()
    assert await bot.send_chat_action(USER, "typing")

    api.blocked_chats.add(2002)
    with pytest.raises(Forbidden, match="blocked"):
        await bot.send_message(2002, "hi")
    with pytest.raises(InvalidToken):
        await Bot("999:WRONG", base_url=api.base_url).get_me()

    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{api.base_url}{TOKEN}/noSuchMethod") as resp,
    ):
        assert resp.status == 404
        assert (await resp.json())["description"] == "Not Found: method not found"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_rate_limit_answers_429() -> None:
    async with (
        FakeBotApi(TOKEN, rate_limit_per_second=3) as api,
        Bot(TOKEN, base_url=api.base_url) as bot,
    ):
        for i in range(3):
            await bot.send_message(USER, f"m{i}")
        with pytest.raises(RetryAfter, match=r"(?i)retry in 1\b"):
            await bot.send_message(USER, "too many")
        assert api.too_many_requests == 1
        assert api.calls_of("sendMessage")[-1].status == 429


async def test_long_polling_offset_and_redelivery(api: FakeBotApi, bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=timedelta(seconds=0.3)) == ()
    assert time.monotonic() - started >= 0.25

    async def inject_later() -> None:
        await asyncio.sleep(0.1)
        api.send_text(USER, "/start@spi_test_bot now")

    task = asyncio.create_task(inject_later())
    started = time.monotonic()
    updates = await bot.get_updates(timeout=5)
    await task
    assert time.monotonic() - started < 2
    (update,) = updates
    assert update.message is not None and update.message.text == "/start@spi_test_bot now"
    assert update.message.entities[0].length == len("/start@spi_test_bot")

    # Without confirming, the same update comes back; confirming drops it.
    assert [u.update_id for u in await bot.get_updates()] == [update.update_id]
    assert await bot.get_updates(offset=update.update_id + 1) == ()

    raw = api.send_update(
        {
            "edited_message": {
                "message_id": 5,
                "date": 1,
                "edit_date": 2,
                "chat": {"id": USER, "type": "private"},
                "text": "ubah",
            }
        }
    )
    assert raw["update_id"] == update.update_id + 1
    (edited,) = await bot.get_updates(offset=raw["update_id"])
    assert edited.edited_message is not None
    api.redeliver(raw)
    (again,) = await bot.get_updates(offset=raw["update_id"] + 1)
    assert again.update_id == raw["update_id"]


async def _start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(
        f"Selamat datang {' '.join(context.args or [])}".strip(),
        reply_markup=keyboard(("✅ Setuju", "consent:yes"), ("Tidak", "consent:no")),
    )


async def _button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer()
    await query.edit_message_text(f"Pilihan: {query.data}")


async def test_application_long_polling_round_trip(api: FakeBotApi) -> None:
    app: Application = ApplicationBuilder().token(TOKEN).base_url(api.base_url).build()  # type: ignore[type-arg]
    app.add_handler(CommandHandler("start", _start))
    app.add_handler(CallbackQueryHandler(_button))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=1)
        try:
            api.send_text(USER, "/start tamu")
            await api.wait_for_call("sendMessage")
            message = api.last_message(USER)
            assert message.text == "Selamat datang tamu"
            assert api.buttons(message)[0] == ("✅ Setuju", "consent:yes")

            mark = api.mark()
            api.press_label(USER, "Setuju")
            await api.wait_for_call("editMessageText", after=mark)
            await api.wait_for(lambda: api.last_message(USER).text == "Pilihan: consent:yes")
            assert api.calls_of("answerCallbackQuery")
            with pytest.raises(AssertionError, match="waiting for a sendPhoto"):
                await api.wait_for_call("sendPhoto", timeout=0.05)
        finally:
            await app.updater.stop()
            await app.stop()


async def test_control_api(api: FakeBotApi, bot: Bot) -> None:
    await bot.send_message(USER, "Pertanyaan", reply_markup=keyboard(("A", "q1:a")))
    async with aiohttp.ClientSession() as http:
        items = [
            {"kind": "text", "user_id": USER, "text": "/start"},
            {"kind": "press", "user_id": USER, "message_id": 1, "data": "q1:a"},
            {
                "message": {
                    "message_id": 9,
                    "date": 1,
                    "chat": {"id": USER, "type": "private"},
                    "sticker": {
                        "file_id": "stk",
                        "file_unique_id": "ustk",
                        "width": 512,
                        "height": 512,
                        "is_animated": False,
                        "is_video": False,
                        "type": "regular",
                    },
                }
            },
        ]
        async with http.post(f"{api.root_url}/_control/updates", json=items) as resp:
            body = await resp.json()
            assert [u["update_id"] for u in body["result"]] == [1, 2, 3]
        async with http.get(f"{api.root_url}/_control/calls", params={"since": "1"}) as resp:
            body = await resp.json()
            assert [c["method"] for c in body["result"]] == ["sendMessage"]
        async with http.get(
            f"{api.root_url}/_control/messages", params={"chat_id": str(USER)}
        ) as resp:
            assert (await resp.json())["result"][0]["text"] == "Pertanyaan"
        async with http.get(f"{api.root_url}/_control/stats") as resp:
            stats = (await resp.json())["result"]
            assert stats["by_method"]["sendMessage"] == 1 and stats["pending_updates"] == 3
    (_, pressed, sticker) = await bot.get_updates()
    assert sticker.message is not None and sticker.message.sticker is not None
    assert pressed.callback_query is not None
    assert pressed.callback_query.message is not None
    assert isinstance(pressed.callback_query.message, Message)
    assert pressed.callback_query.message.reply_markup == keyboard(("A", "q1:a"))


async def test_runs_as_a_process() -> None:
    root = Path(__file__).resolve().parent.parent
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.fake_bot_api",
        "--port",
        "0",
        cwd=root,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        base_url = line.rsplit(" ", 1)[-1].strip()
        async with Bot(TOKEN, base_url=base_url) as bot:
            assert bot.username
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
