"""Nobody let in, nothing leaked: access, invites, flood, secrets, backups, corrupt files."""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import sqlite3
from pathlib import Path

import pytest

from bot.cli import RedactSecrets
from core.access import create_invite, redeem_invite, role_of
from core.config import SettingsError, load_settings
from core.engine import Engine
from core.storage import Storage, StorageError
from tests.conftest import SECRET
from tests.support.bot_process import run_cli
from tests.support.fake_bot_api import FakeBotApi
from tests.support.survey_driver import Clock
from tests.support.telegram_driver import running_bot, settings_for

ADMIN_COMMANDS = ["/peringkat", "/rekap", "/undang dinkes", "/pejabat", "/koreksi dinkes 2 x",
                  "/tambah_admin 5", "/ekspor", "/skor dinkes", "/siaran halo",
                  "/siaran_status", "/jadwal", "/undangan", "/admin", "/hapus_admin 5",
                  "/koreksi dinkes", "/koreksi batal 1", "/koreksi dinkes pengaduan 2 x"]


async def test_invites_are_single_use_and_expire(storage: Storage) -> None:
    now = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    async with storage.transaction() as tx:
        code = await create_invite(tx, SECRET, "dinkes", 1, now, dt.timedelta(hours=1))
        stored = await tx.fetchall("SELECT code_hash FROM invites")
        assert code not in str([tuple(r) for r in stored])
        assert await redeem_invite(tx, SECRET, "WRONGCODE1", 7, now) == ("invalid", None)
        assert await redeem_invite(tx, SECRET, code.lower(), 7, now) == ("ok", "dinkes")
        assert await redeem_invite(tx, SECRET, code, 8, now) == ("used", None)
        late = await create_invite(tx, SECRET, "bappeda", 1, now, dt.timedelta(hours=1))
        assert await redeem_invite(tx, SECRET, late, 9, now + dt.timedelta(hours=2)) == (
            "expired", None)
        role = await role_of(tx, 7, [])
        assert role.unit_code == "dinkes" and not role.admin
        assert role.may_see("dinkes") and not role.may_see("bappeda")
        assert (await role_of(tx, 99, [99])).admin


async def test_every_admin_command_refuses_strangers_and_other_officials(tmp_path: Path) -> None:
    async with FakeBotApi() as api:
        settings = settings_for(api, tmp_path / "spi.sqlite3", admin_ids=[1])
        async with running_bot(settings) as svc:
            async with svc.storage.transaction() as tx:
                code = await create_invite(
                    tx, SECRET, "bappeda", 1, dt.datetime.now(dt.UTC), dt.timedelta(hours=1))
                await redeem_invite(tx, SECRET, code, 2, dt.datetime.now(dt.UTC))
            for user_id in (3, 2):  # a stranger, then the official of another unit
                for text in ADMIN_COMMANDS:
                    mark = api.mark()
                    api.send_text(user_id, text)
                    call = await api.wait_for_call(
                        "sendMessage", lambda c, u=user_id: c.params["chat_id"] == u, after=mark)
                    assert "hanya untuk" in call.params["text"], (user_id, text)
            assert not api.calls_of("sendDocument") and not api.calls_of("sendPhoto")


async def test_flood_gets_one_notice(tmp_path: Path) -> None:
    async with FakeBotApi() as api:
        settings = settings_for(api, tmp_path / "spi.sqlite3", incoming_per_minute=5)
        async with running_bot(settings):
            for _ in range(30):
                api.send_text(77, "halo")
            await api.wait_for(lambda: len(api.calls_of("sendMessage")) >= 6)
            mark = api.mark()
            api.send_text(78, "halo")  # another user is still served
            await api.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == 78, after=mark)
            texts = [c.params["text"] for c in api.calls_of("sendMessage")
                     if c.params["chat_id"] == 77]
            assert len(texts) == 6
            assert sum("cepat" in t for t in texts) == 1


def test_secrets_never_reach_the_log() -> None:
    token, key = "123456:SECRET-TOKEN-VALUE", "k" * 40
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets([token, key]))
    logger = logging.getLogger("redaction-test")
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError(f"https://api.telegram.org/bot{token}/getMe failed with {key}")
        except RuntimeError:
            logger.exception("request to %s failed", f"bot{token}")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "RuntimeError" in output and "[REDACTED]" in output
    assert token not in output and key not in output


def test_short_or_missing_secret_key_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match=r"SPI_SECRET_KEY: .*at least 32"):
        load_settings(spi_secret_key="short")
    with pytest.raises(SettingsError, match="SPI_SECRET_KEY: required"):
        load_settings(spi_secret_key=None).secret_key()
    with pytest.raises(SettingsError, match="TIMEZONE"):
        load_settings(timezone="Mars/Olympus")
    with pytest.raises(SettingsError, match="ADMIN_IDS"):
        load_settings(admin_ids="12,abc")


