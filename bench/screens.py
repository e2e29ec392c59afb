"""CPU per button press on the answer path's Bot API calls, without the network.

Both sides answer the callback query and edit the pressed message with a question
screen (seven options and "Kembali"), against a request class that returns at once
what Telegram returns for an edit (the edited message with its keyboard):

- PTB's methods and buttons: ``answer_callback_query`` and ``edit_message_text`` with a
  keyboard of PTB buttons, as the baseline bot (``bench/baseline_bot.py``) does;
- PTB's methods with the keyboard as JSON (``bot/keyboards.keyboard_payload``), as our
  bot did before ``bot/screens.py``;
- prepared JSON: ``keyboard_payload`` and ``bot/screens.py``, as our bot does now.

What remains in both is building, encoding and parsing; HTTP itself is not in it.

    python bench/screens.py [--presses 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

from telegram import Bot
from telegram.constants import ParseMode
from telegram.ext import Defaults, ExtBot
from telegram.request import BaseRequest, RequestData

from bench.baseline_bot import screen
from bot.http import AiohttpRequest
from bot.keyboards import keyboard_payload
from bot.screens import answer_press, edit_screen
from core.events import Button

CHAT = 4242


def edited_message(text: str, markup: dict[str, object]) -> bytes:
    """Telegram's reply to an edit: the whole message, keyboard included."""
    result = {
        "message_id": 7,
        "date": 1_780_000_000,
        "edit_date": 1_780_000_001,
        "chat": {"id": CHAT, "type": "private", "first_name": "Budi"},
        "from": {"id": 1, "is_bot": True, "first_name": "SPI Bot", "username": "spi_bot"},
        "text": text,
        "reply_markup": markup,
    }
    return json.dumps({"ok": True, "result": result}).encode()


class Canned(AiohttpRequest):
    """Answers every call at once: the edited message for edits, True otherwise."""

    def __init__(self, edited: bytes) -> None:
        super().__init__()
        self.edited = edited

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if request_data is not None:
            request_data.json_payload  # noqa: B018  (PTB's request pays this encoding)
        if url.endswith("editMessageText"):
            return 200, self.edited
        return 200, b'{"ok":true,"result":true}'


async def per_press(press: Callable[[int], Awaitable[None]], presses: int) -> float:
    start = time.process_time()
    for step in range(presses):
        await press(step)
    return (time.process_time() - start) / presses * 1e6


async def main_async(args: argparse.Namespace) -> None:
    text, markup = screen(1)
    edited = edited_message(text, markup.to_dict())
    bot: Bot = ExtBot(
        "123456:BENCH",
        request=Canned(edited),
        get_updates_request=Canned(edited),
        defaults=Defaults(parse_mode=ParseMode.HTML),
    )
    rows = [
        [Button(label=b.text, token=str(b.callback_data))]
        for row in markup.inline_keyboard
        for b in row
    ]

    async def ptb(step: int) -> None:
        text, markup = screen(step)
        await asyncio.gather(
            bot.answer_callback_query(f"cbq-{step}"),
            bot.edit_message_text(
                text, chat_id=CHAT, message_id=7, reply_markup=markup, parse_mode=ParseMode.HTML
            ),
        )

    async def json_keyboard(step: int) -> None:
        await asyncio.gather(
            bot.answer_callback_query(f"cbq-{step}"),
            bot.edit_message_text(
                text,
                chat_id=CHAT,
                message_id=7,
                reply_markup=keyboard_payload(rows),  # type: ignore[arg-type]
                parse_mode=ParseMode.HTML,
            ),
        )

    async def ours(step: int) -> None:
        await asyncio.gather(
            answer_press(bot, f"cbq-{step}"),
            edit_screen(bot, CHAT, 7, text, keyboard_payload(rows)),
        )

    variants = {
        "PTB's methods and buttons": ptb,
        "PTB's methods, keyboard as JSON": json_keyboard,
        "prepared JSON (bot/screens.py)": ours,
    }
    taken: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, press in variants.items():
            taken[name].append(await per_press(press, args.presses))
    medians = {name: statistics.median(values) for name, values in taken.items()}
    base = medians["PTB's methods and buttons"]
    print(f"{args.presses} presses x {args.rounds} rounds, CPU per press (median of rounds):")
    for name, value in medians.items():
        print(f"  {name:<34} {value:6.1f} µs  ({value / base:.2f}x PTB's)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presses", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
