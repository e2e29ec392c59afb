"""The officials' desk on WhatsApp: text commands → desk → render → WhatsApp text.

``skor``, ``daftar KODE``, ``id`` and the admins' commands are typed as text, with
or without a leading slash, in any case. Only the desk's command words are taken
here; any other message goes to the survey engine as before. Without a slash a
message is a command only if its arguments fit the command (``skor dinkes``,
``daftar K7M2…``), and an admin's word (``admin``, ``rekap``, …) only from someone
with a role: a respondent searching for a unit by typing "admin" is not refused,
the engine gets the text.

The rules live in :class:`core.desk.Desk`, as on Telegram; the texts and buttons
are bot/render.py's, sent as WhatsApp messages by bot/whatsapp/render.py (HTML to
WhatsApp formatting, buttons as reply buttons or list rows). A pressed row comes
back as its token (``adm|rev|w6281…``) and is judged by the desk again: a button
is never a permission. A redelivered webhook changes nothing and is not answered
twice: writes claim the message's event id in the desk's transaction, reads
claim it after reading.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from bot import desk_buttons, render
from bot.render import Rendered
from core import desk as d
from core.desk import Caller, Desk, Refused
from core.events import Choice, Command, Event, Reply, Text
from core.i18n import N_, gettext_for

CHANNEL = "whatsapp"
COMMAND_WORDS = frozenset(
    {
        "skor",
        "daftar",
        "id",
        "peringkat",
        "rekap",
        "undang",
        "undangan",
        "pejabat",
        "admin",
        "tambah_admin",
        "hapus_admin",
        "koreksi",
    }
)
FOR_ANYONE = frozenset({"skor", "daftar", "id"})
YOUR_NUMBER = N_("Your WhatsApp number: {id}")
# Where bot/render.py's words are Telegram's: the WhatsApp account is a number.
USAGE = {
    "tambah_admin": N_("Usage: tambah_admin <WhatsApp number>, e.g. tambah_admin 6281234567890"),
    "hapus_admin": N_(
        "Usage: hapus_admin <WhatsApp number>, e.g. hapus_admin 6281234567890. "
        "admin lists the admins."
    ),
}
CONFIGURED_ADMIN = N_(
    "{number} is an admin through the WHATSAPP_ADMIN_NUMBERS setting; remove them there."
)
_CODE = re.compile(r"<code>(.*?)</code>", re.DOTALL)
T = TypeVar("T")


@dataclass(frozen=True)
class DeskCommand:
    """A command word, what follows it (as typed), and whether it came with a slash."""

    name: str
    args: str
    slashed: bool


def desk_command(event: Event) -> DeskCommand | None:
    """The desk command in ``event``, or None: the message is for the survey engine."""
    if isinstance(event, Command):
        name, args, slashed = event.name, event.args, True
    elif isinstance(event, Text):
        head, *rest = event.text.split(maxsplit=1) or [""]
        args = rest[0] if rest else ""
        slashed = head.startswith("/")
        name = head.removeprefix("/").lower()
    else:
        return None
    return DeskCommand(name, args.strip(), slashed) if name in COMMAND_WORDS else None


def desk_button(event: Event) -> str | None:
    """The token of a pressed desk button (``adm|…``), or None: it is the engine's."""
    if isinstance(event, Choice) and event.token.startswith("adm|"):
        return event.token
    return None


def as_reply(rendered: Rendered) -> Reply:
    """bot/render.py's message as a reply for bot/whatsapp/render.py (``<code>`` →
    monospace; the rest of its HTML is converted there)."""
    text = _CODE.sub(lambda m: f"```{m.group(1)}```", rendered.text)
    return Reply(text=text, buttons=rendered.buttons)


def plain(text: str) -> Reply:
    return Reply(text=html.escape(text, quote=False))


@dataclass
class DeskReply:
    """What to send back: replies (Telegram HTML and buttons, converted when sent), in
    ``locale``, and maybe a chart (PNG, caption)."""

    replies: list[Reply] = field(default_factory=list)
    locale: str = "id"
    chart: tuple[bytes, str] | None = None
    duplicate: bool = False  # a redelivered message: send nothing


