"""Build the PTB Application: HTTP client, per-user ordering, handlers, commands menu."""

from __future__ import annotations

import logging

from telegram import BotCommand, Update
from telegram.ext import Application, ApplicationBuilder, TypeHandler

from bot.admin_handlers import add_admin_handlers
from bot.broadcast_handlers import add_broadcast_handlers, start_reminders
from bot.flood import FloodGuard
from bot.handlers import add_survey_handlers
from bot.http import AiohttpRequest
from bot.processor import PerUserUpdateProcessor
from bot.services import SERVICES_KEY, Services, services_of
from core.i18n import N_, gettext_for

log = logging.getLogger(__name__)

# Many respondents press buttons at once; PTB's default pool of 1 connection
# would serialise every Bot API call behind a single socket (see bot/http.py).
CONNECTION_POOL_SIZE = 256

MENU = (
    ("start", N_("Start or continue the survey")),
    ("lanjut", N_("Continue an unfinished survey")),
    ("batal", N_("Discard the unfinished survey")),
    ("bantuan", N_("Help")),
    ("privasi", N_("How your data is handled")),
    ("bahasa", N_("Bahasa Indonesia / English")),
    ("hapus_data", N_("Erase your contact data")),
    ("berhenti", N_("Stop reminders")),
    ("langganan", N_("Receive reminders again")),
    ("skor", N_("Integrity index of your unit (officials)")),
    ("daftar", N_("Register as an official with an invite code")),
)


def menu_for(locale: str) -> list[BotCommand]:
    tr = gettext_for(locale)
    return [BotCommand(name, tr.gettext(text)) for name, text in MENU]


async def register_commands(application: Application) -> None:  # type: ignore[type-arg]
    """Indonesian by default, English for English-language Telegram clients."""
    bot = application.bot
    await bot.set_my_commands(menu_for("id"))
    await bot.set_my_commands(menu_for("en"), language_code="en")


async def on_startup(application: Application) -> None:  # type: ignore[type-arg]
    """Commands menu, WAL housekeeping, then reminders and interrupted broadcasts."""
    services_of(application).storage.start_background_checkpoints()
    await register_commands(application)
    await start_reminders(application)


def build_application(svc: Services) -> Application:  # type: ignore[type-arg]
    settings = svc.settings
    if settings.telegram_bot_token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    request = AiohttpRequest(connection_limit=CONNECTION_POOL_SIZE)
    builder: ApplicationBuilder = (  # type: ignore[type-arg]
        Application.builder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(settings.telegram_base_url)
        .request(request)
        .get_updates_request(AiohttpRequest(connection_limit=2, read_timeout=40.0))
        .concurrent_updates(PerUserUpdateProcessor())
        .post_init(on_startup)
    )
    application = builder.build()
    application.bot_data[SERVICES_KEY] = svc
    application.add_handler(TypeHandler(Update, FloodGuard(settings.incoming_per_minute)), group=-1)
    # Both before the survey's catch-all button handler: in a group the first match wins.
    add_admin_handlers(application)
    add_broadcast_handlers(application)
    add_survey_handlers(application)
    return application
