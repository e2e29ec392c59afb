"""Telegram commands for broadcasts and reminder subscriptions.

/siaran, /siaran_status and /jadwal are for administrators: rights are read
from the database on every command and every button press (a forwarded or
forged ``bc|`` button does nothing for anyone else). /berhenti and /langganan
are for everyone in a private chat.

They join the default handler group (after the flood guard's group -1) and
must be added before the survey's catch-all command and button handlers, which
would otherwise answer "unknown command" or "button not recognised".
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any

from telegram import Message, Update
from telegram.error import BadRequest
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)

from bot import jobs, render
from bot.admin_handlers import (
    NEW_PRIVATE,
    answer_query,
    bad_arguments,
    caller_of,
    desk_of,
    respond,
)
from bot.handlers import pressed_in_own_chat, services
from bot.jobs import CHANNEL, Clock
from bot.services import AnyApplication, Services
from core.desk import Desk, Refused
from core.i18n import gettext_for
from core.model import utcnow
from core.storage import Transaction

log = logging.getLogger(__name__)

HANDLER_GROUP = 0
CALLBACK_PREFIX = "bc|"
_INSTALLED_KEY = "broadcast_handlers_installed"
_BUTTON = re.compile(r"^bc\|(send|cancel)\|([0-9]{1,12})$")
_ARGS = re.compile(r"^/\S+\s?(.*)$", re.DOTALL)

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


async def locale_of(svc: Services, tx: Transaction, user_id: int, chat_id: int) -> str:
    """The contact's language, else the survey session's, else the default."""
    contact = await tx.get_contact(CHANNEL, str(chat_id))
    if contact is not None:
        return contact.locale
    state = await tx.get_session(svc.engine.respondent_key(CHANNEL, str(user_id)))
    return state.locale if state else svc.settings.default_locale


def command_args(message: Message) -> str:
    match = _ARGS.match(message.text or "")
    return match.group(1).strip() if match else ""


async def _context_of(
    update: Update, context: ContextTypes.DEFAULT_TYPE
) -> tuple[Services, Message, int, dt.datetime]:
    message = update.effective_message
    user = update.effective_user
    assert message is not None and user is not None
    return services(context), message, user.id, utcnow()


# -- everyone: opt out / opt in -------------------------------------------------------
async def on_stop_reminders(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/berhenti: no reminders or announcements any more (kept even if /start follows)."""
    svc, message, user_id, _now = await _context_of(update, context)
    address = str(message.chat_id)
    async with svc.storage.transaction() as tx:
        locale = await locale_of(svc, tx, user_id, message.chat_id)
        if await tx.get_contact(CHANNEL, address) is None:
            # Remember the choice, or a later /start would subscribe them again.
            await tx.upsert_contact(CHANNEL, address, locale)
        await tx.set_contact_opt_out(CHANNEL, address, True)
    _ = gettext_for(locale).gettext
    await message.reply_text(
        _(
            "You will no longer receive reminders or announcements. You can still take the "
            "survey at any time with /start. Send /langganan to receive reminders again."
        )
    )


