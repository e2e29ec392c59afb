"""docs/DEPLOY.md, followed as an operator would: back up under load, restore, start again.

Also checks that the deployment files (systemd unit, Dockerfile, compose file,
logrotate, lock file) say what the guide says they do.
"""

from __future__ import annotations

import asyncio
import configparser
import re
import shutil
import sqlite3
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from core.config import PROJECT_ROOT
from core.identity import pseudonym
from tests.conftest import SECRET
from tests.support import walker
from tests.support.bot_process import bot_env, run_cli, start_bot
from tests.support.fake_bot_api import FakeBotApi
from tests.support.telegram_driver import TelegramUser, start_as_service_user

DEPLOY = PROJECT_ROOT / "docs" / "DEPLOY.md"
RESPONDENTS = [88100000 + n for n in range(10)]
ANSWERS_EACH = 10  # fewer than the survey has: nobody completes, everyone can resume


class Patient:
    """The user waiting up to 20 s for each next question (a real process under load)."""

    def __init__(self, user: TelegramUser) -> None:
        self.user = user

    def current(self) -> walker.Screen:
        return self.user.current()

    async def press_button(self, button: walker.ButtonPair) -> None:
        await self.user.press_button(button, expect="Pertanyaan", timeout=20)

    async def type(self, text: str) -> None:
        await self.user.send(text, expect="Pertanyaan", timeout=20)


async def answer_one(user: TelegramUser) -> None:
    """One question answered and acknowledged (the next screen is shown)."""
    await walker.answer_one(Patient(user))


def answers_by_user(db_path: Path) -> dict[int, int]:
    """Answers (screening excluded) per respondent, found the way only the key holder can."""
    counts: dict[int, int] = {}
    with sqlite3.connect(db_path) as db:
        for user_id in RESPONDENTS:
            key = pseudonym(SECRET, "telegram", str(user_id))
            row = db.execute(
                "SELECT COUNT(*) FROM answers a JOIN responses r ON r.id = a.response_id "
                "WHERE r.respondent_key = ? AND a.question_id NOT LIKE 'screen%'",
                (key,),
            ).fetchone()
            counts[user_id] = int(row[0])
    return counts


def backup_command(
    api: FakeBotApi, db_path: Path, target: Path
) -> subprocess.CompletedProcess[str]:
    """`spi-bot backup FILE`, as the cron line in docs/DEPLOY.md runs it."""
    return run_cli(bot_env(api, db_path), "backup", str(target), timeout=120)


async def test_backup_under_load_restores_every_acknowledged_answer(tmp_path: Path) -> None:
    live = tmp_path / "live" / "spi.sqlite3"
    backup = tmp_path / "backups" / "spi-backup.sqlite3"
    acknowledged = dict.fromkeys(RESPONDENTS, 0)
    at_backup: dict[int, int] = {}
    backup_started = asyncio.Event()

    async with FakeBotApi() as api:
        process = start_bot(api, live, tmp_path / "bot.log")
        try:
            users = {uid: TelegramUser(api, uid) for uid in RESPONDENTS}
            await users[RESPONDENTS[0]].send("/bantuan", expect="/lanjut", timeout=30)

            async def respondent(user: TelegramUser) -> None:
                await start_as_service_user(user, "tembalang", "Kecamatan Tembalang")
                for _ in range(ANSWERS_EACH):
                    await answer_one(user)
                    acknowledged[user.user_id] += 1
                    if backup_started.is_set():
                        await asyncio.sleep(0)  # keep the load on during the backup

            async def take_backup() -> subprocess.CompletedProcess[str]:
                # Once every respondent has some answers acknowledged, under full load.
                while min(acknowledged.values()) < 3:
                    await asyncio.sleep(0.01)
                at_backup.update(acknowledged)  # what the bot had acknowledged by now
                backup_started.set()
                return await asyncio.to_thread(backup_command, api, live, backup)

            *_, result = await asyncio.gather(
                *(respondent(u) for u in users.values()), take_backup()
            )
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 30)
        assert process.returncode == 0
        assert result.returncode == 0, result.stderr
        assert f"backup written to {backup}" in result.stdout
        assert backup.stat().st_mode & 0o777 == 0o600
        assert sum(acknowledged.values()) > sum(at_backup.values())  # answers went on

        # Restore as documented: the backup file becomes DATABASE_PATH (mode 0600), no
        # -wal or -shm beside it, the same SPI_SECRET_KEY, then the bot starts on it.
        # (The same fake Telegram: its update ids go on rising, as Telegram's do.)
        restored = tmp_path / "restored" / "spi.sqlite3"
        restored.parent.mkdir()
        shutil.copyfile(backup, restored)
        restored.chmod(0o600)
        assert not Path(f"{restored}-wal").exists()

        process = start_bot(api, restored, tmp_path / "restored.log")
        try:
            for user_id in RESPONDENTS:
                user = TelegramUser(api, user_id)
                before = len(user.texts())
                api.send_text(user_id, "/lanjut")

                def resumed(user: TelegramUser = user, before: int = before) -> list[str]:
                    return re.findall(r"Pertanyaan (\d+) dari", "\n".join(user.texts()[before:]))

                await api.wait_for(lambda: bool(resumed()), timeout=30, message="no resume")
                # Question n on screen: the n - 1 before it are answered.
                assert int(resumed()[-1]) > at_backup[user_id], user.texts()[before:]
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 30)
        assert process.returncode == 0, (tmp_path / "restored.log").read_text()

    counts = answers_by_user(restored)
    for user_id in RESPONDENTS:
        assert counts[user_id] >= at_backup[user_id], (user_id, counts, at_backup)


