"""Commands for officials and the inspectorate: /skor, /peringkat, /rekap, invites, export.

Every command and every button re-checks the caller's role in the database;
a button is never a permission.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import logging

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, filters

from bot.handlers import services, user_locale
from bot.services import Services
from core.access import Role, create_invite, list_officials, redeem_invite, revoke_official, role_of
from core.aggregates import add_correction, flag_counts, load_unit_aggregate
from core.i18n import gettext_for
from core.model import utcnow
from core.report import UnitReport, render_ranking, render_recap, render_unit
from core.scoring import score_unit
from core.storage import Transaction
from core.units import Unit

log = logging.getLogger(__name__)
RANKING_PAGE = 15
PRIVATE = filters.ChatType.PRIVATE


async def _context(
    update: Update, context: ContextTypes.DEFAULT_TYPE
) -> tuple[Services, Role, str]:
    svc = services(context)
    user = update.effective_user
    assert user is not None
    async with svc.storage.transaction() as tx:
        role = await role_of(tx, user.id, svc.settings.admin_ids)
    return svc, role, await user_locale(update, context)


async def _reply(update: Update, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
    message = update.effective_message
    assert message is not None
    await message.reply_text(text, parse_mode=ParseMode.HTML, reply_markup=markup)


async def _refuse(update: Update, locale: str) -> None:
    await _reply(
        update,
        gettext_for(locale).gettext(
            "Sorry, this command is only for the inspectorate and the unit's registered officials."
        ),
    )


async def _admin_only(
    update: Update, context: ContextTypes.DEFAULT_TYPE
) -> tuple[Services, str] | None:
    """Services and locale for an admin; a refusal (and None) for anyone else."""
    svc, role, locale = await _context(update, context)
    if not role.admin:
        await _refuse(update, locale)
        return None
    return svc, locale


async def unit_report(tx: Transaction, svc: Services, unit: Unit, admin: bool) -> UnitReport:
    period = svc.questionnaire.period
    aggregate = await load_unit_aggregate(tx, period, unit.code)
    previous_period = str(int(period) - 1) if period.isdigit() else None
    previous = None
    if previous_period is not None:
        previous_aggregate = await load_unit_aggregate(tx, previous_period, unit.code)
        if previous_aggregate.groups:
            previous = score_unit(svc.questionnaire, previous_aggregate)
    flags = await flag_counts(tx, period, unit.code) if admin else None
    return UnitReport(
        unit=unit, score=score_unit(svc.questionnaire, aggregate), previous=previous, flags=flags
    )


async def skor(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An official sees their unit; an admin any unit; anyone else a polite refusal."""
    svc, role, locale = await _context(update, context)
    tr = gettext_for(locale)
    query = " ".join(context.args or []).strip()
    if query:
        unit = svc.units.resolve(query)
        if unit is None:
            if role.admin:
                await _reply(
                    update,
                    tr.gettext("Unit not found or ambiguous: {query}").format(
                        query=html.escape(query)
                    ),
                )
            else:
                await _refuse(update, locale)
            return
    elif role.unit_code is not None:
        unit = svc.units.get(role.unit_code)
    elif role.admin:
        await _reply(update, tr.gettext("Usage: /skor <unit code or name>, e.g. /skor dinkes"))
        return
    else:
        unit = None
    if unit is None or not role.may_see(unit.code):
        await _refuse(update, locale)
        return
    async with svc.storage.transaction() as tx:
        report = await unit_report(tx, svc, unit, admin=role.admin)
    await _reply(update, render_unit(report, svc.questionnaire, locale))
    if report.score.shown:
        from bot.chart import dimension_chart

        png = dimension_chart(report.score, svc.questionnaire, locale, unit.name)
        message = update.effective_message
        assert message is not None
        await message.reply_photo(png, caption=unit.name)


async def _all_reports(svc: Services) -> list[UnitReport]:
    async with svc.storage.transaction() as tx:
        return [await unit_report(tx, svc, unit, admin=True) for unit in svc.units.units]


