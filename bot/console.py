"""The terminal channel: the same engine and database, one respondent, stdin/stdout.

It lets a new user try the real questionnaire without a Telegram account, and
proves the engine is channel-neutral. Buttons are shown numbered; typing the
number presses the button, anything else is sent as text or a /command.
"""

from __future__ import annotations

import asyncio
import html
import re
import sys
from typing import TextIO

from core.engine import Engine
from core.events import Button, Choice, Command, Event, Incoming, Sender, Text

CHANNEL = "console"
_TAGS = re.compile(r"</?(b|i)>")


def render(text: str) -> str:
    return html.unescape(_TAGS.sub("", text))


async def read_line(stream: TextIO) -> str | None:
    line = await asyncio.to_thread(stream.readline)
    return line if line else None


def parse_input(line: str, buttons: list[Button]) -> Event | None:
    text = line.strip()
    if not text:
        return None
    if text.isdigit() and 1 <= int(text) <= len(buttons):
        return Choice(token=buttons[int(text) - 1].token)
    if text.startswith("/"):
        head, _, args = text.partition(" ")
        return Command(name=head[1:].lower(), args=args.strip())
    return Text(text=text)


async def run_console(
    engine: Engine, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout, user: str = "local"
) -> None:
    sender = Sender(channel=CHANNEL, user_id=user)
    buttons: list[Button] = []
    event: Event | None = Command(name="start")
    stdout.write(
        "spi-bot (terminal). Type the number of a choice, /bantuan for help, Ctrl-D to leave.\n"
    )
    while True:
        if event is not None:
            outcome = await engine.handle(Incoming(sender=sender, event=event))
            if outcome.notice:
                stdout.write(f"({render(outcome.notice)})\n")
            for reply in outcome.replies:
                stdout.write("\n" + render(reply.text) + "\n")
                if reply.buttons:
                    buttons = [b for row in reply.buttons for b in row]
                    for number, button in enumerate(buttons, 1):
                        stdout.write(f"  [{number}] {render(button.label)}\n")
            stdout.flush()
        stdout.write("> ")
        stdout.flush()
        line = await read_line(stdin)
        if line is None:
            stdout.write("\n")
            return
        event = parse_input(line, buttons)