class WhatsAppDesk:
    """One WhatsApp message with a desk command → the reply to send."""

    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    async def handle(self, wa_id: str, event_id: str, command: DeskCommand) -> DeskReply | None:
        """The reply, or None if the message is not a command after all (for the engine)."""
        if not (wa_id.isascii() and wa_id.isdigit()):
            return None
        caller = Caller(CHANNEL, int(wa_id), event_id)
        if not command.slashed and command.name not in FOR_ANYONE:
            role = (await self.desk.role(caller)).role
            if not role.admin and role.unit_code is None:
                return None
        handler = getattr(self, f"_{command.name}")
        reply: DeskReply | None = await handler(caller, command)
        if reply is None or reply.duplicate:
            return reply
        if command.name not in _WRITES or isinstance(reply, _ReadReply):
            return await self._claimed(caller, reply)
        return reply

    async def press(self, wa_id: str, event_id: str, token: str) -> DeskReply | None:
        """A pressed desk button: a ranking page, or a revocation (admins only)."""
        if not (wa_id.isascii() and wa_id.isdigit()):
            return None
        caller = Caller(CHANNEL, int(wa_id), event_id)
        desk = self.desk
        button = desk_buttons.parse(token)
        if button is None or button.action == "prog":  # progress is paged on Telegram only
            view = await desk.role(caller)
            refused = Refused("button_unknown", view.locale)
            return await self._claimed(caller, self._reply("admin", refused, render.done))
        if button.action == "rank":
            ranking = await desk.ranking(caller, button.number + 1)
            page = self._reply(
                "peringkat", ranking, lambda v: render.ranking(v, desk.questionnaire)
            )
            return await self._claimed(caller, page)
        result = await desk_buttons.revoke(desk, caller, button)
        return self._reply("admin", result, render.done)

    async def _claimed(self, caller: Caller, reply: DeskReply) -> DeskReply:
        """A read's reply, unless this event was already answered (a redelivery)."""
        async with self.desk.storage.transaction() as tx:
            if not await self.desk.claim(tx, caller):
                return DeskReply(duplicate=True)
        return reply

    # -- helpers ---------------------------------------------------------------
    def _reply(self, command: str, result: T | Refused, ok: Callable[[T], Rendered]) -> DeskReply:
        if isinstance(result, Refused):
            if result.reason == "duplicate":
                return DeskReply(duplicate=True)
            if result.reason == "configured_admin":
                tr = gettext_for(result.locale)
                text = tr.gettext(CONFIGURED_ADMIN).format(number=result.detail)
                return DeskReply([plain(text)], result.locale)
            rendered = render.refusal(result, command)
        else:
            rendered = ok(result)
        return DeskReply([as_reply(rendered)], _locale_of(result))

    async def _bad_arguments(
        self, caller: Caller, command: DeskCommand, *, anyone: bool = False
    ) -> DeskReply | None:
        """Usage for those who may use it, a refusal for others; None without a slash."""
        if not command.slashed:
            return None
        view = await self.desk.role(caller)
        if anyone or view.role.admin:
            reason: d.Reason = "usage"
        elif command.name == "skor":
            reason = "not_allowed"
        else:
            reason = "admins_only"
        if reason == "usage" and command.name in USAGE:
            usage = gettext_for(view.locale).gettext(USAGE[command.name])
            return _ReadReply([plain(usage)], view.locale)
        refused = render.refusal(Refused(reason, view.locale), command.name)
        return _ReadReply([as_reply(refused)], view.locale)

    # -- officials and admins ----------------------------------------------------
    async def _skor(self, caller: Caller, command: DeskCommand) -> DeskReply | None:
        query = d.parse_query(command.args) if command.args else ""
        if query is None:
            return await self._bad_arguments(caller, command)
        desk = self.desk
        result = await desk.unit_report(caller, query)
        reply = self._reply("skor", result, lambda v: render.unit_view(v, desk.questionnaire))
        if isinstance(result, d.UnitView) and result.report.score.shown:
            from bot.chart import dimension_chart

            unit = result.report.unit
            png = dimension_chart(result.report.score, desk.questionnaire, result.locale, unit.name)
            reply.chart = (png, unit.name)
        return reply

    async def _daftar(self, caller: Caller, command: DeskCommand) -> DeskReply | None:
        code = d.parse_code(command.args)
        if code is None:
            return await self._bad_arguments(caller, command, anyone=True)
        result = await self.desk.redeem_invite(caller, code)
        return self._reply("daftar", result, render.registered)

    async def _id(self, caller: Caller, command: DeskCommand) -> DeskReply | None:
        if command.args:
            return None
        view = await self.desk.role(caller)
        text = gettext_for(view.locale).gettext(YOUR_NUMBER).format(id=caller.user_id)
        return DeskReply([plain(text)], view.locale)

    # -- admins ----------------------------------------------------------------------
    async def _peringkat(self, caller: Caller, command: DeskCommand) -> DeskReply | None:
        page = d.parse_page(command.args) if command.args else 1
        if page is None:
            return await self._bad_arguments(caller, command)
        desk = self.desk
        result = await desk.ranking(caller, page)
        return self._reply("peringkat", result, lambda v: render.ranking(v, desk.questionnaire))

    async def _rekap(self, caller: Caller, command: DeskCommand) -> DeskReply | None:
        if command.args and not command.slashed:
            return None
        desk = self.desk
        result = await desk.recap(caller)
        return self._reply("rekap", result, lambda v: render.recap(v, desk.questionnaire))

    async def _undang(self, caller: Caller, command: DeskCommand) -> DeskReply | None:
        query = d.parse_query(command.args)
        if query is None:
            return await self._bad_arguments(caller, command)
        result = await self.desk.create_invite(caller, query)
        return self._reply("undang", result, render.invite_created)

    async def _undangan(self, caller: Caller, command: DeskCommand) -> DeskReply | None:
        if command.args and not command.slashed:
            return None
        desk = self.desk
        result = await desk.invites(caller)
        return self._reply("undangan", result, lambda v: render.invite_list(v, desk.settings.tz))

    async def _pejabat(self, caller: Caller, command: DeskCommand) -> DeskReply | None:
        if command.args and not command.slashed:
            return None
        return self._reply("pejabat", await self.desk.officials(caller), render.official_list)

    async def _admin(self, caller: Caller, command: DeskCommand) -> DeskReply | None:
        if command.args and not command.slashed:
            return None
        return self._reply("admin", await self.desk.admins(caller), render.admin_list)

    async def _tambah_admin(self, caller: Caller, command: DeskCommand) -> DeskReply | None:
        user_id = d.parse_user_id(command.args)
        if user_id is None:
            return await self._bad_arguments(caller, command)
        return self._reply("tambah_admin", await self.desk.add_admin(caller, user_id), render.done)

    async def _hapus_admin(self, caller: Caller, command: DeskCommand) -> DeskReply | None:
        user_id = d.parse_user_id(command.args)
        if user_id is None:
            return await self._bad_arguments(caller, command)
        result = await self.desk.remove_admin(caller, user_id)
        return self._reply("hapus_admin", result, render.done)

    async def _koreksi(self, caller: Caller, command: DeskCommand) -> DeskReply | None:
        """As on Telegram: add, list (a read), or ``koreksi batal N``."""
        desk = self.desk
        words = command.args.split()
        if len(words) == 2 and words[0].lower() == "batal":
            correction_id = d.parse_row_id(words[1])
            if correction_id is not None:
                withdrawn = await desk.withdraw_correction(caller, correction_id)
                return self._reply("koreksi", withdrawn, render.correction_view)
        elif len(words) == 1:
            query = d.parse_query(words[0])
            if query is not None:
                listed = await desk.corrections(caller, query)
                reply = self._reply(
                    "koreksi", listed, lambda v: render.correction_list(v, desk.settings.tz)
                )
                return _ReadReply(reply.replies, reply.locale)
        elif len(words) >= 4:
            query = d.parse_query(words[0])
            category = d.parse_category(words[1])
            points = d.parse_points(words[2])
            if query is not None and category is not None and points is not None:
                reason = " ".join(words[3:])
                added = await desk.add_correction(caller, query, category, points, reason)
                return self._reply("koreksi", added, render.correction_view)
        return await self._bad_arguments(caller, command)


class _ReadReply(DeskReply):
    """The reply of a read within a writing command (its event is claimed afterwards)."""


# Commands whose desk operation claims the event in its own transaction.
_WRITES = frozenset({"daftar", "undang", "tambah_admin", "hapus_admin", "koreksi"})


def _locale_of(result: object) -> str:
    locale = getattr(result, "locale", "id")
    return locale if isinstance(locale, str) else "id"