def test_run_refuses_bad_configuration(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "SPI_"))}
    env.update(TELEGRAM_BOT_TOKEN="1:x", DATABASE_PATH=str(tmp_path / "db.sqlite3"))
    result = run_cli(env, "run", timeout=60)
    assert result.returncode == 2 and "SPI_SECRET_KEY" in result.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text('period = "2025"\n')
    env.update(SPI_SECRET_KEY="k" * 40, QUESTIONNAIRE_PATH=str(broken))
    result = run_cli(env, "run", timeout=60)
    assert result.returncode == 2
    assert str(broken) in result.stderr and "title: Field required" in result.stderr
    assert "Traceback" not in result.stderr


async def test_backup_and_corrupt_file(tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    storage = await Storage.open(db_path)
    async with storage.transaction() as tx:
        await tx.upsert_contact("telegram", "1", "id")
    await storage.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "SPI_"))}
    env["DATABASE_PATH"] = str(db_path)
    target = tmp_path / "backup" / "copy.sqlite3"
    result = run_cli(env, "backup", str(target), timeout=60)
    assert result.returncode == 0, result.stderr
    assert (target.stat().st_mode & 0o777) == 0o600
    with sqlite3.connect(target) as db:
        assert db.execute("SELECT COUNT(*) FROM contacts").fetchone() == (1,)

    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(db_path.read_bytes()[:100] + b"\x00garbage" * 2000)
    with pytest.raises(StorageError):
        await Storage.open(corrupt)


async def test_webhook_checks_the_secret_token(tmp_path: Path) -> None:
    """`run --webhook` accepts an update only with Telegram's secret token header."""
    import asyncio
    import json
    import socket
    import urllib.error
    import urllib.request

    from tests.support.bot_process import start_bot

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with FakeBotApi() as api:
        process = start_bot(
            api, tmp_path / "spi.sqlite3", tmp_path / "bot.log", mode="--webhook",
            WEBHOOK_URL=f"http://127.0.0.1:{port}/",
            WEBHOOK_SECRET="hook-secret-0123456789-abcdefghijkl",
            WEBHOOK_LISTEN="127.0.0.1", WEBHOOK_PORT=str(port),
        )
        try:
            await api.wait_for_call("setWebhook", timeout=30)
            for _ in range(300):  # PTB calls setWebhook before its server listens
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            update = json.dumps({"update_id": 1, "message": {
                "message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"},
                "from": {"id": 5, "is_bot": False, "first_name": "A"}, "text": "/bantuan"}})

            def post(headers: dict[str, str]) -> int:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/", data=update.encode(),
                    headers={"Content-Type": "application/json", **headers})
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        return int(response.status)
                except urllib.error.HTTPError as error:
                    return int(error.code)

            assert await asyncio.to_thread(post, {}) == 403
            wrong = {"X-Telegram-Bot-Api-Secret-Token": "guess"}
            assert await asyncio.to_thread(post, wrong) == 403
            assert not api.calls_of("sendMessage")
            right = {"X-Telegram-Bot-Api-Secret-Token": "hook-secret-0123456789-abcdefghijkl"}
            assert await asyncio.to_thread(post, right) == 200
            await api.wait_for_call("sendMessage", timeout=10)
            assert api.webhook_url == f"http://127.0.0.1:{port}/"
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 30)
    log_text = (tmp_path / "bot.log").read_text()
    assert "hook-secret-0123456789-abcdefghijkl" not in log_text and api.token not in log_text


async def test_the_audit_log_never_names_a_respondent(
    engine: Engine, clock: Clock, storage: Storage
) -> None:
    """Whatever admins do, the audit log holds staff actions, never who answered what."""
    from core import desk as d
    from core.units import load_units
    from tests.conftest import QUESTIONNAIRE_PATH, UNITS_PATH
    from tests.test_scoring import EKSTERNAL, take_survey

    for i in range(5):
        await take_survey(engine, clock, f"77{i}", EKSTERNAL, shift=i)
    settings = load_settings(spi_secret_key=SECRET.decode(), admin_ids=[1])
    from core.questionnaire import load_questionnaire

    desk = d.Desk(
        settings=settings.model_copy(update={"chat_export_enabled": True}),
        questionnaire=load_questionnaire(QUESTIONNAIRE_PATH),
        units=load_units(UNITS_PATH),
        storage=storage,
        secret_key=SECRET,
        clock=clock,
    )
    admin = d.Caller("telegram", 1)
    invite = await desk.create_invite(admin, "dinkes")
    assert isinstance(invite, d.InviteCreated)
    await desk.redeem_invite(d.Caller("telegram", 2), invite.code)
    await desk.add_correction(admin, "dinkes", "pengarahan", 2.0, "arahan atasan")
    await desk.add_admin(admin, 5)
    await desk.remove_admin(admin, 5)
    await desk.revoke_official(admin, 2)
    assert isinstance(await desk.export(admin), d.ExportReady)
    async with storage.read() as tx:
        audit = " ".join(
            f"{r['actor']} {r['action']} {r['detail']}"
            for r in await tx.fetchall("SELECT * FROM audit_log")
        )
        responses = await tx.fetchall("SELECT id, respondent_key FROM responses")
    assert "export" in audit and "correction_added" in audit
    assert invite.code not in audit
    assert len(responses) == 5
    for row in responses:
        assert str(row["id"]) not in audit and row["respondent_key"] not in audit
    for i in range(5):
        assert f"77{i}" not in audit
