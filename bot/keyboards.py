"""Engine choices → Telegram inline keyboards."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from core.events import Button

MAX_CALLBACK_BYTES = 64  # Telegram's limit on callback_data

# An inline keyboard as the Bot API's JSON: {"inline_keyboard": [[{"text", "callback_data"}]]}
Keyboard = dict[str, list[list[dict[str, str]]]]


def _check(rows: list[list[Button]]) -> None:
    for row in rows:
        for button in row:
            if len(button.token.encode()) > MAX_CALLBACK_BYTES:
                raise ValueError(f"callback data over {MAX_CALLBACK_BYTES} bytes: {button.token}")


def inline_keyboard(rows: list[list[Button]]) -> InlineKeyboardMarkup | None:
    if not rows:
        return None
    _check(rows)
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(b.label, callback_data=b.token) for b in row] for row in rows]
    )


def keyboard_payload(rows: list[list[Button]]) -> Keyboard | None:
    """The keyboard as the JSON the Bot API receives, for the answer path (``bot/screens.py``).

    Building PTB's button objects only for PTB to turn them back into dictionaries cost
    about a tenth of the bot's CPU per press.
    """
    if not rows:
        return None
    _check(rows)
    return {
        "inline_keyboard": [
            [{"text": b.label, "callback_data": b.token} for b in row] for row in rows
        ]
    }
