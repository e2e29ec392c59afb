"""Telegram updates → engine events → Bot API calls. No survey logic lives here."""

from __future__ import annotations

import asyncio
import html
import logging

from telegram import CallbackQuery, Message, Update
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.keyboards import keyboard_payload
from bot.screens import answer_press, edit_screen, send_screen
from bot.services import Services, services_of
from core.events import (
    Choice,
    Command,
    Event,
    Incoming,
    Outcome,
    Reply,
    Sender,
    Text,
    Unsupported,
)
from core.i18n import N_, gettext_for

log = logging.getLogger(__name__)

CHANNEL = "telegram"
PRIVATE = filters.ChatType.PRIVATE
FOREIGN_BUTTON = N_("This button belongs to someone else's chat.")


def services(context: ContextTypes.DEFAULT_TYPE) -> Services:
    return services_of(context.application)


def sender_of(update: Update) -> Sender:
    user = update.effective_user
    chat = update.effective_chat
    assert user is not None
    return Sender(
        channel=CHANNEL,
        user_id=str(user.id),
        address=str(chat.id) if chat is not None and chat.type == ChatType.PRIVATE else None,
        language_code=user.language_code,
    )


async def dispatch(update: Update, context: ContextTypes.DEFAULT_TYPE, event: Event) -> Outcome:
    incoming = Incoming(sender=sender_of(update), event=event, event_id=f"tg:{update.update_id}")
    return await services(context).engine.handle(incoming)


async def send_replies(
    context: ContextTypes.DEFAULT_TYPE,
    chat_id: int,
    replies: list[Reply],
    pressed: Message | None = None,
) -> None:
    """Send replies in order; the first edit-reply replaces the pressed message."""
    for reply in replies:
        markup = keyboard_payload(reply.buttons)
        if reply.edit and pressed is not None:
            target, pressed = pressed, None
            try:
                await edit_screen(context.bot, chat_id, target.message_id, reply.text, markup)
                continue
            except BadRequest as exc:
                if "not modified" in str(exc).lower():
                    continue
                log.info("edit failed (%s); sending a new message", exc)
        await send_screen(context.bot, chat_id, reply.text, markup)


async def on_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None and message.text is not None
    head, _, args = message.text.partition(" ")
    name = head[1:].split("@", 1)[0].lower()
    outcome = await dispatch(update, context, Command(name=name, args=args.strip()))
    await send_replies(context, message.chat_id, outcome.replies)


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None and message.text is not None
    outcome = await dispatch(update, context, Text(text=message.text))
    await send_replies(context, message.chat_id, outcome.replies)


async def on_unsupported(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None
    kind = next(
        (
            k
            for k in ("sticker", "photo", "voice", "video", "document", "location", "contact")
            if getattr(message, k, None)
        ),
        "other",
    )
    outcome = await dispatch(update, context, Unsupported(kind=kind))
    await send_replies(context, message.chat_id, outcome.replies)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    message = query.message if isinstance(query.message, Message) else None
    if message is None or message.chat.type != ChatType.PRIVATE:
        await query.answer()
        return
    if not pressed_in_own_chat(query):
        locale = await user_locale(update, context)
        await _answer_alert(context, query, FOREIGN_BUTTON, locale)
        return
    outcome = await dispatch(update, context, Choice(token=query.data or ""))
    await asyncio.gather(
        _answer(context, query, outcome.notice),
        send_replies(context, message.chat_id, outcome.replies, pressed=message),
    )


def pressed_in_own_chat(query: CallbackQuery) -> bool:
    """A private chat's buttons are its owner's: Telegram never shows them to anyone
    else, so a press from another account is forged and changes nothing."""
    message = query.message if isinstance(query.message, Message) else None
    if message is None or message.chat.type != ChatType.PRIVATE:
        return True  # nothing to compare against; group buttons are refused elsewhere
    return query.from_user.id == message.chat.id


async def _answer_alert(
    context: ContextTypes.DEFAULT_TYPE, query: CallbackQuery, msgid: str, locale: str
) -> None:
    try:
        await answer_press(context.bot, query.id, gettext_for(locale).gettext(msgid), alert=True)
    except BadRequest as exc:
        log.info("callback answer failed: %s", exc)


async def on_id(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/id: the sender's own numeric Telegram id (to put in ADMIN_IDS), and nothing else."""
    message = update.effective_message
    user = update.effective_user
    assert message is not None and user is not None
    tr = gettext_for(await user_locale(update, context))
    await message.reply_text(
        html.escape(tr.gettext("Your Telegram user id: {id}"), quote=False).format(
            id=f"<code>{user.id}</code>"
        )
    )


async def _answer(
    context: ContextTypes.DEFAULT_TYPE, query: CallbackQuery, notice: str | None
) -> None:
    try:
        await answer_press(context.bot, query.id, notice)
    except BadRequest as exc:  # too old to answer: the press itself was still handled
        log.info("callback answer failed: %s", exc)


async def on_edited(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Edits never change an answer; say so instead of staying silent."""
    message = update.effective_message
    assert message is not None
    locale = await user_locale(update, context)
    await message.reply_text(
        gettext_for(locale).gettext(
            "Edited messages are not read. Please send your answer as a new message."
        )
    )


async def on_group_message(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Surveys are confidential: point group members to a private chat."""
    message = update.effective_message
    assert message is not None
    username = context.bot.username
    text = (
        gettext_for(services(context).settings.default_locale)
        .gettext(
            "The survey runs only in a private chat, to keep your answers confidential. "
            "Open a chat with @{bot} and send /start."
        )
        .format(bot=username)
    )
    await message.reply_text(text)


async def user_locale(update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
    user = update.effective_user
    svc = services(context)
    if user is None:
        return svc.settings.default_locale
    key = svc.engine.respondent_key(CHANNEL, str(user.id))
    async with svc.storage.read() as tx:  # never waits for the writer
        state = await tx.get_session(key)
    return state.locale if state else svc.settings.default_locale


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the failure and apologise in private chats; never leave the user in silence."""
    log.error("error while handling an update", exc_info=context.error)
    if not isinstance(update, Update) or update.effective_chat is None:
        return
    if update.effective_chat.type != ChatType.PRIVATE:
        return
    try:
        locale = await user_locale(update, context)
    except Exception:  # the database itself may be what failed
        locale = services(context).settings.default_locale
    text = gettext_for(locale).gettext(
        "Sorry, something went wrong on our side. Your earlier answers are safe; "
        "please try again in a moment or send /lanjut."
    )
    try:
        if update.callback_query is not None:
            await update.callback_query.answer()
        await context.bot.send_message(update.effective_chat.id, text)
    except (Forbidden, TelegramError) as exc:
        log.warning("could not apologise: %s", exc)


def add_survey_handlers(application: Application) -> None:  # type: ignore[type-arg]
    new_messages = filters.UpdateType.MESSAGE
    application.add_handler(CallbackQueryHandler(on_button))
    application.add_handler(MessageHandler(new_messages & PRIVATE & filters.COMMAND, on_command))
    application.add_handler(MessageHandler(new_messages & PRIVATE & filters.TEXT, on_text))
    application.add_handler(MessageHandler(filters.UpdateType.EDITED_MESSAGE & PRIVATE, on_edited))
    application.add_handler(MessageHandler(new_messages & PRIVATE, on_unsupported))
    application.add_handler(
        MessageHandler(new_messages & filters.ChatType.GROUPS & filters.COMMAND, on_group_message)
    )
    application.add_error_handler(on_error)
