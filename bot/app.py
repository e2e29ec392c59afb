"""Build the PTB Application: the composition root of the Telegram channel.

HTTP client, per-user ordering, every handler in order, the commands menu, and
PTB's lifecycle: ``post_init`` starts housekeeping, the menu and the broadcast
sender; ``post_stop`` stops the sender (an event, no polling); ``post_shutdown``
closes the services. ``Defaults(parse_mode=HTML)`` is
set here once; what is sent is escaped where it is rendered (bot/render.py).
"""

from __future__ import annotations

import logging

from telegram import BotCommand, Update
from telegram.constants import ParseMode
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CommandHandler,
    Defaults,
    TypeHandler,
)

from bot.admin_handlers import DESK_KEY, NEW_PRIVATE, add_admin_handlers
from bot.broadcast_handlers import add_broadcast_handlers, start_reminders
from bot.flood import FloodGuard
from bot.handlers import add_survey_handlers, on_id
from bot.http import AiohttpRequest
from bot.jobs import stop as stop_sender
from bot.processor import PerUserUpdateProcessor
from bot.services import SERVICES_KEY, Services, services_of
from core.desk import Desk
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
    ("id", N_("Your Telegram user id (for the inspectorate's settings)")),
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


async def on_stop(application: Application) -> None:  # type: ignore[type-arg]
    """After the last update: the broadcast sender finishes what is in flight and stops."""
    await stop_sender(application)


async def on_shutdown(application: Application) -> None:  # type: ignore[type-arg]
    """After the last update and the sender have finished: close the database."""
    await services_of(application).close()


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
        .defaults(Defaults(parse_mode=ParseMode.HTML))
        .post_init(on_startup)
        .post_stop(on_stop)
        .post_shutdown(on_shutdown)
    )
    application = builder.build()
    application.bot_data[SERVICES_KEY] = svc
    application.bot_data[DESK_KEY] = Desk(
        settings=settings,
        questionnaire=svc.questionnaire,
        units=svc.units,
        storage=svc.storage,
        secret_key=svc.secret_key,
    )
    application.add_handler(TypeHandler(Update, FloodGuard(settings.incoming_per_minute)), group=-1)
    # All before the survey's catch-all handlers: in a group the first match wins.
    application.add_handler(CommandHandler("id", on_id, filters=NEW_PRIVATE))
    add_admin_handlers(application)
    add_broadcast_handlers(application)
    add_survey_handlers(application)
    return application
