"""The desk's results as chat messages (Telegram HTML): text and buttons, nothing sent.

Every translated template and every dynamic value is escaped here, in
:func:`say`, and nowhere else; only values marked :class:`Html` (markup built
in this module, or text that core already rendered as HTML) pass unchanged.
Numbers go through the one formatter, :func:`core.report.number`.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field
from gettext import NullTranslations

from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_decimal

from bot.desk_buttons import button_id
from core import desk as d
from core.aggregates import Correction, CorrectionCategory
from core.broadcast import MAX_TEXT_LENGTH
from core.events import Button
from core.fieldwork import progress_table
from core.i18n import N_, gettext_for
from core.questionnaire import Questionnaire
from core.reminders import ReminderState
from core.report import number, render_ranking, render_recap, render_unit

Translator = NullTranslations


class Html(str):
    """Text that is already HTML: :func:`say` inserts it as it is."""


def say(tr: Translator, msgid: str, /, **values: object) -> str:
    """A translated template with its values, all of it escaped for Telegram HTML."""
    template = html.escape(tr.gettext(msgid), quote=False)
    safe = {
        key: value if isinstance(value, Html) else html.escape(str(value), quote=False)
        for key, value in values.items()
    }
    return template.format(**safe)


def bold(text: str) -> str:
    """``text`` is already escaped (it came from :func:`say`)."""
    return f"<b>{text}</b>"


def code(text: str) -> Html:
    return Html(f"<code>{html.escape(text, quote=False)}</code>")


@dataclass(frozen=True)
class Rendered:
    text: str
    buttons: list[list[Button]] = field(default_factory=list)
    alert: bool = False  # for a button press: show as an alert, not a toast

    @property
    def plain(self) -> str:
        """For places that take no markup (a button press's notice)."""
        return html.unescape(self.text)


# -- usage of each command (shown to admins; strangers get a refusal instead) ----------
USAGE: dict[str, str] = {
    "skor": N_("Usage: /skor <unit code or name>, e.g. /skor dinkes"),
    "peringkat": N_("Usage: /peringkat [page], e.g. /peringkat 2"),
    "progres": N_("Usage: /progres [page], e.g. /progres 2"),
    "undang": N_("Usage: /undang <unit code or name>, e.g. /undang dinkes"),
    "undangan": N_("Usage: /undangan lists the open invites, each with a button to revoke it."),
    "daftar": N_("Usage: /daftar <invite code>"),
    "koreksi": N_(
        "Usage: /koreksi <unit> <category> <points 0–100> <reason>, e.g. "
        "/koreksi dinkes pengaduan 1,5 two substantiated complaints. Categories: pengaduan "
        "(complaints), penegakan_hukum (law-enforcement cases), pengarahan (coaching). "
        "/koreksi <unit> lists a unit's corrections; /koreksi batal <number> withdraws one."
    ),
    "tambah_admin": N_("Usage: /tambah_admin <Telegram user id>"),
    "hapus_admin": N_("Usage: /hapus_admin <Telegram user id>. /admin lists the admins."),
    "siaran": N_(
        "Usage: /siaran followed by the message, e.g. /siaran The survey is open "
        "until 30 June. You will see a preview and the number of recipients first."
    ),
}

CATEGORY_LABELS: dict[CorrectionCategory, str] = {
    "pengaduan": N_("complaints (pengaduan)"),
    "penegakan_hukum": N_("law-enforcement cases (penegakan hukum)"),
    "pengarahan": N_("coaching of respondents (pengarahan)"),
}

DONE: dict[d.Action, str] = {
    "invite_revoked": N_("The open invite for {subject} was revoked."),
    "admin_added": N_("User {subject} is now an admin."),
    "admin_removed": N_("User {subject} is no longer an admin."),
    "official_revoked": N_("Official {subject} was revoked."),
    "export_made": N_("SPI export {subject}"),
}


LENGTH_LIMITS: dict[str, int] = {"siaran": MAX_TEXT_LENGTH, "koreksi": d.MAX_REASON}


def refusal(refused: d.Refused, command: str) -> Rendered:
    """Why the desk refused, in the words of ``command`` (its usage, its length limit)."""
    tr = gettext_for(refused.locale)
    limit = LENGTH_LIMITS.get(command, 0)
    reason = refused.reason
    if reason == "usage":
        return Rendered(say(tr, USAGE.get(command, N_("This command takes no arguments."))))
    texts: dict[d.Reason, str] = {
        "not_allowed": N_(
            "Sorry, this command is only for the inspectorate and the unit's registered officials."
        ),
        "admins_only": N_("Sorry, this command is only for administrators."),
        "unit_unknown": N_("Unit not found or ambiguous: {query}"),
        "unit_removed": N_(
            "This unit is no longer in the list of units. Ask the inspectorate for help."
        ),
        "duplicate": N_("This command was already carried out."),
        "invalid_code": N_("This invite code is not valid."),
        "expired": N_("This invite code has expired. Ask the inspectorate for a new one."),
        "used": N_("This invite code has already been used."),
        "revoked": N_("This invite code was revoked. Ask the inspectorate for a new one."),
        "not_found": N_("Nothing to change for {query}: not found, or already done."),
        "configured_admin": N_(
            "User {query} is an admin through the ADMIN_IDS setting; remove them there."
        ),
        "too_long": N_("The message is too long ({length} characters; at most {limit})."),
        "already_decided": N_("This broadcast was already sent or cancelled."),
        "button_unknown": N_("This button is not recognised."),
        "export_disabled": N_(
            "Exports are not sent in the chat. They are made on the server with: "
            "spi-bot export --format xlsx --out FILE"
        ),
    }
    return Rendered(
        say(tr, texts[reason], query=refused.detail, length=refused.detail, limit=limit),
        alert=reason in ("not_allowed", "admins_only"),
    )


# -- scores ---------------------------------------------------------------------------
def unit_view(view: d.UnitView, questionnaire: Questionnaire) -> Rendered:
    tr = gettext_for(view.locale)
    text = render_unit(view.report, questionnaire, view.locale)  # HTML from core
    if view.corrections:
        lines = [bold(say(tr, N_("Corrections (faktor koreksi) applied")))]
        lines += [
            say(
                tr,
                N_("• {category}: −{points}"),
                category=category_label(tr, c.category),
                points=number(c.deduction, view.locale),
            )
            for c in view.corrections
        ]
        text += "\n\n" + "\n".join(lines)
    return Rendered(text)


def category_label(tr: Translator, category: CorrectionCategory) -> str:
    return tr.gettext(CATEGORY_LABELS[category])


def ranking(view: d.RankingView, questionnaire: Questionnaire) -> Rendered:
    text = render_ranking(view.reports, questionnaire, view.locale, view.page, view.per_page)
    row = []
    if view.page > 0:
        row.append(Button("⬅️", f"adm|rank|{view.page - 1}"))
    if view.page < view.pages - 1:
        row.append(Button("➡️", f"adm|rank|{view.page + 1}"))
    return Rendered(text, [row] if row else [])


def recap(view: d.RecapView, questionnaire: Questionnaire) -> Rendered:
    return Rendered(
        render_recap(
            view.reports,
            questionnaire,
            view.locale,
            view.government,
            view.flags,
            city_index=view.city_index,
            screened=view.screenouts,
            completed=view.completed,
            city_scores=view.city,
        )
    )


def progress(view: d.ProgressView) -> Rendered:
    """The progress table in a monospace block, furthest behind first, with page buttons."""
    tr = gettext_for(view.locale)
    head = say(
        tr,
        N_(
            "Progress {period}: {behind} of {total} unit groups behind their target "
            "(page {page}/{pages}; targets at ±{margin} points, 95%)"
        ),
        period=view.period,
        behind=view.behind,
        total=view.total,
        page=view.page + 1,
        pages=view.pages,
        margin=number(view.margin * 100, view.locale, 0),
    )
    table = html.escape(progress_table(view.rows), quote=False) if view.rows else ""
    text = bold(head) + (f"\n<pre>{table}</pre>" if table else "")
    row = []
    if view.page > 0:
        row.append(Button("⬅️", f"adm|prog|{view.page - 1}"))
    if view.page < view.pages - 1:
        row.append(Button("➡️", f"adm|prog|{view.page + 1}"))
    return Rendered(text, [row] if row else [])


# -- invites, admins, officials ----------------------------------------------------------
def invite_created(view: d.InviteCreated) -> Rendered:
    tr = gettext_for(view.locale)
    return Rendered(
        say(
            tr,
            N_(
                "Invite code for {unit}: {code}\nValid once, for {hours} hours. "
                "The official sends /daftar {plain} to this bot."
            ),
            unit=view.unit.name,
            code=code(view.code),
            hours=view.hours,
            plain=view.code,
        )
    )


def registered(view: d.Registered) -> Rendered:
    return Rendered(
        say(
            gettext_for(view.locale),
            N_(
                "You are now registered as an official of {unit}. Send /skor to see its "
                "integrity index."
            ),
            unit=view.unit_name,
        )
    )


def invite_list(view: d.InviteList, tz: dt.tzinfo) -> Rendered:
    tr = gettext_for(view.locale)
    if not view.invites:
        return Rendered(say(tr, N_("No open invites. Create one with /undang.")))
    lines = [bold(say(tr, N_("Open invites")))]
    buttons = []
    for invite, unit_name in view.invites:
        until = format_datetime(
            dt.datetime.fromisoformat(invite.expires_at),
            "d MMM y HH:mm",
            tzinfo=tz,
            locale=view.locale,
        )
        lines.append(
            say(
                tr,
                N_("• #{id} {unit}, valid until {until}"),
                id=invite.id,
                unit=unit_name,
                until=until,
            )
        )
        label = tr.gettext("Revoke invite #{id}").format(id=invite.id)
        buttons.append([Button(label, f"adm|rvi|{invite.id}")])
    return Rendered("\n".join(lines), buttons)


def admin_list(view: d.AdminList) -> Rendered:
    tr = gettext_for(view.locale)
    lines = [bold(say(tr, N_("Admins")))]
    buttons = []
    for admin in view.admins:
        user = account(admin.user_id, admin.channel)
        if admin.configured and admin.channel == "whatsapp":
            lines.append(say(tr, N_("• {user} (WHATSAPP_ADMIN_NUMBERS setting)"), user=user))
        elif admin.configured:
            lines.append(say(tr, N_("• {user} (ADMIN_IDS setting)"), user=user))
        else:
            lines.append(say(tr, N_("• {user}"), user=user))
            label = tr.gettext("Remove admin {user}").format(user=user)
            buttons.append([Button(label, f"adm|rma|{button_id(admin.user_id, admin.channel)}")])
    if not view.admins:
        lines.append(say(tr, N_("None yet: set ADMIN_IDS or use /tambah_admin.")))
    return Rendered("\n".join(lines), buttons)


def official_list(view: d.OfficialList) -> Rendered:
    tr = gettext_for(view.locale)
    if not view.officials:
        return Rendered(
            say(tr, N_("No officials are registered yet. Create an invite with /undang."))
        )
    lines = [bold(say(tr, N_("Registered officials")))]
    buttons = []
    for official, unit_name in view.officials:
        user = account(official.user_id, official.channel)
        lines.append(say(tr, N_("• {user} – {unit}"), user=user, unit=unit_name))
        label = tr.gettext("Revoke {user}").format(user=user)
        buttons.append([Button(label, f"adm|rev|{button_id(official.user_id, official.channel)}")])
    return Rendered("\n".join(lines), buttons)


def account(user_id: int, channel: str) -> str:
    """A Telegram user id as it is; a WhatsApp number marked so, never mistaken for one."""
    return f"WA +{user_id}" if channel == "whatsapp" else str(user_id)


def done(view: d.Done) -> Rendered:
    return Rendered(say(gettext_for(view.locale), DONE[view.action], subject=view.subject))


# -- corrections ----------------------------------------------------------------------------
def correction_view(view: d.CorrectionView) -> Rendered:
    tr = gettext_for(view.locale)
    c = view.correction
    values = {
        "id": c.id,
        "points": number(c.deduction, view.locale),
        "category": category_label(tr, c.category),
        "unit": view.unit_name,
    }
    if c.withdrawn_at is not None:
        msgid = N_(
            "Correction #{id} for {unit} was withdrawn: it no longer counts and stays on record."
        )
    else:
        msgid = N_(
            "Correction #{id} of −{points} ({category}) recorded for {unit}. "
            "Withdraw it with /koreksi batal {id}."
        )
    return Rendered(say(tr, msgid, **values))


def correction_list(view: d.CorrectionList, tz: dt.tzinfo) -> Rendered:
    tr = gettext_for(view.locale)
    if not view.corrections:
        return Rendered(say(tr, N_("No corrections for {unit}."), unit=view.unit.name))
    lines = [bold(say(tr, N_("Corrections for {unit}"), unit=view.unit.name))]
    for c in view.corrections:
        lines.append(_correction_line(tr, c, view.locale, tz))
    return Rendered("\n".join(lines))


def _correction_line(tr: Translator, c: Correction, locale: str, tz: dt.tzinfo) -> str:
    when = format_date(dt.datetime.fromisoformat(c.created_at).astimezone(tz), locale=locale)
    line = say(
        tr,
        N_("• #{id} {category} −{points}: {reason} ({author}, {date})"),
        id=c.id,
        category=category_label(tr, c.category),
        points=number(c.deduction, locale),
        reason=c.reason,
        author=c.author,
        date=when,
    )
    if c.withdrawn_at is not None:
        line += " " + say(tr, N_("– withdrawn"))
    return line


# -- broadcasts and reminders -----------------------------------------------------------
KIND_LABELS: dict[str, str] = {
    "before": N_("before the window"),
    "during": N_("during the window"),
    "closing": N_("closing reminder"),
}
AUDIENCE_LABELS: dict[str, str] = {
    "all": N_("everyone reachable"),
    "not_completed": N_("everyone who has not completed"),
    "started": N_("those with an unfinished survey"),
}
STATE_LABELS: dict[ReminderState, str] = {
    "upcoming": N_("scheduled"),
    "due": N_("due now"),
    "expired": N_("missed (not sent on its day)"),
}


def draft(view: d.Draft) -> Rendered:
    tr = gettext_for(view.locale)
    header = say(
        tr,
        N_(
            "Preview of broadcast #{id}. It goes to {count} recipients (everyone who started "
            "the bot and did not opt out):"
        ),
        id=view.broadcast_id,
        count=view.recipients,
    )
    send_label = tr.gettext("📣 Send to {count} recipients").format(count=view.recipients)
    buttons = [
        [Button(send_label, f"bc|send|{view.broadcast_id}")],
        [Button(tr.gettext("✖️ Cancel"), f"bc|cancel|{view.broadcast_id}")],
    ]
    return Rendered(f"{bold(header)}\n\n{view.text}", buttons)  # the text is escaped already


def decided(view: d.BroadcastDecided) -> Rendered:
    tr = gettext_for(view.locale)
    if view.started is not None:
        return Rendered(
            say(
                tr,
                N_(
                    "📣 Broadcast #{id} is being sent to {count} recipients. "
                    "Follow it with /siaran_status."
                ),
                id=view.broadcast_id,
                count=view.started,
            )
        )
    return Rendered(
        say(tr, N_("Broadcast #{id} was cancelled; nothing was sent."), id=view.broadcast_id)
    )


@dataclass(frozen=True)
class SenderState:
    """What the running sender reports (the channel knows it; the desk does not)."""

    limit: float
    paused_seconds: float = 0.0
    retry_after_total: int | None = None


def broadcast_status(view: d.BroadcastStatus, tz: dt.tzinfo, sender: SenderState) -> Rendered:
    tr = gettext_for(view.locale)
    locale = view.locale
    lines = [bold(say(tr, N_("Broadcasts")))]
    if not view.broadcasts:
        lines.append(say(tr, N_("No broadcasts yet.")))
    for item, tally in view.broadcasts:
        created = dt.datetime.fromisoformat(item.created_at)
        label = KIND_LABELS.get(item.message_key or "") if item.kind == "reminder" else None
        lines.append(
            "\n"
            + say(
                tr,
                N_("#{id} · {kind} · {created} · {state}"),
                id=item.id,
                kind=tr.gettext(label) if label else tr.gettext("announcement"),
                created=format_datetime(created, "d MMM y HH:mm", tzinfo=tz, locale=locale),
                state=tr.gettext("finished") if item.status == "done" else tr.gettext("sending"),
            )
        )
        lines.append(
            say(
                tr,
                N_("sent {sent} · blocked {blocked} · failed {failed} · pending {pending}"),
                sent=tally.sent,
                blocked=tally.blocked,
                failed=tally.failed,
                pending=tally.pending,
            )
        )
        if tally.sending or tally.unknown or tally.skipped:
            lines.append(
                say(
                    tr,
                    N_("in flight {sending} · unknown {unknown} · skipped {skipped}"),
                    sending=tally.sending,
                    unknown=tally.unknown,
                    skipped=tally.skipped,
                )
            )
    lines.append(
        "\n"
        + say(
            tr,
            N_("Current rate: {rate} messages/s (limit {limit}/s)."),
            rate=format_decimal(round(view.rate, 1), "0.0", locale=locale),
            limit=format_decimal(sender.limit, locale=locale),
        )
    )
    if sender.paused_seconds > 0:
        lines.append(
            say(
                tr,
                N_("Paused by Telegram flood control for {seconds} s."),
                seconds=f"{sender.paused_seconds:.0f}",
            )
        )
    if sender.retry_after_total is not None:
        lines.append(
            say(
                tr,
                N_("Flood-control answers (429) since start: {count}."),
                count=sender.retry_after_total,
            )
        )
    return Rendered("\n".join(lines))


def schedule(view: d.Schedule, timezone: str) -> Rendered:
    tr = gettext_for(view.locale)
    locale, rules = view.locale, view.rules
    header = say(
        tr,
        N_("Reminder schedule ({tz}): survey window {start} – {end}, at {time}."),
        tz=timezone,
        start=format_date(rules.window_start, "long", locale=locale),
        end=format_date(rules.window_end, "long", locale=locale),
        time=format_time(rules.at_time, "HH:mm", locale=locale),
    )
    lines = [bold(header)]
    if not view.planned:
        lines.append(
            say(tr, N_("No reminders: SURVEY_WINDOW_END is before SURVEY_WINDOW_START."))
            if not rules.valid
            else say(tr, N_("No reminders are configured."))
        )
    for item in view.planned:
        occurrence = item.occurrence
        tally = view.tallies.get(occurrence.key)
        if tally is not None:
            state = tr.gettext("sent to {sent} of {total}").format(
                sent=tally.sent, total=tally.total
            )
            if tally.open:
                state += " · " + tr.gettext("{pending} pending").format(pending=tally.open)
        else:
            state = tr.gettext(STATE_LABELS[item.state])
        lines.append(
            say(
                tr,
                N_("• {when} — {kind} — {audience} — {state}"),
                when=format_datetime(
                    occurrence.at, "EEE d MMM y HH:mm", tzinfo=rules.tz, locale=locale
                ),
                kind=tr.gettext(KIND_LABELS[occurrence.kind]),
                audience=tr.gettext(AUDIENCE_LABELS[occurrence.audience]),
                state=state,
            )
        )
    return Rendered("\n".join(lines))


# -- anyone -----------------------------------------------------------------------------------
def foreign_button(locale: str) -> Rendered:
    return Rendered(
        say(gettext_for(locale), N_("This button belongs to someone else's chat.")), alert=True
    )
