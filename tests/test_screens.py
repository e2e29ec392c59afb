"""The answer path's own Bot API calls (``bot/screens.py``) against the fake Bot API.

They bypass PTB's per-call objects, so these check what PTB's methods would have given:
the same request as Telegram sees it, the same exceptions, and no mixing of bodies
between concurrent calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from telegram import Bot
from telegram.error import BadRequest, Forbidden

from bot.http import AiohttpRequest
from bot.screens import answer_press, edit_screen, send_screen
from tests.support.fake_bot_api import FakeBotApi

TOKEN = "123456:TEST"
USER = 1001
BLOCKED = 1002
KEYBOARD = {"inline_keyboard": [[{"text": "Ya", "callback_data": "y"}]]}


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TOKEN, blocked_chats=[BLOCKED]) as server:
        yield server


@pytest.fixture
async def bot(api: FakeBotApi) -> AsyncIterator[Bot]:
    async with Bot(TOKEN, base_url=api.base_url, request=AiohttpRequest()) as client:
        yield client


async def test_send_then_edit_arrive_as_telegram_sees_them(api: FakeBotApi, bot: Bot) -> None:
    await send_screen(bot, USER, "<b>Satu</b> &amp; dua", KEYBOARD)
    await edit_screen(bot, USER, 1, "Tiga", None)
    sent, edited = api.calls_of("sendMessage")[0], api.calls_of("editMessageText")[0]
    assert sent.params == {
        "chat_id": USER,
        "text": "<b>Satu</b> &amp; dua",
        "parse_mode": "HTML",
        "reply_markup": KEYBOARD,
    }
    assert edited.params == {"chat_id": USER, "message_id": 1, "text": "Tiga", "parse_mode": "HTML"}
    assert edited.status == 200


async def test_errors_are_ptbs_exceptions(api: FakeBotApi, bot: Bot) -> None:
    with pytest.raises(BadRequest, match="parse entities"):
        await send_screen(bot, USER, "<kode>", None)
    with pytest.raises(Forbidden):
        await send_screen(bot, BLOCKED, "Halo", None)
    await send_screen(bot, USER, "Halo", KEYBOARD)
    with pytest.raises(BadRequest, match="not modified"):
        await edit_screen(bot, USER, 1, "Halo", KEYBOARD)
    with pytest.raises(BadRequest, match="not found"):
        await edit_screen(bot, USER, 99, "Halo", None)


async def test_answer_press(api: FakeBotApi, bot: Bot) -> None:
    await send_screen(bot, USER, "Pilih", KEYBOARD)
    update = api.press_button(USER, 1, "y")
    query_id = update["callback_query"]["id"]
    await answer_press(bot, query_id, "Tercatat", alert=True)
    assert api.callback_answers[query_id] == {
        "callback_query_id": query_id,
        "text": "Tercatat",
        "show_alert": True,
    }


async def test_concurrent_calls_never_mix_bodies(api: FakeBotApi, bot: Bot) -> None:
    chats = range(2000, 2100)
    await asyncio.gather(*(send_screen(bot, chat, f"untuk {chat}", None) for chat in chats))
    received = {call.params["chat_id"]: call.params["text"] for call in api.calls_of("sendMessage")}
    assert received == {chat: f"untuk {chat}" for chat in chats}


async def test_a_bot_on_another_request_class_is_refused(api: FakeBotApi) -> None:
    async with Bot(TOKEN, base_url=api.base_url) as plain:
        with pytest.raises(TypeError, match="AiohttpRequest"):
            await send_screen(plain, USER, "Halo", None)
