"""Telegram commands for officials and admins: parse → desk → render → send.

The rules (who may see which unit, who may change what) live in
:class:`core.desk.Desk`, which checks the caller's role in the database on every
command and every button press: a button is never a permission. Arguments are
parsed with the desk's explicit patterns; a command that cannot be parsed gets
its usage (admins) or a refusal (everyone else). Nothing is sent while a
transaction is open: the desk returns data, and the reply goes out afterwards.

Commands match new messages only: an edited ``/koreksi`` is not run again, and
every change claims the update id in its own transaction, so a redelivered
update changes nothing either.
"""

from __future__ import annotations

import html
import io
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from telegram import CallbackQuery, Message, Update
from telegram.error import BadRequest
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, filters

from bot import desk_buttons, render
from bot.handlers import CHANNEL, pressed_in_own_chat
from bot.keyboards import inline_keyboard
from bot.render import Rendered
from bot.services import AnyApplication
from core import desk as d
from core.desk import Caller, Desk, Refused

log = logging.getLogger(__name__)

DESK_KEY = "desk"  # where the Telegram application keeps its Desk
NEW_PRIVATE = filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE
_ARGS = re.compile(r"^/\S+\s?(.*)$", re.DOTALL)

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]
T = TypeVar("T")


def desk_of(application: AnyApplication) -> Desk:
    found: Desk = application.bot_data[DESK_KEY]
    return found


def caller_of(update: Update) -> Caller:
    user = update.effective_user
    assert user is not None
    return Caller(CHANNEL, user.id, f"tg:{update.update_id}")


def command_args(update: Update) -> str:
    """Everything after the command, as typed (``context.args`` splits and loses it)."""
    message = update.effective_message
    match = _ARGS.match(message.text or "") if message is not None else None
    return match.group(1).strip() if match else ""


async def send(update: Update, rendered: Rendered) -> None:
    message = update.effective_message
    assert message is not None
    await message.reply_text(rendered.text, reply_markup=inline_keyboard(rendered.buttons))


async def respond(
    update: Update, command: str, result: T | Refused, ok: Callable[[T], Rendered]
) -> None:
    """Render a result, or the refusal in the words of ``command``, and send it."""
    if isinstance(result, Refused):
        await send(update, render.refusal(result, command))
    else:
        await send(update, ok(result))


async def bad_arguments(
    update: Update, context: ContextTypes.DEFAULT_TYPE, command: str, *, anyone: bool = False
) -> None:
    """The command's usage for those who may use it; a refusal for everyone else."""
    view = await desk_of(context.application).role(caller_of(update))
    if anyone or view.role.admin:
        reason: d.Reason = "usage"
    elif command == "skor":
        reason = "not_allowed"
    else:
        reason = "admins_only"
    await send(update, render.refusal(Refused(reason, view.locale), command))


