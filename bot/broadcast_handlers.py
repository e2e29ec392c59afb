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

from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_decimal
from telegram import CallbackQuery, Message, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    filters,
)

from bot import jobs
from bot.handlers import services
from bot.jobs import CHANNEL, Clock
from bot.keyboards import inline_keyboard
from bot.services import AnyApplication, Services
from core import broadcast as bc
from core.access import role_of
from core.events import Button
from core.i18n import N_, SUPPORTED_LOCALES, gettext_for
from core.model import utcnow
from core.reminders import ReminderRules, ReminderState, plan
from core.storage import Transaction

log = logging.getLogger(__name__)

HANDLER_GROUP = 0
CALLBACK_PREFIX = "bc|"
_INSTALLED_KEY = "broadcast_handlers_installed"
_BUTTON = re.compile(r"^bc\|(send|cancel)\|(\d{1,12})$")
_ARGS = re.compile(r"^/\S+\s?(.*)$", re.DOTALL)
RECENT_BROADCASTS = 5

KIND_LABELS: dict[str, str] = {
    "before": N_("before the window"),
    "during": N_("during the window"),
    "closing": N_("closing reminder"),
}
AUDIENCE_LABELS: dict[bc.Audience, str] = {
    "all": N_("everyone reachable"),
    "not_completed": N_("everyone who has not completed"),
    "started": N_("those with an unfinished survey"),
}
STATE_LABELS: dict[ReminderState, str] = {
    "upcoming": N_("scheduled"),
    "due": N_("due now"),
    "expired": N_("missed (not sent on its day)"),
}

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