async def on_resume_reminders(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/langganan: reminders again."""
    svc, message, user_id, _now = await _context_of(update, context)
    address = str(message.chat_id)
    async with svc.storage.transaction() as tx:
        locale = await locale_of(svc, tx, user_id, message.chat_id)
        await tx.upsert_contact(CHANNEL, address, locale)
        await tx.set_contact_opt_out(CHANNEL, address, False)
    _ = gettext_for(locale).gettext
    await message.reply_text(
        _("You will receive survey reminders again. Send /berhenti to stop them.")
    )


# -- admins: /siaran, its button, /siaran_status, /jadwal ------------------------------
# Parse → desk → render → send: the desk checks the role and does the work in one
# transaction; the reply goes out after it, never while the writer lock is held.
async def on_broadcast(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/siaran <text>: a draft with a preview and a confirm button; nothing is sent yet."""
    message = update.effective_message
    assert message is not None
    text = command_args(message)
    if not text:
        await bad_arguments(update, context, "siaran")
        return
    desk = desk_of(context.application)
    result = await desk.broadcast_draft(caller_of(update), text, escape, channels(desk))
    await respond(update, "siaran", result, render.draft)


def channels(desk: Desk) -> tuple[str, ...]:
    """Where a broadcast goes: Telegram, and WhatsApp when it is set up (its sender
    skips, with the reason, those outside the 24-hour window)."""
    if desk.settings.whatsapp_enabled:
        return (CHANNEL, "whatsapp")
    return (CHANNEL,)


def escape(text: str) -> str:
    """Broadcast texts are stored as sent: Telegram HTML."""
    return html.escape(text, quote=False)


async def on_broadcast_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The preview's send/cancel button: admin rights are checked again on the press."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and user is not None
    desk = desk_of(context.application)
    caller = caller_of(update)
    message = query.message if isinstance(query.message, Message) else None
    if not pressed_in_own_chat(query):
        await answer_query(query, render.foreign_button((await desk.role(caller)).locale))
        return
    match = _BUTTON.match(query.data or "")
    if match is None:
        view = await desk.role(caller)
        await answer_query(query, render.refusal(Refused("button_unknown", view.locale), "siaran"))
        return
    broadcast_id = int(match.group(2))
    result = await desk.broadcast_decide(
        caller, broadcast_id, match.group(1) == "send", channels(desk)
    )
    if isinstance(result, Refused):
        await answer_query(query, render.refusal(result, "siaran"))
        return
    if result.started is not None:
        sender = jobs.sender_of(context.application)
        if sender is not None:
            sender.wake()
        log.info("broadcast %d started by an admin: %d recipients", broadcast_id, result.started)
    rendered = render.decided(result)
    await answer_query(query, None)
    if message is not None:
        try:
            await message.edit_text(rendered.text, reply_markup=None)
            return
        except BadRequest as exc:
            log.info("could not edit the preview (%s); sending a new message", exc)
    await context.bot.send_message(message.chat_id if message else user.id, rendered.text)


async def on_broadcast_status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/siaran_status: per broadcast sent/blocked/failed/pending, and the current rate."""
    desk = desk_of(context.application)
    result = await desk.broadcast_status(caller_of(update))
    sender = jobs.sender_of(context.application)
    state = (
        render.SenderState(sender.rate, sender.paused_for(), sender.retry_after_total)
        if sender is not None
        else render.SenderState(jobs.DEFAULT_RATE)
    )
    await respond(
        update,
        "siaran_status",
        result,
        lambda v: render.broadcast_status(v, desk.settings.tz, state),
    )


async def on_schedule(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/jadwal: every reminder of the window and whether it is scheduled, sent or missed."""
    desk = desk_of(context.application)
    result = await desk.reminder_schedule(caller_of(update))
    await respond(update, "jadwal", result, lambda v: render.schedule(v, desk.settings.timezone))


# -- wiring ---------------------------------------------------------------------------
def add_broadcast_handlers(application: AnyApplication) -> None:
    """Register the commands and the ``bc|`` button handler (idempotent).

    Call it before ``add_survey_handlers``: in one handler group the first match wins.
    """
    if application.bot_data.get(_INSTALLED_KEY):
        return
    application.bot_data[_INSTALLED_KEY] = True
    private = NEW_PRIVATE
    commands: tuple[tuple[str, Handler], ...] = (
        ("siaran", on_broadcast),
        ("siaran_status", on_broadcast_status),
        ("jadwal", on_schedule),
        ("berhenti", on_stop_reminders),
        ("langganan", on_resume_reminders),
    )
    for name, callback in commands:
        application.add_handler(CommandHandler(name, callback, filters=private), HANDLER_GROUP)
    application.add_handler(
        CallbackQueryHandler(on_broadcast_button, pattern="^" + re.escape(CALLBACK_PREFIX)),
        HANDLER_GROUP,
    )


async def start_reminders(
    application: AnyApplication, *, clock: Clock = utcnow, rate: float | None = None
) -> None:
    """Call from post_init: recover interrupted sends, schedule reminders, start the sender."""
    await jobs.start(application, clock=clock, rate=rate)