# -- officials and admins ----------------------------------------------------------------
async def skor(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An official sees their unit; an admin any unit; anyone else a polite refusal."""
    desk = desk_of(context.application)
    args = command_args(update)
    query = d.parse_query(args) if args else ""
    if query is None:
        await bad_arguments(update, context, "skor")
        return
    result = await desk.unit_report(caller_of(update), query)
    await respond(update, "skor", result, lambda v: render.unit_view(v, desk.questionnaire))
    if isinstance(result, d.UnitView) and result.report.score.shown:
        from bot.chart import dimension_chart

        unit = result.report.unit
        png = dimension_chart(result.report.score, desk.questionnaire, result.locale, unit.name)
        message = update.effective_message
        assert message is not None
        await message.reply_photo(png, caption=html.escape(unit.name, quote=False))


async def daftar(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An official redeems an invite code (anyone may try one)."""
    code = d.parse_code(command_args(update))
    if code is None:
        await bad_arguments(update, context, "daftar", anyone=True)
        return
    result = await desk_of(context.application).redeem_invite(caller_of(update), code)
    await respond(update, "daftar", result, render.registered)


# -- admins ------------------------------------------------------------------------------
async def peringkat(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    desk = desk_of(context.application)
    args = command_args(update)
    page = d.parse_page(args) if args else 1
    if page is None:
        await bad_arguments(update, context, "peringkat")
        return
    result = await desk.ranking(caller_of(update), page)
    await respond(update, "peringkat", result, lambda v: render.ranking(v, desk.questionnaire))


async def rekap(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    desk = desk_of(context.application)
    result = await desk.recap(caller_of(update))
    await respond(update, "rekap", result, lambda v: render.recap(v, desk.questionnaire))


async def progres(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The daily progress table: responses / target / population, furthest behind first."""
    desk = desk_of(context.application)
    args = command_args(update)
    page = d.parse_page(args) if args else 1
    if page is None:
        await bad_arguments(update, context, "progres")
        return
    result = await desk.progress(caller_of(update), page)
    await respond(update, "progres", result, render.progress)


async def undang(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Create a single-use, expiring invite code binding one official to a unit."""
    query = d.parse_query(command_args(update))
    if query is None:
        await bad_arguments(update, context, "undang")
        return
    result = await desk_of(context.application).create_invite(caller_of(update), query)
    await respond(update, "undang", result, render.invite_created)


async def undangan(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The open invites, each with a button that revokes it."""
    desk = desk_of(context.application)
    result = await desk.invites(caller_of(update))
    await respond(update, "undangan", result, lambda v: render.invite_list(v, desk.settings.tz))


async def pejabat(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    result = await desk_of(context.application).officials(caller_of(update))
    await respond(update, "pejabat", result, render.official_list)


async def admin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    result = await desk_of(context.application).admins(caller_of(update))
    await respond(update, "admin", result, render.admin_list)


async def tambah_admin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user_id = d.parse_user_id(command_args(update))
    if user_id is None:
        await bad_arguments(update, context, "tambah_admin")
        return
    result = await desk_of(context.application).add_admin(caller_of(update), user_id)
    await respond(update, "tambah_admin", result, render.done)


async def hapus_admin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user_id = d.parse_user_id(command_args(update))
    if user_id is None:
        await bad_arguments(update, context, "hapus_admin")
        return
    result = await desk_of(context.application).remove_admin(caller_of(update), user_id)
    await respond(update, "hapus_admin", result, render.done)


async def koreksi(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Faktor koreksi: add (/koreksi unit category points reason), list (/koreksi unit),
    withdraw (/koreksi batal number)."""
    desk = desk_of(context.application)
    caller = caller_of(update)
    words = command_args(update).split()
    if len(words) == 2 and words[0].lower() == "batal":
        correction_id = d.parse_row_id(words[1])
        if correction_id is not None:
            withdrawn = await desk.withdraw_correction(caller, correction_id)
            await respond(update, "koreksi", withdrawn, render.correction_view)
            return
    elif len(words) == 1:
        query = d.parse_query(words[0])
        if query is not None:
            listed = await desk.corrections(caller, query)
            await respond(
                update, "koreksi", listed, lambda v: render.correction_list(v, desk.settings.tz)
            )
            return
    elif len(words) >= 4:
        query = d.parse_query(words[0])
        category = d.parse_category(words[1])
        points = d.parse_points(words[2])
        if query is not None and category is not None and points is not None:
            added = await desk.add_correction(caller, query, category, points, " ".join(words[3:]))
            await respond(update, "koreksi", added, render.correction_view)
            return
    await bad_arguments(update, context, "koreksi")


async def ekspor(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The workbook, in the chat only when CHAT_EXPORT_ENABLED; otherwise where to make it."""
    result = await desk_of(context.application).export(caller_of(update))
    if isinstance(result, Refused):
        await send(update, render.refusal(result, "ekspor"))
        return
    from core.export import write_xlsx

    buffer = io.BytesIO()
    write_xlsx(result.data, buffer)
    message = update.effective_message
    assert message is not None
    await message.reply_document(
        buffer.getvalue(),
        filename=f"spi-{result.period}.xlsx",
        caption=render.done(d.Done(result.locale, "export_made", result.period)).text,
    )


# -- buttons -----------------------------------------------------------------------------
async def on_admin_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Ranking pages and revocations; the role is checked again on every press."""
    query = update.callback_query
    assert query is not None
    desk = desk_of(context.application)
    caller = caller_of(update)
    if not pressed_in_own_chat(query):
        view = await desk.role(caller)
        await answer_query(query, render.foreign_button(view.locale))
        return
    button = desk_buttons.parse(query.data or "")
    if button is None:
        view = await desk.role(caller)
        await answer_query(query, render.refusal(Refused("button_unknown", view.locale), "admin"))
        return
    if button.action in ("rank", "prog"):
        rendered: Rendered
        if button.action == "rank":
            ranking = await desk.ranking(caller, button.number + 1)
            if isinstance(ranking, Refused):
                await answer_query(query, render.refusal(ranking, "peringkat"))
                return
            rendered = render.ranking(ranking, desk.questionnaire)
        else:
            table = await desk.progress(caller, button.number + 1)
            if isinstance(table, Refused):
                await answer_query(query, render.refusal(table, "progres"))
                return
            rendered = render.progress(table)
        await answer_query(query, None)
        message = query.message if isinstance(query.message, Message) else None
        if message is not None:
            try:
                await message.edit_text(
                    rendered.text, reply_markup=inline_keyboard(rendered.buttons)
                )
            except BadRequest as exc:  # e.g. "message is not modified"
                log.info("could not edit the ranking: %s", exc)
        return
    result = await desk_buttons.revoke(desk, caller, button)
    if isinstance(result, Refused):
        await answer_query(query, render.refusal(result, "admin"))
    else:
        await answer_query(query, render.done(result))


async def answer_query(query: CallbackQuery, rendered: Rendered | None) -> None:
    """Answer a button press with a toast (or an alert), or silently; never raise."""
    try:
        if rendered is None:
            await query.answer()
        else:
            await query.answer(rendered.plain[:200], show_alert=rendered.alert)
    except BadRequest as exc:  # too old to answer; the press was still handled
        log.info("callback answer failed: %s", exc)


# -- wiring ------------------------------------------------------------------------------
COMMANDS: dict[str, Handler] = {
    "skor": skor,
    "daftar": daftar,
    "peringkat": peringkat,
    "rekap": rekap,
    "progres": progres,
    "undang": undang,
    "undangan": undangan,
    "pejabat": pejabat,
    "admin": admin,
    "tambah_admin": tambah_admin,
    "hapus_admin": hapus_admin,
    "koreksi": koreksi,
    "ekspor": ekspor,
}


def add_admin_handlers(application: Application) -> None:  # type: ignore[type-arg]
    """Commands on new private messages only (never on edits), and the ``adm|`` buttons."""
    for name, callback in COMMANDS.items():
        application.add_handler(CommandHandler(name, callback, filters=NEW_PRIVATE))
    application.add_handler(CallbackQueryHandler(on_admin_button, pattern=r"^adm\|"))
