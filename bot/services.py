"""Start-up wiring shared by every channel: settings → data files → storage → engine.

Everything that can be wrong with the configuration is checked here, before a
channel starts, so a bad file stops start-up with its name, field and reason.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from telegram.ext import Application

from core.broadcast import SurveyProgress
from core.config import MIN_SECRET_LENGTH, Settings, SettingsError
from core.engine import Engine, PrivacyNotice
from core.model import utcnow
from core.questionnaire import Questionnaire, load_questionnaire
from core.retention import purge_due
from core.storage import Storage
from core.units import UnitRegistry, load_units

EVENT_MEMORY = dt.timedelta(hours=24)  # Telegram's redelivery horizon (see bot/jobs.py)
TRYOUT_DATABASE = "spi-tryout.sqlite3"
SERVICES_KEY = "services"  # where the Telegram application keeps its Services
AnyApplication: TypeAlias = Application[Any, Any, Any, Any, Any, Any]


@dataclass
class Services:
    settings: Settings
    questionnaire: Questionnaire
    units: UnitRegistry
    storage: Storage
    engine: Engine
    secret_key: bytes

    @property
    def progress(self) -> SurveyProgress:
        """Who started or finished this period, for reminder audiences."""
        return SurveyProgress(self.secret_key, self.questionnaire.period)

    async def close(self) -> None:
        await self.storage.close()


class StartupError(Exception):
    """Start-up cannot go on; the message is one line naming what, where and why."""


T = TypeVar("T")


def not_utf8(path: Path, exc: UnicodeDecodeError) -> str:
    return (
        f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
        "save the file as UTF-8"
    )


def read_data_file(load: Callable[[Path], T], path: Path) -> T:
    """``load(path)``, with a file in another encoding reported by name, not a traceback."""
    try:
        return load(path)
    except UnicodeDecodeError as exc:
        raise StartupError(not_utf8(path, exc)) from None


def load_survey(settings: Settings) -> tuple[Questionnaire, UnitRegistry]:
    questionnaire = read_data_file(load_questionnaire, settings.questionnaire_path)
    if questionnaire.period != settings.survey_period:
        raise SettingsError(
            f"SURVEY_PERIOD: is '{settings.survey_period}' but "
            f"{settings.questionnaire_path} is for period '{questionnaire.period}'"
        )
    return questionnaire, read_data_file(load_units, settings.units_path)


def tryout_database(database_path: Path) -> Path:
    """The terminal try-out's own database, beside the bot's: try-outs never count."""
    return database_path.with_name(TRYOUT_DATABASE)


def local_secret_key(database_path: Path) -> bytes:
    """A key kept beside a local database, so a try-out needs no configuration."""
    key_path = database_path.with_name(database_path.name + ".key")
    try:
        if key_path.exists():
            key = key_path.read_text().strip()
            if len(key) >= MIN_SECRET_LENGTH:
                return key.encode()
        key_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupError(f"{key_path}: cannot keep the try-out key: {reason}") from None
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key.encode()


async def open_services(
    settings: Settings, secret_key: bytes | None = None, database_path: Path | None = None
) -> Services:
    """Everything a channel needs, on ``database_path`` (default: DATABASE_PATH)."""
    questionnaire, units = load_survey(settings)
    key = secret_key if secret_key is not None else settings.secret_key()
    storage = await Storage.open(database_path or settings.database_path)
    async with storage.transaction() as tx:
        await tx.prune_events(utcnow() - EVENT_MEMORY)
        await purge_due(tx, dt.datetime.now(settings.tz).date())
    notice = PrivacyNotice(
        controller=settings.data_controller,
        contact=settings.privacy_contact,
        retention_days=settings.retention_days,
    )
    engine = Engine(
        questionnaire,
        units,
        storage,
        key,
        default_locale=settings.default_locale,
        notice=notice,
        sampled_only=settings.sampled_only,
    )
    return Services(settings, questionnaire, units, storage, engine, key)


def services_of(application: AnyApplication) -> Services:
    """The Services a Telegram application was built with (see bot.app)."""
    found: Services = application.bot_data[SERVICES_KEY]
    return found
