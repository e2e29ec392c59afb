"""End to end: the real WhatsApp channel over HTTP against the fake Cloud API, real SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from subprocess import Popen

import aiohttp
import pytest

from bot.whatsapp.webhook import MAX_BODY
from core.config import PROJECT_ROOT
from tests.conftest import SECRET
from tests.support.bot_process import start_bot
from tests.support.fake_bot_api import FakeBotApi
from tests.support.fake_whatsapp_api import FakeWhatsAppApi
from tests.support.telegram_driver import TelegramUser
from tests.support.whatsapp_driver import (
    VERIFY_TOKEN,
    WhatsAppUser,
    running_whatsapp,
    settings_for,
    start_survey,
)

WA_ID = "6281234567890"


@pytest.fixture
async def api() -> AsyncIterator[FakeWhatsAppApi]:
    async with FakeWhatsAppApi() as server:
        yield server


def flip_last(signature: str) -> str:
    return signature[:-1] + ("1" if signature[-1] == "0" else "0")


def rows(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db_path) as db:
        return list(db.execute(sql))


@pytest.mark.parametrize("group", ["eksternal", "internal", "eksper"])
async def test_respondent_completes_each_group(
    api: FakeWhatsAppApi, tmp_path: Path, group: str
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with running_whatsapp(api, settings_for(api, db_path)) as runtime:
        user = WhatsAppUser(api, runtime, WA_ID)
        await start_survey(user, group)
        answered = await user.answer_all()
        await user.press("Kirim", expect="Terima kasih")
        print(api.transcript(WA_ID))
    assert answered >= 14
    assert not api.refused, api.refused  # every screen fitted WhatsApp's limits
    assert rows(db_path, "SELECT group_code, unit_code, status, channel FROM responses") == [
        (group, "dinkes", "completed", "whatsapp")
    ]
    with sqlite3.connect(db_path) as db:
        for table in ("responses", "answers", "sessions", "processed_events", "response_scores"):
            dump = "\n".join(str(row) for row in db.execute(f"SELECT * FROM {table}"))
            assert WA_ID not in dump, table
            assert "Budi" not in dump, table
            # Meta's message ids carry the sender's number in base64: never stored raw.
            assert not any(message_id in dump for message_id in api.inbound_ids), table


async def test_forged_or_missing_signature_is_refused_unprocessed(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with running_whatsapp(api, settings_for(api, db_path)) as runtime:
        body = json.dumps(api.update(WA_ID, api.text("/start"))).encode()
        wrong_key = "sha256=" + hmac.new(b"not the app secret", body, hashlib.sha256).hexdigest()
        for signature in (None, "", wrong_key, api.sign(b"{}"), flip_last(api.sign(body)), "md5=x"):
            assert await api.post_webhook(body, signature) == 401, signature
        await runtime.channel.drain()
        assert api.sent == []
        # The same body, correctly signed, is what a real update looks like.
        assert await api.deliver(json.loads(body)) == 200
        await runtime.channel.drain()
        assert len(api.to(WA_ID)) == 1
    assert len(rows(db_path, "SELECT * FROM processed_events")) == 1


async def test_verification_challenge_and_body_cap(api: FakeWhatsAppApi, tmp_path: Path) -> None:
    async with (
        running_whatsapp(api, settings_for(api, tmp_path / "spi.sqlite3")) as runtime,
        aiohttp.ClientSession() as http,
    ):
        query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "8127"}
        async with http.get(runtime.url, params=query) as response:
            assert (response.status, await response.text()) == (200, "8127")
        async with http.get(runtime.url, params={**query, "hub.verify_token": "guess"}) as response:
            assert response.status == 403
        big = b"{" + b" " * MAX_BODY + b"}"
        assert await api.post_webhook(big, api.sign(big)) == 413
        await runtime.channel.drain()
    assert api.sent == []


async def test_redelivered_webhook_changes_nothing(api: FakeWhatsAppApi, tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with running_whatsapp(api, settings_for(api, db_path)) as runtime:
        user = WhatsAppUser(api, runtime, WA_ID)
        await start_survey(user)
        reply_id, title, _ = user.screen().choices()[0]
        update = api.update(WA_ID, api.reply(user.screen().kind, reply_id, title))
        assert await api.deliver(update) == 200
        await runtime.channel.drain()
        sent = len(api.sent)
        answers = rows(db_path, "SELECT * FROM answers ORDER BY question_id")
        sessions = rows(db_path, "SELECT * FROM sessions")
        assert await api.deliver(update) == 200  # Meta retries when it saw no 200 in time
        await runtime.channel.drain()
        assert len(api.sent) == sent
        assert rows(db_path, "SELECT * FROM answers ORDER BY question_id") == answers
        assert rows(db_path, "SELECT * FROM sessions") == sessions


async def test_stale_or_forged_reply_gets_the_notice(api: FakeWhatsAppApi, tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with running_whatsapp(api, settings_for(api, db_path)) as runtime:
        user = WhatsAppUser(api, runtime, WA_ID)
        await start_survey(user)
        old = user.screen()
        stale_id, stale_title, _ = old.choices()[0]
        await user.press(stale_title, expect="Pertanyaan 2 dari")
        answers = rows(db_path, "SELECT * FROM answers ORDER BY question_id")
        replies = await user.deliver(api.reply(old.kind, stale_id, stale_title))
        assert replies[0].text == "Tombol ini sudah tidak berlaku. Silakan gunakan pesan terbaru."
        seq = stale_id.split("|")[0]
        for forged in (f"{int(seq) + 1}|a|nonexistent", "1|zz|", "<script>", ""):
            replies = await user.deliver(api.reply("list", forged, "x"))
            assert replies[0].text in (
                "Tombol ini tidak dikenali.",
                "Tombol ini sudah tidak berlaku. Silakan gunakan pesan terbaru.",
            ), forged
        assert rows(db_path, "SELECT * FROM answers ORDER BY question_id") == answers


async def test_chat_window_kept_only_for_consented_contacts_and_erased_with_them(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    windows = "SELECT channel, address FROM chat_windows"
    async with running_whatsapp(api, settings_for(api, db_path)) as runtime:
        user = WhatsAppUser(api, runtime, WA_ID)
        await user.send("/start", expect="sukarela")
        await user.send("halo")
        assert rows(db_path, windows) == []  # no consent: nothing about this chat is kept
        await user.press("setuju", expect="kelompok")
        assert rows(db_path, windows) == [("whatsapp", WA_ID)]
        assert rows(db_path, "SELECT channel, address FROM contacts") == [("whatsapp", WA_ID)]
        await user.send("/hapus_data")
        await user.press("Ya", expect="dihapus")
    assert rows(db_path, windows) == []
    assert rows(db_path, "SELECT * FROM contacts") == []


async def test_a_flood_gets_one_notice_and_no_handling(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with running_whatsapp(api, settings_for(api, db_path, incoming_per_minute=3)) as runtime:
        user = WhatsAppUser(api, runtime, WA_ID)
        for _ in range(6):
            await user.deliver(api.text("/bantuan"))
    texts = [m.text for m in api.to(WA_ID)]
    assert len(texts) == 4
    assert texts[-1].startswith("Anda mengirim pesan terlalu cepat")
    assert len(rows(db_path, "SELECT * FROM processed_events")) == 3


def run_env(api: FakeWhatsAppApi, db_path: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WHATSAPP_"))}
    env.update(
        DATABASE_PATH=str(db_path),
        SPI_SECRET_KEY=SECRET.decode(),
        WHATSAPP_PHONE_ID=api.phone_id,
        WHATSAPP_TOKEN=api.token,
        WHATSAPP_APP_SECRET=api.app_secret.decode(),
        WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN,
        WHATSAPP_API_URL=api.base_url,
        WHATSAPP_PORT=str(port),
        **extra,
    )
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def first_reply_on_whatsapp(api: FakeWhatsAppApi, port: int, process: Popen[bytes]) -> str:
    """Send /start until the webhook is up; the bot's first answer."""
    api.webhook_url = f"http://127.0.0.1:{port}/whatsapp"
    deadline = time.monotonic() + 20
    status = 0
    while status != 200:
        assert process.poll() is None, "the bot exited"
        assert time.monotonic() < deadline, "webhook never came up"
        with contextlib.suppress(aiohttp.ClientError):
            status = await api.deliver(api.update(WA_ID, api.text("/start")))
        await asyncio.sleep(0.1)
    while not api.to(WA_ID):
        assert time.monotonic() < deadline, "no reply"
        await asyncio.sleep(0.05)
    return api.to(WA_ID)[0].text


