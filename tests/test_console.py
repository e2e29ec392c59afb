"""`spi-bot console` driven through stdin: the same survey without Telegram."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import sys
from pathlib import Path

from core.config import PROJECT_ROOT


async def read_screen(stream: asyncio.StreamReader) -> str:
    """Everything printed up to the next prompt."""
    buffer = b""
    while not buffer.endswith(b"> "):
        chunk = await asyncio.wait_for(stream.read(4096), timeout=20)
        assert chunk, buffer.decode()
        buffer += chunk
    return buffer.decode()


def choice(screen: str, label: str) -> str | None:
    for key, text in re.findall(r"^\s+\[([a-z]+)\] (.*)$", screen, flags=re.MULTILINE):
        if label in text:
            return str(key)
    return None


def question_number(screen: str) -> int:
    found = re.findall(r"Pertanyaan (\d+) dari", screen)
    assert found, screen
    return int(found[-1])


class Console:
    """`python -m bot` without a token, driven line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, database: Path) -> tuple[Console, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "SPI_"))}
        env["DATABASE_PATH"] = str(database)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            cwd=PROJECT_ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        return cls(process), await read_screen(process.stdout)

    async def say(self, line: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()
        return await read_screen(self.process.stdout)

    async def to_first_question(self, screen: str) -> str:
        assert "sukarela" in screen
        for label in ("setuju", "Pengguna layanan"):
            key = choice(screen, label)
            assert key, screen
            screen = await self.say(key)
        screen = await self.say("kesehatan")
        screen = await self.say(choice(screen, "Dinas Kesehatan") or "")
        for label in ("Ya, pernah", "Saya urus sendiri"):  # the unit first, then screening
            key = choice(screen, label)
            assert key, screen
            screen = await self.say(key)
        return screen

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        return (await self.process.stderr.read()).decode()


async def test_console_survey_to_the_end(tmp_path: Path) -> None:
    bot_database = tmp_path / "local.sqlite3"
    console, screen = await Console.start(bot_database)
    assert f"try-out database {tmp_path / 'spi-tryout.sqlite3'}" in screen.splitlines()[0]
    screen = await console.to_first_question(screen)
    steps = 0
    while not choice(screen, "Kirim"):
        assert "Pertanyaan" in screen, screen
        if choice(screen, "Selesai"):
            screen = await console.say("a")
            screen = await console.say(choice(screen, "Selesai") or "")
        elif choice(screen, "Tidak pernah"):
            screen = await console.say(choice(screen, "Tidak pernah") or "")
        elif "angka" in screen:
            screen = await console.say("2")
        elif choice(screen, "Lewati"):
            screen = await console.say(choice(screen, "Lewati") or "")
        else:
            screen = await console.say("a")
        steps += 1
        assert steps < 80, screen
    screen = await console.say(choice(screen, "Kirim") or "")
    assert "Terima kasih" in screen
    assert console.process.stdin is not None
    console.process.stdin.close()
    assert await asyncio.wait_for(console.process.wait(), timeout=20) == 0

    # A try-out never reaches the bot's database, so it can never count in /skor.
    assert not bot_database.exists()
    tryout = tmp_path / "spi-tryout.sqlite3"
    key_file = tmp_path / "spi-tryout.sqlite3.key"
    assert key_file.exists() and (key_file.stat().st_mode & 0o777) == 0o600
    with sqlite3.connect(tryout) as db:
        assert db.execute("SELECT status, channel FROM responses").fetchall() == [
            ("completed", "console")
        ]


async def test_numbers_answer_number_questions_and_odd_digits_do_not_crash(
    tmp_path: Path,
) -> None:
    console, screen = await Console.start(tmp_path / "spi.sqlite3")
    screen = await console.to_first_question(screen)
    steps = 0
    while "angka" not in screen:  # walk to the number question
        if choice(screen, "Tidak pernah"):
            screen = await console.say(choice(screen, "Tidak pernah") or "")
        else:
            screen = await console.say("a")
        steps += 1
        assert steps < 20, screen
    number = question_number(screen)
    assert choice(screen, "Kembali"), screen  # a button is on screen, under a letter

    for odd in ("²", "1²"):  # str.isdigit() is true for these, int() fails
        screen = await console.say(odd)
        assert console.process.returncode is None
        assert "Pertanyaan" not in screen and "angka" in screen, screen  # asked again
    screen = await console.say("1")
    assert question_number(screen) == number + 1, screen  # answered 1, not "Kembali"
    assert console.process.stdin is not None
    console.process.stdin.close()
    assert await asyncio.wait_for(console.process.wait(), timeout=20) == 0
    assert "Traceback" not in await console.stderr()


async def test_ctrl_c_quits_at_once_without_a_traceback(tmp_path: Path) -> None:
    console, screen = await Console.start(tmp_path / "spi.sqlite3")
    assert screen.endswith("> ")
    console.process.send_signal(signal.SIGINT)  # at the prompt, no Enter pressed
    code = await asyncio.wait_for(console.process.wait(), timeout=10)
    stderr = await console.stderr()
    assert code == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
