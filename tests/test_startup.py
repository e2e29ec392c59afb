"""Start-up as an operator meets it: every failure is one line, what, where and why.

Each case runs the real `python -m bot` process and reads its stderr: exactly one
line, exit code 2, and never the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.config import SettingsError, load_settings
from tests.conftest import QUESTIONNAIRE_PATH, SECRET
from tests.support.bot_process import run_cli, start_bot
from tests.support.fake_bot_api import FakeBotApi
from tests.support.telegram_driver import TelegramUser, start_as_service_user
from tests.support.walker import Step, never_or_first

TOKEN = "4242424242:AAH-not_a_real-token-0123456789abcdef"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    prefixes = ("TELEGRAM_", "SPI_", "WEBHOOK_", "DATABASE_", "LOG_", "QUESTIONNAIRE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_BASE_URL=f"http://127.0.0.1:{closed_port()}/bot",
        DATABASE_PATH=str(tmp_path / "data" / "spi.sqlite3"),
        SPI_SECRET_KEY=SECRET.decode(),
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


def one_line(result: subprocess.CompletedProcess[str], *needles: str, code: int = 2) -> str:
    """The single stderr line, after checking the exit code and that no secret leaked."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == code, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    for secret in (TOKEN, SECRET.decode()):
        assert secret not in result.stderr + result.stdout
    return lines[0]


def test_malformed_token(tmp_path: Path) -> None:
    bad = "4242424242:AAH secret with a space"
    result = run_cli(base_env(tmp_path, TELEGRAM_BOT_TOKEN=bad), "run")
    one_line(result, "TELEGRAM_BOT_TOKEN", "malformed")
    assert "AAH secret" not in result.stderr


async def test_token_telegram_rejects(tmp_path: Path) -> None:
    async with FakeBotApi() as api:  # knows only its own token: ours gets 401
        env = base_env(tmp_path, TELEGRAM_BASE_URL=api.base_url)
        result = await asyncio.to_thread(run_cli, env, "run")
    one_line(result, "TELEGRAM_BOT_TOKEN", "rejected", api.base_url, "401")


