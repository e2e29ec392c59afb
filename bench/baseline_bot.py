"""The load benchmark's baseline: a bare PTB bot making the same Bot API calls as ours.

Per button press it answers the callback query and edits the pressed message at the
same time (answerCallbackQuery + editMessageText, as ``bot/handlers.py`` does); per
text message it sends one message with an inline keyboard. No survey logic, no
database: what remains is the cost of PTB, HTTP and JSON, the ceiling our bot is
measured against. The screens are about as large as a real question screen so the
serialisation work is comparable.

    TELEGRAM_BOT_TOKEN=... TELEGRAM_BASE_URL=... python bench/baseline_bot.py [--sequential]

``--sequential`` handles one update at a time (PTB's default, ``concurrent_updates=False``):
the "strictly sequential bot" that the 50 ms target is compared with. Otherwise updates
run concurrently through the same per-user processor as our bot.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.app import CONNECTION_POOL_SIZE
from bot.http import AiohttpRequest
from bot.processor import PerUserUpdateProcessor

BODY = (
    "Dalam 12 bulan terakhir, seberapa sering petugas unit ini meminta imbalan di luar "
    "biaya resmi agar layanan Anda diproses? Jawaban Anda dirahasiakan."
)
LABELS = (
    "Tidak pernah",
    "Jarang",
    "Kadang-kadang",
    "Sering",
    "Sangat sering",
    "Tidak tahu",
    "Tidak ingin menjawab",
)  # the questionnaire's frekuensi scale since version 2 (seven options, as most questions)


def screen(step: int) -> tuple[str, InlineKeyboardMarkup]:
    """A question-sized screen; the step number makes every edit a real change."""
    text = f"<b>Integritas layanan</b>\nPertanyaan {step} dari 40\n\n{BODY}"
    rows = [
        [InlineKeyboardButton(label, callback_data=f"{step}|a|{i}")]
        for i, label in enumerate(LABELS)
    ]
    rows.append([InlineKeyboardButton("⬅️ Kembali", callback_data=f"{step}|b|")])
    return text, InlineKeyboardMarkup(rows)


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None
    text, markup = screen(1)
    await context.bot.send_message(
        message.chat_id, text, reply_markup=markup, parse_mode=ParseMode.HTML
    )


async def on_press(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.message is not None
    step = int((query.data or "0").split("|", 1)[0] or 0) + 1
    text, markup = screen(step)
    await asyncio.gather(
        query.answer(),
        context.bot.edit_message_text(
            text,
            chat_id=query.message.chat.id,
            message_id=query.message.message_id,
            reply_markup=markup,
            parse_mode=ParseMode.HTML,
        ),
    )


def build(token: str, base_url: str, sequential: bool) -> Application:  # type: ignore[type-arg]
    """Same HTTP client settings as ``bot/app.py``; the processor is the only choice."""
    request = AiohttpRequest(connection_limit=CONNECTION_POOL_SIZE)
    builder = (
        Application.builder()
        .token(token)
        .base_url(base_url)
        .request(request)
        .get_updates_request(AiohttpRequest(connection_limit=2, read_timeout=40.0))
    )
    builder = builder.concurrent_updates(False if sequential else PerUserUpdateProcessor())
    application = builder.build()
    application.add_handler(CallbackQueryHandler(on_press))
    application.add_handler(MessageHandler(filters.TEXT, on_text))
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequential", action="store_true", help="one update at a time")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"))
    logging.getLogger("httpx").setLevel(logging.WARNING)
    application = build(
        os.environ["TELEGRAM_BOT_TOKEN"], os.environ["TELEGRAM_BASE_URL"], args.sequential
    )
    application.run_polling()


if __name__ == "__main__":
    main()