def _ranking_markup(page: int, pages: int, locale: str) -> InlineKeyboardMarkup | None:
    row = []
    if page > 0:
        row.append(InlineKeyboardButton("⬅️", callback_data=f"adm|rank|{page - 1}"))
    if page < pages - 1:
        row.append(InlineKeyboardButton("➡️", callback_data=f"adm|rank|{page + 1}"))
    return InlineKeyboardMarkup([row]) if row else None


async def peringkat(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    admin = await _admin_only(update, context)
    if admin is None:
        return
    svc, locale = admin
    page = int(context.args[0]) - 1 if context.args and context.args[0].isdigit() else 0
    reports = await _all_reports(svc)
    pages = max(1, -(-len(reports) // RANKING_PAGE))
    page = min(max(page, 0), pages - 1)
    await _reply(
        update,
        render_ranking(reports, svc.questionnaire, locale, page, RANKING_PAGE),
        _ranking_markup(page, pages, locale),
    )


async def rekap(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    admin = await _admin_only(update, context)
    if admin is None:
        return
    svc, locale = admin
    reports = await _all_reports(svc)
    async with svc.storage.transaction() as tx:
        flags = await flag_counts(tx, svc.questionnaire.period, None)
    await _reply(
        update, render_recap(reports, svc.questionnaire, locale, svc.units.government, flags)
    )


async def undang(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Create a single-use, expiring invite code binding one official to a unit."""
    admin = await _admin_only(update, context)
    if admin is None:
        return
    svc, locale = admin
    tr = gettext_for(locale)
    unit = svc.units.resolve(" ".join(context.args or []))
    if unit is None:
        await _reply(update, tr.gettext("Usage: /undang <unit code or name>, e.g. /undang dinkes"))
        return
    user = update.effective_user
    assert user is not None
    ttl = dt.timedelta(hours=svc.settings.invite_ttl_hours)
    async with svc.storage.transaction() as tx:
        code = await create_invite(tx, svc.secret_key, unit.code, user.id, utcnow(), ttl)
    await _reply(
        update,
        tr.gettext(
            "Invite code for {unit}: <code>{code}</code>\nValid once, for {hours} hours. "
            "The official sends /daftar {code} to this bot."
        ).format(unit=html.escape(unit.name), code=code, hours=svc.settings.invite_ttl_hours),
    )


async def daftar(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, _role, locale = await _context(update, context)
    tr = gettext_for(locale)
    code = " ".join(context.args or [])
    if not code:
        await _reply(update, tr.gettext("Usage: /daftar <invite code>"))
        return
    user = update.effective_user
    assert user is not None
    async with svc.storage.transaction() as tx:
        result, unit_code = await redeem_invite(tx, svc.secret_key, code, user.id, utcnow())
    if result == "ok" and unit_code is not None:
        unit = svc.units.get(unit_code)
        await _reply(
            update,
            tr.gettext(
                "You are now registered as an official of {unit}. Send /skor to see its "
                "integrity index."
            ).format(unit=html.escape(unit.name if unit else unit_code)),
        )
    elif result == "expired":
        await _reply(
            update, tr.gettext("This invite code has expired. Ask the inspectorate for a new one.")
        )
    elif result == "used":
        await _reply(update, tr.gettext("This invite code has already been used."))
    else:
        await _reply(update, tr.gettext("This invite code is not valid."))


async def pejabat(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    admin = await _admin_only(update, context)
    if admin is None:
        return
    svc, locale = admin
    tr = gettext_for(locale)
    async with svc.storage.transaction() as tx:
        officials = await list_officials(tx)
    if not officials:
        await _reply(
            update, tr.gettext("No officials are registered yet. Create an invite with /undang.")
        )
        return
    lines = ["<b>{}</b>".format(tr.gettext("Registered officials"))]
    buttons = []
    for official in officials:
        unit = svc.units.get(official.unit_code)
        name = unit.name if unit else official.unit_code
        lines.append(f"• {official.user_id} – {html.escape(name)}")
        buttons.append(
            [
                InlineKeyboardButton(
                    tr.gettext("Revoke {user}").format(user=official.user_id),
                    callback_data=f"adm|rev|{official.user_id}",
                )
            ]
        )
    await _reply(update, "\n".join(lines), InlineKeyboardMarkup(buttons))


async def koreksi(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Record a faktor koreksi deduction: /koreksi <unit> <points> <reason>."""
    admin = await _admin_only(update, context)
    if admin is None:
        return
    svc, locale = admin
    tr = gettext_for(locale)
    args = context.args or []
    unit = svc.units.resolve(args[0]) if args else None
    try:
        deduction = float(args[1].replace(",", ".")) if len(args) > 1 else -1.0
    except ValueError:
        deduction = -1.0
    reason = " ".join(args[2:]).strip()
    if unit is None or not 0 < deduction <= 100 or not reason:
        await _reply(
            update,
            tr.gettext(
                "Usage: /koreksi <unit> <points 0–100> <reason>, "
                "e.g. /koreksi dinkes 1,5 complaints"
            ),
        )
        return
    async with svc.storage.transaction() as tx:
        await add_correction(tx, svc.questionnaire.period, unit.code, deduction, reason, utcnow())
    await _reply(
        update,
        tr.gettext("Correction of −{points} recorded for {unit}.").format(
            points=args[1], unit=html.escape(unit.name)
        ),
    )


async def tambah_admin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    admin = await _admin_only(update, context)
    if admin is None:
        return
    svc, locale = admin
    tr = gettext_for(locale)
    args = context.args or []
    if len(args) != 1 or not args[0].isdigit():
        await _reply(update, tr.gettext("Usage: /tambah_admin <Telegram user id>"))
        return
    user = update.effective_user
    assert user is not None
    from core.access import add_admin

    async with svc.storage.transaction() as tx:
        await add_admin(tx, int(args[0]), user.id, utcnow())
    await _reply(update, tr.gettext("User {user} is now an admin.").format(user=args[0]))


async def ekspor(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The workbook inspectorate staff open in Excel: scores and pseudonymous answers."""
    admin = await _admin_only(update, context)
    if admin is None:
        return
    svc, locale = admin
    from core.export import export_rows, write_xlsx

    async with svc.storage.transaction() as tx:
        data = await export_rows(tx, svc.questionnaire, svc.units, svc.questionnaire.period)
    buffer = io.BytesIO()
    write_xlsx(data, buffer)
    message = update.effective_message
    assert message is not None
    await message.reply_document(
        buffer.getvalue(),
        filename=f"spi-{svc.questionnaire.period}.xlsx",
        caption=gettext_for(locale)
        .gettext("SPI export {period}")
        .format(period=svc.questionnaire.period),
    )


async def on_admin_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    svc, role, locale = await _context(update, context)
    tr = gettext_for(locale)
    parts = (query.data or "").split("|")
    if not role.admin:
        await query.answer(tr.gettext("Not allowed."), show_alert=True)
        return
    if len(parts) == 3 and parts[1] == "rank" and parts[2].isdigit():
        reports = await _all_reports(svc)
        pages = max(1, -(-len(reports) // RANKING_PAGE))
        page = min(int(parts[2]), pages - 1)
        await query.answer()
        await query.edit_message_text(
            render_ranking(reports, svc.questionnaire, locale, page, RANKING_PAGE),
            parse_mode=ParseMode.HTML,
            reply_markup=_ranking_markup(page, pages, locale),
        )
    elif len(parts) == 3 and parts[1] == "rev" and parts[2].isdigit():
        async with svc.storage.transaction() as tx:
            revoked = await revoke_official(tx, int(parts[2]))
        await query.answer(
            tr.gettext("Revoked.") if revoked else tr.gettext("Already revoked."), show_alert=False
        )
    else:
        await query.answer(tr.gettext("This button is not recognised."))


def add_admin_handlers(application: Application) -> None:  # type: ignore[type-arg]
    commands = {
        "skor": skor,
        "peringkat": peringkat,
        "rekap": rekap,
        "undang": undang,
        "daftar": daftar,
        "pejabat": pejabat,
        "koreksi": koreksi,
        "tambah_admin": tambah_admin,
        "ekspor": ekspor,
    }
    for name, callback in commands.items():
        application.add_handler(CommandHandler(name, callback, filters=PRIVATE))
    application.add_handler(CallbackQueryHandler(on_admin_button, pattern=r"^adm\|"))