async def test_run_serves_whatsapp_alone_and_stops_cleanly(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=PROJECT_ROOT,
            env=run_env(api, tmp_path / "spi.sqlite3", port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        assert "sukarela" in await first_reply_on_whatsapp(api, port, process)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=20)
    assert code == 0, log_path.read_text()
    assert api.token not in log_path.read_text()


async def test_run_serves_telegram_and_whatsapp_in_one_process(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "bot.log"
    async with FakeBotApi() as telegram:
        whatsapp_env = run_env(api, tmp_path / "spi.sqlite3", port)
        extra = {k: v for k, v in whatsapp_env.items() if k.startswith("WHATSAPP_")}
        process = start_bot(telegram, tmp_path / "spi.sqlite3", log_path, **extra)
        try:
            assert "sukarela" in await first_reply_on_whatsapp(api, port, process)
            user = TelegramUser(telegram, 55501234)
            await user.send("/start", expect="sukarela", timeout=15)
        finally:
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, 20)
    assert code == 0, log_path.read_text()
    with sqlite3.connect(tmp_path / "spi.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM processed_events").fetchone()[0] == 2


def test_whatsapp_without_app_secret_does_not_start(api: FakeWhatsAppApi, tmp_path: Path) -> None:
    env = run_env(api, tmp_path / "spi.sqlite3", free_port())
    del env["WHATSAPP_APP_SECRET"]
    done = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("spi-bot: cannot start: WHATSAPP_APP_SECRET")
    assert "Traceback" not in done.stderr