# -- the deployment files ----------------------------------------------------


def deploy_text() -> str:
    return DEPLOY.read_text(encoding="utf-8")


def test_systemd_unit_runs_a_dedicated_user_restarting_always() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(PROJECT_ROOT / "deploy" / "spi-bot.service", encoding="utf-8")
    service = unit["Service"]
    assert service["Restart"] == "always"
    assert service["User"] == "spi-bot" and service["Group"] == "spi-bot"
    assert service["EnvironmentFile"] == "/etc/spi-bot/spi-bot.env"
    assert service["ExecStart"].endswith("spi-bot run")
    assert service["UMask"] == "0077"
    assert service["StateDirectory"] == "spi-bot"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "deploy/spi-bot.service" in deploy_text()


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """Every directive known to systemd (where systemd-analyze exists)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = (PROJECT_ROOT / "deploy" / "spi-bot.service").read_text(encoding="utf-8")
    # The virtualenv of the guide does not exist here; everything else is checked.
    unit = tmp_path / "spi-bot.service"
    unit.write_text(re.sub(r"^ExecStart=.*$", "ExecStart=/bin/true", text, flags=re.MULTILINE))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_compose_runs_the_bot_on_a_named_volume() -> None:
    text = (PROJECT_ROOT / "compose.yaml").read_text(encoding="utf-8")
    top_level = re.findall(r"^(\w+):", text, flags=re.MULTILINE)
    assert top_level == ["services", "volumes"], top_level
    assert re.search(r"^  spi-bot:$", text, flags=re.MULTILINE)
    assert re.search(r"^\s+- spi-data:/data$", text, flags=re.MULTILINE)
    assert re.search(r"^  spi-data:", text, flags=re.MULTILINE)  # declared: a named volume
    assert re.search(r"^\s+restart: always$", text, flags=re.MULTILINE)
    assert re.search(r"^\s+env_file: .*spi-bot\.env", text, flags=re.MULTILINE)
    assert "\t" not in text


def test_dockerfile_installs_from_the_lock_and_runs_unprivileged() -> None:
    text = (PROJECT_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11", text, flags=re.MULTILINE)
    assert "--require-hashes -r requirements.lock" in text
    assert "--no-deps" in text
    assert re.search(r"^USER spi-bot$", text, flags=re.MULTILINE)
    assert "DATABASE_PATH=/data/spi.sqlite3" in text
    assert re.search(r'^CMD \["spi-bot", "run"\]$', text, flags=re.MULTILINE)


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    text = (PROJECT_ROOT / "requirements.lock").read_text(encoding="utf-8")
    pins = dict(re.findall(r"^([a-z0-9_.-]+)==(\S+) \\$", text, flags=re.MULTILINE))
    for name in ("python-telegram-bot", "aiosqlite", "pydantic", "tornado", "aiohttp"):
        assert name in pins, name
    blocks = re.split(r"^(?=[a-z0-9_.-]+==)", text, flags=re.MULTILINE)[1:]
    assert len(blocks) == len(pins)
    assert all("--hash=sha256:" in block for block in blocks)
    assert "pip-audit -r requirements.lock" in deploy_text()

    # Every dependency declared in pyproject.toml is locked, at a version it allows.
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for declared in project["project"]["dependencies"]:
        requirement = Requirement(declared)
        name = canonicalize_name(requirement.name)
        locked = {canonicalize_name(k): v for k, v in pins.items()}
        assert name in locked, f"{name} is not in requirements.lock: regenerate it"
        assert requirement.specifier.contains(locked[name]), (declared, locked[name])
    # The extras of python-telegram-bot: the job queue and the webhook server.
    assert "apscheduler" in pins and "tornado" in pins


def test_guide_covers_going_live() -> None:
    text = deploy_text()
    cron = re.findall(r"^[0-9*/,-]+ [0-9*/,-]+ .*spi-bot backup .*$", text, flags=re.MULTILINE)
    assert cron, "no cron line for spi-bot backup"
    for topic in (
        "SPI_SECRET_KEY",
        "## Restore",
        "## Upgrades",
        "newer than this program",  # the refusal on a newer schema, as Storage words it
        "WEBHOOK_SECRET",
        "reverse_proxy",  # the Caddy example
        "logrotate",
        "docker compose up -d",
    ):
        assert topic in text, topic
    logrotate = (PROJECT_ROOT / "deploy" / "logrotate" / "spi-bot").read_text(encoding="utf-8")
    assert "rotate" in logrotate and "compress" in logrotate
