"""The terminal channel: the same engine, one respondent, stdin/stdout.

It lets a new user try the real questionnaire without a Telegram account, and
proves the engine is channel-neutral. It runs on a try-out database of its own
(see bot.services.tryout_database), so a try-out never counts in the figures.

Buttons are shown with letter keys (a, b, ...): typing the letter presses the
button, so a number typed on a question that asks for a number is that number,
never a button; anything else is sent as text or a /command.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import html
import io
import os
import re
import string
import sys
from pathlib import Path
from typing import TextIO

from core.engine import Engine
from core.events import Button, Choice, Command, Event, Incoming, Sender, Text

CHANNEL = "console"
_TAGS = re.compile(r"</?(b|i)>")


def render(text: str) -> str:
    return html.unescape(_TAGS.sub("", text))


def button_key(index: int) -> str:
    """a, b, ..., z, aa, ab, ...: keys that can never be read as a number."""
    letters = string.ascii_lowercase
    key = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, len(letters))
        key = letters[rest] + key
    return key


def parse_input(line: str, keys: dict[str, Button]) -> Event | None:
    text = line.strip()
    if not text:
        return None
    button = keys.get(text.lower())
    if button is not None:
        return Choice(token=button.token)
    if text.startswith("/"):
        head, _, args = text.partition(" ")
        return Command(name=head[1:].lower(), args=args.strip())
    return Text(text=text)


class LineReader:
    """Lines from stdin without a blocking thread, so Ctrl-C quits at once.

    A pipe or a terminal is watched by the event loop; a regular file (which never
    blocks for long) is read in a worker thread.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._fd: int | None = None
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            fd = stream.fileno()
            loop.add_reader(fd, self._on_readable)
            self._fd = fd

    def _on_readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close_reader()
            if self._pending:
                self._lines.put_nowait(self._pending)
            self._pending = ""
            self._lines.put_nowait(None)
            return
        self._pending += self._decoder.decode(data)
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._lines.put_nowait(line + "\n")

    def _close_reader(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._fd = None

    async def readline(self) -> str | None:
        if self._fd is None and self._lines.empty():
            line = await asyncio.to_thread(self._stream.readline)
            return line if line else None
        return await self._lines.get()

    def close(self) -> None:
        self._close_reader()


def header(database: Path | None) -> str:
    where = (
        f"answers go to the try-out database {database}, never to the bot's"
        if database is not None
        else "a try-out"
    )
    return (
        f"spi-bot in the terminal: {where}.\n"
        "Type the letter of a choice (a, b, ...); type a number or words to answer; "
        "/bantuan for help; Ctrl-D or Ctrl-C to leave.\n"
    )


async def run_console(
    engine: Engine,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
    user: str = "local",
    database: Path | None = None,
) -> None:
    sender = Sender(channel=CHANNEL, user_id=user)
    keys: dict[str, Button] = {}
    event: Event | None = Command(name="start")
    stdout.write(header(database))
    reader = LineReader(stdin)
    try:
        while True:
            if event is not None:
                outcome = await engine.handle(Incoming(sender=sender, event=event))
                if outcome.notice:
                    stdout.write(f"({render(outcome.notice)})\n")
                for reply in outcome.replies:
                    stdout.write("\n" + render(reply.text) + "\n")
                    if reply.buttons:
                        buttons = [b for row in reply.buttons for b in row]
                        keys = {button_key(i): b for i, b in enumerate(buttons)}
                        for key, button in keys.items():
                            stdout.write(f"  [{key}] {render(button.label)}\n")
                stdout.flush()
            stdout.write("> ")
            stdout.flush()
            line = await reader.readline()
            if line is None:
                stdout.write("\n")
                return
            event = parse_input(line, keys)
    finally:
        reader.close()
