"""`spi-bot console` driven through stdin: the same survey without Telegram."""

from __future__ import annotations

import asyncio
import os
import re
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
    for number, text in re.findall(r"^\s+\[(\d+)\] (.*)$", screen, flags=re.MULTILINE):
        if label in text:
            return number
    return None


async def test_console_survey_to_the_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "SPI_"))}
    env["DATABASE_PATH"] = str(tmp_path / "local.sqlite3")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=PROJECT_ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None

    async def say(line: str) -> str:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(line.encode() + b"\n")
        await process.stdin.drain()
        return await read_screen(process.stdout)

    screen = await read_screen(process.stdout)
    assert "sukarela" in screen
    for label in ("setuju", "Pengguna layanan"):
        number = choice(screen, label)
        assert number, screen
        screen = await say(number)
    screen = await say("kesehatan")
    screen = await say(choice(screen, "Dinas Kesehatan") or "")
    for label in ("Ya, pernah", "Saya urus sendiri"):
        number = choice(screen, label)
        assert number, screen
        screen = await say(number)
    steps = 0
    while not choice(screen, "Kirim"):
        assert "Pertanyaan" in screen, screen
        if choice(screen, "Selesai"):
            screen = await say("1")
            screen = await say(choice(screen, "Selesai") or "")
        elif choice(screen, "Tidak pernah"):
            screen = await say(choice(screen, "Tidak pernah") or "")
        elif "angka" in screen:
            screen = await say("2")
        elif choice(screen, "Lewati"):
            screen = await say(choice(screen, "Lewati") or "")
        else:
            screen = await say("1")
        steps += 1
        assert steps < 80, screen
    screen = await say(choice(screen, "Kirim") or "")
    assert "Terima kasih" in screen
    process.stdin.close()
    assert await asyncio.wait_for(process.wait(), timeout=20) == 0

    key_file = tmp_path / "local.sqlite3.key"
    assert key_file.exists() and (key_file.stat().st_mode & 0o777) == 0o600
    with sqlite3.connect(tmp_path / "local.sqlite3") as db:
        assert db.execute("SELECT status, channel FROM responses").fetchall() == [
            ("completed", "console")
        ]
