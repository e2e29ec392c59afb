"""Settings from the environment and `.env`, validated at start-up.

A wrong setting stops the bot before it talks to anyone, with a message that
names the setting and the reason, instead of failing later mid-conversation.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MIN_SECRET_LENGTH = 32
# "123456789:AA..." as @BotFather issues it: the bot's id, a colon, a URL-safe secret.
TOKEN_PATTERN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,100}")
# Telegram's secret_token: 1-256 characters, only A-Z, a-z, 0-9, _ and -.
WEBHOOK_SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{32,256}")


class SettingsError(Exception):
    """Settings that cannot be used; the message names each field and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    telegram_bot_token: SecretStr | None = None
    telegram_base_url: str = "https://api.telegram.org/bot"
    database_path: Path = Path("data/spi.sqlite3")
    spi_secret_key: SecretStr | None = None
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    default_locale: Literal["id", "en"] = "id"
    timezone: str = "Asia/Jakarta"
    survey_period: Annotated[str, Field(min_length=1, max_length=16)] = "2025"
    questionnaire_path: Path = PROJECT_ROOT / "surveys" / "spi.toml"
    units_path: Path = PROJECT_ROOT / "surveys" / "units-kota-semarang.toml"
    survey_window_start: dt.date = dt.date(2025, 6, 2)
    survey_window_end: dt.date = dt.date(2025, 6, 30)
    reminder_days_before: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [14, 7, 1])
    reminder_time: dt.time = dt.time(9, 0)
    reminder_every_days: Annotated[int, Field(ge=1, le=30)] = 3
    invite_ttl_hours: Annotated[int, Field(ge=1, le=24 * 30)] = 72
    incoming_per_minute: Annotated[int, Field(ge=1)] = 40
    data_controller: Annotated[str, Field(min_length=1, max_length=120)] = (
        "Inspektorat Kota Semarang"
    )
    privacy_contact: Annotated[str, Field(max_length=200)] = ""
    retention_days: Annotated[int, Field(ge=0, le=3650)] = 90
    chat_export_enabled: bool = False  # /ekspor in chat; off: exports from the server only
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    # Plain HTTP on the loopback interface, behind a TLS reverse proxy (docs/DEPLOY.md).
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = 8443
    # WhatsApp Cloud API (see docs/WHATSAPP.md); the channel runs when phone id and token are set.
    whatsapp_phone_id: str | None = None
    whatsapp_token: SecretStr | None = None
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    whatsapp_listen: str = "127.0.0.1"
    whatsapp_port: Annotated[int, Field(ge=0, le=65535)] = 8081  # 0: any free port
    whatsapp_api_url: str = "https://graph.facebook.com/v23.0"
    whatsapp_reminder_template: str | None = None
    whatsapp_template_language: Annotated[str, Field(min_length=2, max_length=8)] = "id"
    whatsapp_rate: Annotated[float, Field(gt=0, le=1000)] = 80.0
    # Fieldwork (docs/FIELDWORK.md): invitation links, sampling, target samples.
    telegram_bot_username: (
        Annotated[str, Field(pattern=r"^@?[A-Za-z][A-Za-z0-9_]{3,31}$")] | None
    ) = None
    whatsapp_number: Annotated[str, Field(pattern=r"^\+?[0-9]{8,15}$")] | None = None
    sampled_only: bool = False
    sample_margin_of_error: Annotated[float, Field(gt=0, lt=0.5)] = 0.10
    # WhatsApp admins by number (wa_id: country code and number, digits only, e.g.
    # 6281234567890). ADMIN_IDS are Telegram user ids and never match a WhatsApp number.
    whatsapp_admin_numbers: Annotated[list[int], NoDecode] = Field(default_factory=list)

    @field_validator("admin_ids", "reminder_days_before", mode="before")
    @classmethod
    def _comma_separated_ints(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                return [int(p) for p in parts]
            except ValueError:
                raise ValueError("expected comma-separated whole numbers, e.g. 1234,5678") from None
        if isinstance(value, int):
            return [value]
        return value

    @field_validator("whatsapp_admin_numbers", mode="before")
    @classmethod
    def _comma_separated_numbers(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip().removeprefix("+") for p in value.split(",") if p.strip()]
            if not all(p.isascii() and p.isdigit() and 6 <= len(p) <= 15 for p in parts):
                raise ValueError("expected comma-separated WhatsApp numbers, e.g. 6281234567890")
            return [int(p) for p in parts]
        if isinstance(value, int):
            return [value]
        return value

    def configured_admins(self, channel: str) -> list[int]:
        """The admins a channel's settings name: ADMIN_IDS (Telegram) or
        WHATSAPP_ADMIN_NUMBERS (WhatsApp)."""
        if channel == "telegram":
            return self.admin_ids
        if channel == "whatsapp":
            return self.whatsapp_admin_numbers
        return []

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}' (e.g. Asia/Jakarta)") from None
        return value

    @field_validator("spi_secret_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SECRET_LENGTH} characters "
                "(generate one with: python -c 'import secrets; print(secrets.token_hex(32))')"
            )
        return value

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # The message never repeats the value: a near-miss token is still a secret.
        if value is not None and TOKEN_PATTERN.fullmatch(value.get_secret_value()) is None:
            raise ValueError(
                "malformed bot token (expected digits, a colon and letters, digits, _ or -, "
                "as issued by @BotFather; check for spaces or quotes)"
            )
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and WEBHOOK_SECRET_PATTERN.fullmatch(value.get_secret_value()) is None:
            raise ValueError(
                f"must be {MIN_SECRET_LENGTH} to 256 characters, only A-Z, a-z, 0-9, _ and - "
                "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @property
    def whatsapp_enabled(self) -> bool:
        return bool(self.whatsapp_phone_id) and self.whatsapp_token is not None

    def whatsapp_secrets(self) -> tuple[bytes, str]:
        """The app secret (webhook signatures) and the verify token; both are required."""
        if self.whatsapp_app_secret is None or self.whatsapp_verify_token is None:
            raise SettingsError(
                "WHATSAPP_APP_SECRET and WHATSAPP_VERIFY_TOKEN: required with WHATSAPP_PHONE_ID "
                "(the webhook refuses unsigned requests; see docs/WHATSAPP.md)"
            )
        return (
            self.whatsapp_app_secret.get_secret_value().encode(),
            self.whatsapp_verify_token.get_secret_value(),
        )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def secret_key(self) -> bytes:
        """The pseudonym key; running without one would make pseudonyms guessable."""
        if self.spi_secret_key is None:
            raise SettingsError(
                "SPI_SECRET_KEY: required to run the bot (key for respondent pseudonyms); "
                f"set at least {MIN_SECRET_LENGTH} random characters in the environment or .env"
            )
        return self.spi_secret_key.get_secret_value().encode()


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning validation errors into one readable :class:`SettingsError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]).upper() or "(settings)"
            message = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{field}: {message}")
        # One line, so a service manager's log shows the whole reason at a glance.
        summary = "; ".join(problems)
        raise SettingsError(f"invalid settings (environment / .env): {summary}") from None