def test_telegram_unreachable(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    one_line(run_cli(env, "run"), "cannot reach", env["TELEGRAM_BASE_URL"], "TELEGRAM_BASE_URL")


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """A directory this process cannot write into, even as root (immutable flag)."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(directory)], check=False).returncode:
        pytest.skip("running as root without chattr: no way to make a directory read-only")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)


def test_read_only_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with read_only(data):
        line = one_line(run_cli(base_env(tmp_path), "run"), str(data / "spi.sqlite3"))
    assert "cannot create database" in line
    assert not (data / "spi.sqlite3").exists()


def test_database_path_is_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "spi.sqlite3"
    directory.mkdir(parents=True)
    line = one_line(run_cli(base_env(tmp_path, DATABASE_PATH=str(directory)), "run"))
    assert str(directory) in line and "is a directory" in line


def test_database_path_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a directory\n")
    env = base_env(tmp_path, DATABASE_PATH=str(blocker / "spi.sqlite3"))
    line = one_line(run_cli(env, "run"))
    assert f"{blocker} is a file, not a directory" in line


def utf16_questionnaire(tmp_path: Path) -> Path:
    """The questionnaire as Windows Notepad saves "Unicode": UTF-16 with a BOM."""
    path = tmp_path / "spi-utf16.toml"
    path.write_bytes(QUESTIONNAIRE_PATH.read_text(encoding="utf-8").encode("utf-16"))
    return path


def test_questionnaire_not_utf8(tmp_path: Path) -> None:
    path = utf16_questionnaire(tmp_path)
    line = one_line(run_cli(base_env(tmp_path, QUESTIONNAIRE_PATH=str(path)), "run"))
    assert str(path) in line and "not UTF-8" in line


def test_check_questionnaire_not_utf8(tmp_path: Path) -> None:
    path = utf16_questionnaire(tmp_path)
    line = one_line(run_cli(base_env(tmp_path), "check-questionnaire", str(path)), code=1)
    assert str(path) in line and "not UTF-8" in line


# -- backup ----------------------------------------------------------------


def test_backup_of_a_missing_database_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "data" / "spi.sqilte3"  # a typo
    target = tmp_path / "backup.sqlite3"
    result = run_cli(base_env(tmp_path, DATABASE_PATH=str(missing)), "backup", str(target))
    line = one_line(result, str(missing))
    assert "backup failed" in line and "no such file" in line
    assert not missing.exists() and not missing.parent.exists()
    assert not target.exists()


def test_backup_of_an_empty_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    target = tmp_path / "backup.sqlite3"
    result = run_cli(base_env(tmp_path, DATABASE_PATH=str(empty)), "backup", str(target))
    one_line(result, str(empty), "empty")
    assert empty.stat().st_size == 0 and not target.exists()


def test_backup_of_a_database_without_schema_is_an_error(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes(x)")
    target = tmp_path / "backup.sqlite3"
    result = run_cli(base_env(tmp_path, DATABASE_PATH=str(other)), "backup", str(target))
    one_line(result, str(other), "not a spi-bot database")
    assert not target.exists()


# -- webhook -----------------------------------------------------------------


def test_webhook_secret_must_be_long_and_in_telegrams_alphabet() -> None:
    for bad in ("short", "x" * 31, "!" * 40, "a" * 31 + " " + "b" * 8, "é" * 40):
        with pytest.raises(SettingsError) as caught:
            load_settings(webhook_secret=bad)
        assert "WEBHOOK_SECRET" in str(caught.value) and bad not in str(caught.value)
        assert "\n" not in str(caught.value)
    good = "A-z_0-9" * 5
    secret = load_settings(webhook_secret=good).webhook_secret
    assert secret is not None and secret.get_secret_value() == good


def test_webhook_listens_on_loopback_by_default() -> None:
    assert load_settings().webhook_listen == "127.0.0.1"


WEBHOOK_SECRET = "hook-secret-0123456789-abcdefghijkl"


async def wait_listening(port: int, timeout: float = 30) -> None:
    """PTB calls setWebhook before its server listens: wait for the port itself."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            assert asyncio.get_running_loop().time() < deadline, f"nothing listens on {port}"
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return


async def read_status(port: int, request: bytes, timeout: float) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), timeout=timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_webhook_refuses_a_large_body_before_reading_it(tmp_path: Path) -> None:
    port = closed_port()
    async with FakeBotApi() as api:
        process = start_bot(
            api,
            tmp_path / "spi.sqlite3",
            tmp_path / "bot.log",
            mode="--webhook",
            WEBHOOK_URL=f"http://127.0.0.1:{port}/",
            WEBHOOK_SECRET=WEBHOOK_SECRET,
            WEBHOOK_PORT=str(port),
        )
        try:
            await api.wait_for_call("setWebhook", timeout=30)
            await wait_listening(port)
            # Headers announcing 50 MiB, and no body at all: an uncapped server waits
            # for the body (to buffer it before checking the secret); a capped one
            # answers at once.
            head = (
                "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {50 << 20}\r\n\r\n"
            ).encode()
            status = await read_status(port, head, timeout=5)
            assert status.startswith(b"HTTP/1.1 400"), status
            # A normal-sized request without the secret is still refused by PTB.
            body = b'{"update_id": 1}'
            small = (
                "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            assert (await read_status(port, small, timeout=10)).startswith(b"HTTP/1.1 403")
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 30)


# -- logging -----------------------------------------------------------------

USER = 77012345
ANSWER = "saran-rahasia-pelayanan-lambat"
INVITE = "KODE-RAHASIA-98765"


async def test_debug_log_never_joins_a_user_to_an_answer(tmp_path: Path) -> None:
    log_path = tmp_path / "bot.log"
    async with FakeBotApi() as api:
        process = start_bot(api, tmp_path / "spi.sqlite3", log_path, LOG_LEVEL="DEBUG")
        try:
            user = TelegramUser(api, USER)
            await user.send("/bantuan", expect="/lanjut", timeout=30)  # the bot is up
            await user.send(f"/daftar {INVITE}")  # an invite code, however wrong
            await start_as_service_user(user, "tembalang", "Kecamatan Tembalang")
            suggested: list[int] = []

            def choose(step: Step) -> str | None:
                if "Saran" in step.text:  # the free-text question gets the secret answer
                    suggested.append(step.index)
                    return ANSWER
                return never_or_first(step)

            await user.answer_all(choose)
            assert suggested, "the survey ended before its free-text question"
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 30)
        assert process.returncode == 0, log_path.read_text()
    log_text = log_path.read_text()
    for line in log_text.splitlines():
        assert not (str(USER) in line and ANSWER in line), line
    assert ANSWER not in log_text and INVITE not in log_text
    assert str(USER) not in log_text
    assert "Budi" not in log_text  # the Telegram first name
