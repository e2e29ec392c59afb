"""Engine choices → Telegram inline keyboards."""

from __future__ import annotations

from typing import cast

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from core.events import Button

MAX_CALLBACK_BYTES = 64  # Telegram's limit on callback_data


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


def keyboard_payload(rows: list[list[Button]]) -> InlineKeyboardMarkup | None:
    """The same keyboard as the JSON the Bot API receives, for the answer path.

    Building PTB's button objects and turning them back into dictionaries cost about a
    tenth of the bot's CPU per press; PTB sends a JSON-ready value unchanged, so the
    request is the same. Typed as the markup it stands for: only sent, never read.
    """
    if not rows:
        return None
    _check(rows)
    payload = {
        "inline_keyboard": [
            [{"text": b.label, "callback_data": b.token} for b in row] for row in rows
        ]
    }
    return cast(InlineKeyboardMarkup, payload)
