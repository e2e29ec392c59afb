"""WhatsApp messages → engine events → Cloud API calls. No survey logic lives here.

Each respondent's messages are handled one at a time in arrival order (a lock
per sender), different respondents concurrently. The webhook answers Meta at
once; :meth:`WhatsAppChannel.drain` waits for the work it started.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot.flood import FloodGuard
from bot.services import Services
from bot.whatsapp.api import (
    OUTSIDE_WINDOW,
    PAIR_RATE_LIMITED,
    RATE_LIMITED,
    CloudApi,
    CloudApiError,
    Payload,
)
from bot.whatsapp.desk import DeskReply, WhatsAppDesk, desk_button, desk_command
from bot.whatsapp.render import (
    ShortLabels,
    Words,
    image_message,
    render_reply,
    text_message,
    whatsapp_text,
)
from bot.whatsapp.window import REFRESH, close_window, record_inbound
from core.desk import Desk
from core.events import Command, Event, Incoming, Outcome, Reply, Sender
from core.i18n import gettext_for
from core.model import utcnow

log = logging.getLogger(__name__)

CHANNEL = "whatsapp"
REPLY_ATTEMPTS = 3
REPLY_RETRY_DELAY = 0.5  # seconds, growing per attempt
FORGET_EVERY = 10_000  # messages between clean-ups of per-sender memory


@dataclass(frozen=True)
class Inbound:
    """One user message from a webhook: who (wa_id), its message id, and the event."""

    wa_id: str
    message_id: str
    event: Event


def event_id(secret_key: bytes, message_id: str) -> str:
    """The deduplication id of a message, keyed: a WhatsApp message id ("wamid.…") is
    base64 that contains the sender's phone number, and processed events are written
    in the answer's transaction, so the raw id must never be stored."""
    digest = hmac.new(secret_key, f"wa-message:{message_id}".encode(), hashlib.sha256)
    return f"wa:{digest.hexdigest()[:40]}"