async def _refuse(message: Message, locale: str) -> None:
    await message.reply_text(
        gettext_for(locale).gettext("Sorry, this command is only for administrators.")
    )


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
async def on_broadcast(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/siaran <text>: a draft with a preview and a confirm button; nothing is sent yet."""
    svc, message, user_id, now = await _context_of(update, context)
    text = command_args(message)
    async with svc.storage.transaction() as tx:
        locale = await locale_of(svc, tx, user_id, message.chat_id)
        _ = gettext_for(locale).gettext
        if not (await role_of(tx, user_id, svc.settings.admin_ids)).admin:
            await _refuse(message, locale)
            return
        if not text:
            await message.reply_text(
                _(
                    "Usage: /siaran followed by the message, e.g. /siaran The survey is open "
                    "until 30 June. You will see a preview and the number of recipients first."
                )
            )
            return
        if len(text) > bc.MAX_TEXT_LENGTH:
            await message.reply_text(
                _("The message is too long ({length} characters; at most {limit}).").format(
                    length=len(text), limit=bc.MAX_TEXT_LENGTH
                )
            )
            return
        recipients = await bc.count_audience(tx, "all", CHANNEL, svc.progress)
        escaped = html.escape(text)
        draft_id = await bc.create_draft(
            tx,
            kind="manual",
            texts={loc: escaped for loc in SUPPORTED_LOCALES},
            audience="all",
            now=now,
            created_by=user_id,
        )
    assert draft_id is not None
    header = _(
        "Preview of broadcast #{id}. It goes to {count} recipients (everyone who started "
        "the bot and did not opt out):"
    ).format(id=draft_id, count=recipients)
    buttons = [
        [
            Button(
                _("📣 Send to {count} recipients").format(count=recipients), f"bc|send|{draft_id}"
            )
        ],
        [Button(_("✖️ Cancel"), f"bc|cancel|{draft_id}")],
    ]
    await message.reply_text(
        f"<b>{html.escape(header)}</b>\n\n{escaped}",
        parse_mode=ParseMode.HTML,
        reply_markup=inline_keyboard(buttons),
    )


async def on_broadcast_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The preview's send/cancel button: admin rights are checked again on the press."""
    query = update.callback_query
    user = update.effective_user
    assert query is not None and user is not None
    svc, now = services(context), utcnow()
    message = query.message if isinstance(query.message, Message) else None
    chat_id = message.chat_id if message is not None else user.id
    match = _BUTTON.match(query.data or "")
    broadcast_id = int(match.group(2)) if match else 0
    started: int | None = None
    cancelled = False
    async with svc.storage.transaction() as tx:
        locale = await locale_of(svc, tx, user.id, chat_id)
        _ = gettext_for(locale).gettext
        admin = (await role_of(tx, user.id, svc.settings.admin_ids)).admin
        if admin and match is not None:
            if match.group(1) == "send":
                started = await bc.start_draft(tx, broadcast_id, (CHANNEL,), now, svc.progress)
            else:
                cancelled = await bc.cancel_draft(tx, broadcast_id, now)
    if not admin:
        await _answer(query, _("Sorry, this command is only for administrators."), alert=True)
        return
    if match is None:
        await _answer(query, _("This button is not recognised."))
        return
    if started is None and not cancelled:
        await _answer(query, _("This broadcast was already sent or cancelled."))
        return
    if started is not None:
        text = _(
            "📣 Broadcast #{id} is being sent to {count} recipients. Follow it with /siaran_status."
        ).format(id=broadcast_id, count=started)
        sender = jobs.sender_of(context.application)
        if sender is not None:
            sender.wake()
        log.info("broadcast %d started by an admin: %d recipients", broadcast_id, started)
    else:
        text = _("Broadcast #{id} was cancelled; nothing was sent.").format(id=broadcast_id)
    await _answer(query, None)
    if message is not None:
        try:
            await message.edit_text(text, reply_markup=None)
            return
        except BadRequest as exc:
            log.info("could not edit the preview (%s); sending a new message", exc)
    await context.bot.send_message(chat_id, text)


async def _answer(query: CallbackQuery, text: str | None, alert: bool = False) -> None:
    try:
        await query.answer(text, show_alert=alert)
    except BadRequest as exc:  # too old to answer; the press was still handled
        log.info("callback answer failed: %s", exc)


async def on_broadcast_status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/siaran_status: per broadcast sent/blocked/failed/pending, and the current rate."""
    svc, message, user_id, now = await _context_of(update, context)
    async with svc.storage.transaction() as tx:
        locale = await locale_of(svc, tx, user_id, message.chat_id)
        if not (await role_of(tx, user_id, svc.settings.admin_ids)).admin:
            await _refuse(message, locale)
            return
        recent = await bc.recent_broadcasts(tx, RECENT_BROADCASTS)
        tallies = [await bc.counts(tx, b.id) for b in recent]
        rate = await bc.current_rate(tx, now)
    _ = gettext_for(locale).gettext
    tz = svc.settings.tz
    title = _("Broadcasts")
    lines = [f"<b>{html.escape(title)}</b>"]
    if not recent:
        lines.append(_("No broadcasts yet."))
    for item, tally in zip(recent, tallies, strict=True):
        created = dt.datetime.fromisoformat(item.created_at)
        label = KIND_LABELS.get(item.message_key or "") if item.kind == "reminder" else None
        kind = _(label) if label else _("announcement")
        state = _("finished") if item.status == "done" else _("sending")
        lines.append(
            "\n"
            + _("#{id} · {kind} · {created} · {state}").format(
                id=item.id,
                kind=kind,
                created=format_datetime(created, "d MMM y HH:mm", tzinfo=tz, locale=locale),
                state=state,
            )
        )
        lines.append(
            _("sent {sent} · blocked {blocked} · failed {failed} · pending {pending}").format(
                sent=tally.sent, blocked=tally.blocked, failed=tally.failed, pending=tally.pending
            )
        )
        if tally.sending or tally.unknown or tally.skipped:
            lines.append(
                _("in flight {sending} · unknown {unknown} · skipped {skipped}").format(
                    sending=tally.sending, unknown=tally.unknown, skipped=tally.skipped
                )
            )
    sender = jobs.sender_of(context.application)
    limit = sender.rate if sender is not None else jobs.DEFAULT_RATE
    lines.append(
        "\n"
        + _("Current rate: {rate} messages/s (limit {limit}/s).").format(
            rate=format_decimal(round(rate, 1), "0.0", locale=locale),
            limit=format_decimal(limit, locale=locale),
        )
    )
    if sender is not None:
        if sender.paused_for() > 0:
            lines.append(
                _("Paused by Telegram flood control for {seconds} s.").format(
                    seconds=f"{sender.paused_for():.0f}"
                )
            )
        lines.append(
            _("Flood-control answers (429) since start: {count}.").format(
                count=sender.retry_after_total
            )
        )
    await message.reply_text("\n".join(lines), parse_mode=ParseMode.HTML)


async def on_schedule(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/jadwal: every reminder of the window and whether it is scheduled, sent or missed."""
    svc, message, user_id, now = await _context_of(update, context)
    rules = ReminderRules.from_settings(svc.settings)
    planned = plan(rules, now)
    async with svc.storage.transaction() as tx:
        locale = await locale_of(svc, tx, user_id, message.chat_id)
        if not (await role_of(tx, user_id, svc.settings.admin_ids)).admin:
            await _refuse(message, locale)
            return
        existing = await bc.broadcasts_by_key(tx, [p.occurrence.key for p in planned])
        tallies = {key: await bc.counts(tx, b.id) for key, b in existing.items()}
    _ = gettext_for(locale).gettext
    header = _("Reminder schedule ({tz}): survey window {start} – {end}, at {time}.").format(
        tz=svc.settings.timezone,
        start=format_date(rules.window_start, "long", locale=locale),
        end=format_date(rules.window_end, "long", locale=locale),
        time=format_time(rules.at_time, "HH:mm", locale=locale),
    )
    lines = [f"<b>{html.escape(header)}</b>"]
    if not planned:
        lines.append(
            _("No reminders: SURVEY_WINDOW_END is before SURVEY_WINDOW_START.")
            if not rules.valid
            else _("No reminders are configured.")
        )
    for item in planned:
        occurrence = item.occurrence
        tally = tallies.get(occurrence.key)
        if tally is not None:
            state = _("sent to {sent} of {total}").format(sent=tally.sent, total=tally.total)
            if tally.open:
                state += " · " + _("{pending} pending").format(pending=tally.open)
        else:
            state = _(STATE_LABELS[item.state])
        when = format_datetime(occurrence.at, "EEE d MMM y HH:mm", tzinfo=rules.tz, locale=locale)
        kind = _(KIND_LABELS[occurrence.kind])
        audience = _(AUDIENCE_LABELS[occurrence.audience])
        lines.append(f"• {when} — {kind} — {audience} — {state}")
    await message.reply_text("\n".join(lines), parse_mode=ParseMode.HTML)


# -- wiring ---------------------------------------------------------------------------
def add_broadcast_handlers(application: AnyApplication) -> None:
    """Register the commands and the ``bc|`` button handler (idempotent).

    Call it before ``add_survey_handlers``: in one handler group the first match wins.
    """
    if application.bot_data.get(_INSTALLED_KEY):
        return
    application.bot_data[_INSTALLED_KEY] = True
    private = filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE
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
