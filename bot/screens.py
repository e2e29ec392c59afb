"""The survey's own Bot API calls: show a screen, answer a button press.

These run for every answer, so they send the JSON Telegram receives, built once, and
skip PTB's per-call objects (see ``AiohttpRequest.post_json``). Everything else the bot
sends, admin replies and broadcasts included, goes through PTB's methods as usual.
"""

from __future__ import annotations

from telegram import Bot
from telegram.constants import ParseMode

from bot.http import AiohttpRequest
from bot.keyboards import Keyboard


def _request(bot: Bot) -> AiohttpRequest:
    request = bot.request
    if not isinstance(request, AiohttpRequest):
        raise TypeError(f"the bot must use AiohttpRequest, not {type(request).__name__}")
    return request


async def _call(bot: Bot, method: str, payload: dict[str, object]) -> None:
    await _request(bot).post_json(f"{bot.base_url}/{method}", payload)


def _screen(chat_id: int, text: str, keyboard: Keyboard | None) -> dict[str, object]:
    payload: dict[str, object] = {
        "chat_id": chat_id,
        "text": text,
        "parse_mode": ParseMode.HTML.value,
    }
    if keyboard is not None:
        payload["reply_markup"] = keyboard
    return payload


async def edit_screen(
    bot: Bot, chat_id: int, message_id: int, text: str, keyboard: Keyboard | None
) -> None:
    payload = _screen(chat_id, text, keyboard)
    payload["message_id"] = message_id
    await _call(bot, "editMessageText", payload)


async def send_screen(bot: Bot, chat_id: int, text: str, keyboard: Keyboard | None) -> None:
    await _call(bot, "sendMessage", _screen(chat_id, text, keyboard))


async def answer_press(
    bot: Bot, query_id: str, text: str | None = None, alert: bool = False
) -> None:
    payload: dict[str, object] = {"callback_query_id": query_id}
    if text is not None:
        payload["text"] = text
    if alert:
        payload["show_alert"] = True
    await _call(bot, "answerCallbackQuery", payload)