class WhatsAppChannel:
    def __init__(
        self, svc: Services, api: CloudApi, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self.svc = svc
        self.api = api
        self.clock = clock
        self.shorts = ShortLabels.from_questionnaire(svc.questionnaire)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._window_noted: dict[str, dt.datetime] = {}
        self.on_rate_limited: Callable[[], None] | None = None  # pauses broadcasts
        self.flood = FloodGuard(svc.settings.incoming_per_minute)
        self._submitted = 0
        self.desk = WhatsAppDesk(
            Desk(
                settings=svc.settings,
                questionnaire=svc.questionnaire,
                units=svc.units,
                storage=svc.storage,
                secret_key=svc.secret_key,
                clock=clock,
            )
        )

    # -- intake ------------------------------------------------------------
    def submit(self, inbound: Inbound) -> None:
        """Handle in the background, after the same sender's earlier messages.

        A sender over INCOMING_PER_MINUTE gets one notice per minute and no handling,
        before anything touches the database (as on Telegram, bot/flood.py).
        """
        self._submitted += 1
        if self._submitted % FORGET_EVERY == 0:
            self.flood.forget_idle()
            self._window_noted = {
                k: v for k, v in self._window_noted.items() if self.clock() - v < REFRESH
            }
        number = int(inbound.wa_id) if inbound.wa_id.isdigit() else 0  # wa_ids are digits
        allowed, warn = self.flood.allow(number)
        if not allowed:
            if warn:
                self._track(asyncio.create_task(self._slow_down(inbound.wa_id)))
            return
        lock, users = self._locks.get(inbound.wa_id, (asyncio.Lock(), 0))
        self._locks[inbound.wa_id] = (lock, users + 1)
        self._track(asyncio.create_task(self._in_order(lock, inbound)))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _slow_down(self, wa_id: str) -> None:
        text = gettext_for(self.svc.settings.default_locale).gettext(
            "You are sending messages very quickly. Please wait a minute, then continue."
        )
        await self._send_reply(wa_id, text_message(text))

    async def _in_order(self, lock: asyncio.Lock, inbound: Inbound) -> None:
        try:
            async with lock:
                await self.handle(inbound)
        except Exception:
            log.exception("whatsapp: handling a message failed")
            await self._apologise(inbound.wa_id)
        finally:
            lock_, users = self._locks[inbound.wa_id]
            if users <= 1:
                del self._locks[inbound.wa_id]
            else:
                self._locks[inbound.wa_id] = (lock_, users - 1)

    async def drain(self) -> None:
        """Wait until every message received so far is handled and answered."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def on_status_error(self, wa_id: str, code: int) -> None:
        """A failed-delivery status from a webhook (131047: the window has closed)."""
        if code == OUTSIDE_WINDOW:
            self._track(asyncio.create_task(self._close_window(wa_id)))

    async def _close_window(self, wa_id: str) -> None:
        async with self.svc.storage.transaction() as tx:
            await close_window(tx, CHANNEL, wa_id)
        self._window_noted.pop(wa_id, None)

    # -- one message ---------------------------------------------------------
    async def handle(self, inbound: Inbound) -> None:
        incoming = Incoming(
            sender=Sender(channel=CHANNEL, user_id=inbound.wa_id, address=inbound.wa_id),
            event=inbound.event,
            event_id=event_id(self.svc.secret_key, inbound.message_id),
        )
        event = inbound.event
        command, token = desk_command(event), desk_button(event)
        if command is not None or token is not None:
            assert incoming.event_id is not None
            if command is not None:
                reply = await self.desk.handle(inbound.wa_id, incoming.event_id, command)
            else:
                assert token is not None
                reply = await self.desk.press(inbound.wa_id, incoming.event_id, token)
            if reply is not None:
                if not reply.duplicate:
                    await self._note_window(inbound.wa_id)
                    await self.send_desk_reply(inbound.wa_id, reply)
                return
        if isinstance(event, Command) and event.name in ("berhenti", "langganan"):
            outcome = await self._reminder_preference(incoming, event.name == "berhenti")
        else:
            outcome = await self.svc.engine.handle(incoming)
        if outcome.duplicate:
            return
        await self._note_window(inbound.wa_id)
        await self.send_outcome(inbound.wa_id, outcome)

    async def _note_window(self, wa_id: str) -> None:
        now = self.clock()
        noted = self._window_noted.get(wa_id)
        if noted is not None and now - noted < REFRESH:
            return
        async with self.svc.storage.transaction() as tx:
            kept = await record_inbound(tx, CHANNEL, wa_id, now)
        if kept:
            self._window_noted[wa_id] = now

    def messages_for(self, outcome: Outcome) -> list[Payload]:
        words = Words.for_locale(outcome.locale or self.svc.settings.default_locale)
        messages: list[Payload] = []
        if outcome.notice:
            messages.append(text_message(whatsapp_text(outcome.notice)))
        for reply in outcome.replies:
            messages.extend(render_reply(reply, words, self.shorts))
        return messages

    async def send_outcome(self, wa_id: str, outcome: Outcome) -> None:
        for message in self.messages_for(outcome):
            if not await self._send_reply(wa_id, message):
                return

    async def send_desk_reply(self, wa_id: str, reply: DeskReply) -> None:
        """The desk's messages, then its chart as an image message (uploaded first)."""
        words = Words.for_locale(reply.locale)
        for each in reply.replies:
            for message in render_reply(each, words, self.shorts):
                if not await self._send_reply(wa_id, message):
                    return
        if reply.chart is not None:
            png, caption = reply.chart
            try:
                media_id = await self.api.upload_media(png, "image/png", "skor.png")
            except CloudApiError as exc:
                log.warning("whatsapp: chart not uploaded: %s", exc)
                return
            await self._send_reply(wa_id, image_message(media_id, caption))

    async def _send_reply(self, wa_id: str, message: Payload) -> bool:
        """Replies share the number's throughput with broadcasts and go first: on 130429
        the broadcast sender is paused and the reply is tried again shortly."""
        for attempt in range(REPLY_ATTEMPTS):
            try:
                await self.api.send(wa_id, message)
                return True
            except CloudApiError as exc:
                if (
                    exc.code not in (RATE_LIMITED, PAIR_RATE_LIMITED)
                    or attempt + 1 == REPLY_ATTEMPTS
                ):
                    log.warning("whatsapp: reply not sent: %s", exc)
                    return False
                if self.on_rate_limited is not None:
                    self.on_rate_limited()
                await asyncio.sleep(REPLY_RETRY_DELAY * (attempt + 1))
        return False

    async def _reminder_preference(self, incoming: Incoming, stop: bool) -> Outcome:
        """/berhenti and /langganan, as on Telegram."""
        svc = self.svc
        address = incoming.sender.user_id
        key = svc.engine.respondent_key(CHANNEL, address)
        async with svc.storage.transaction() as tx:
            assert incoming.event_id is not None
            if not await tx.claim_event(incoming.event_id, self.clock()):
                return Outcome(duplicate=True)
            state = await tx.get_session(key)
            contact = await tx.get_contact(CHANNEL, address)
            locale = (
                state.locale
                if state is not None
                else contact.locale
                if contact is not None
                else svc.settings.default_locale
            )
            if contact is None or not stop:
                await tx.upsert_contact(CHANNEL, address, locale)
            await tx.set_contact_opt_out(CHANNEL, address, stop)
        _ = gettext_for(locale).gettext
        text = (
            _(
                "You will no longer receive reminders or announcements. You can still take the "
                "survey at any time with /start. Send /langganan to receive reminders again."
            )
            if stop
            else _("You will receive survey reminders again. Send /berhenti to stop them.")
        )
        return Outcome(replies=[Reply(text=text)], locale=locale)

    async def _apologise(self, wa_id: str) -> None:
        text = gettext_for(self.svc.settings.default_locale).gettext(
            "Sorry, something went wrong on our side. Your earlier answers are safe; "
            "please try again in a moment or send /lanjut."
        )
        try:
            await self.api.send(wa_id, text_message(text))
        except Exception as exc:
            log.warning("whatsapp: could not apologise: %s", exc)
