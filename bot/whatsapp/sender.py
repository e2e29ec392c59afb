"""Broadcasts and reminders on WhatsApp: a template or a free-form message per recipient.

The delivery rows and their at-most-once guarantee are core/broadcast.py's, with
channel "whatsapp"; this is the WhatsApp counterpart of bot/jobs.py's sender.

Per recipient, decided in the claim's transaction: inside the 24-hour window the
broadcast's text goes as a normal message (a reminder with its "continue"
button); outside it a reminder goes as the approved template
(WHATSAPP_REMINDER_TEMPLATE), and anything else is skipped with the reason kept
on the delivery row. Sends are spaced evenly at WHATSAPP_RATE (80/s by default,
the Cloud API's default throughput per number). Error 130429 pauses all sending
and hands the delivery back; 131047 (re-engagement) marks the recipient outside
the window and hands it back, so it goes again as a template.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from bot import jobs
from bot.jobs import MAX_ATTEMPTS, Pacer, backoff
from bot.services import Services
from bot.whatsapp.api import (
    OUTSIDE_WINDOW,
    PAIR_RATE_LIMITED,
    RATE_LIMITED,
    CloudApi,
    CloudApiError,
    Payload,
)
from bot.whatsapp.channel import CHANNEL
from bot.whatsapp.render import (
    BUTTON_TITLE,
    INTERACTIVE_BODY,
    TEXT_BODY,
    button_message,
    cut,
    text_message,
    whatsapp_text,
)
from bot.whatsapp.window import close_window, window_open
from core import broadcast as bc
from core.events import Button
from core.i18n import gettext_for
from core.model import utcnow
from core.reminders import Occurrence, ReminderRules, due_and_upcoming

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

DEFAULT_RATE = 80.0
MAX_IN_FLIGHT = 64  # covers 80/s at up to ~0.8 s round trip
RATE_LIMIT_PAUSE = 30.0  # seconds; the Cloud API's 130429 gives no retry-after
IDLE_POLL = 0.5
REMINDER_RECHECK = 3600.0  # seconds: the reminder loop looks again at least this often
OUTSIDE_WINDOW_REASON = "outside the 24-hour window; only reminders go as a template"
NO_TEMPLATE_REASON = "outside the 24-hour window; no WHATSAPP_REMINDER_TEMPLATE set"
_NEVER_SENT: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError,)


@dataclass(frozen=True)
class Template:
    name: str
    language: str

    def message(self) -> Payload:
        return {
            "type": "template",
            "template": {"name": self.name, "language": {"code": self.language}},
        }


def free_form(broadcast: bc.Broadcast, locale: str) -> Payload:
    """The broadcast's own text; a reminder keeps its "continue" button."""
    text = whatsapp_text(broadcast.text_for(locale))
    if broadcast.button and len(text) <= INTERACTIVE_BODY:
        label = cut(gettext_for(locale).gettext("Continue the survey"), BUTTON_TITLE)
        return button_message(text, [Button(label, broadcast.button)], [label])
    return text_message(text[:TEXT_BODY])


class WhatsAppSender:
    def __init__(
        self,
        svc: Services,
        api: CloudApi,
        *,
        rate: float = DEFAULT_RATE,
        template: Template | None = None,
        pause: float = RATE_LIMIT_PAUSE,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.svc = svc
        self.api = api
        self.rate = rate
        self.template = template
        self.pause = pause
        self.pacer = Pacer(rate)
        self.sent_total = 0
        self.templates_total = 0
        self.rate_limited_total = 0
        self._slots = asyncio.Semaphore(max_in_flight)
        self._wake = asyncio.Event()
        self._stopping = False
        self._pause_until = 0.0
        self._in_flight: set[asyncio.Task[None]] = set()
        self._broadcasts: dict[int, bc.Broadcast] = {}

    def paused_for(self) -> float:
        """Seconds left of a rate-limit pause (0 when sending normally)."""
        return max(0.0, self._pause_until - time.monotonic())

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def recover(self) -> int:
        async with self.svc.storage.transaction() as tx:
            return await bc.recover_interrupted(tx, utcnow())

    async def run(self) -> None:
        log.info("whatsapp sender started (%.1f msg/s)", self.rate)
        try:
            while not self._stopping:
                try:
                    progressed = await self._dispatch_next()
                except Exception:
                    log.exception("whatsapp sender: unexpected error; retrying in 1 s")
                    await asyncio.sleep(1.0)
                    continue
                if not progressed and not self._stopping:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
                    self._wake.clear()
        finally:
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            log.info("whatsapp sender stopped (%d sent since start)", self.sent_total)

    async def _sleep_until(self, moment: float) -> bool:
        while not self._stopping:
            left = moment - time.monotonic()
            if left <= 0:
                return True
            await asyncio.sleep(min(left, 0.25))
        return False

    async def _dispatch_next(self) -> bool:
        if not await self._sleep_until(self._pause_until):
            return False
        await self._slots.acquire()
        launched = False
        try:
            slot = self.pacer.reserve(time.monotonic())
            if not await self._sleep_until(slot):
                return False
            claimed = await self._claim()
            if claimed is None:
                return False
            delivery, message = claimed
            paused = self._pause_until > time.monotonic()  # a 130429 arrived meanwhile
            if paused and not await self._sleep_until(self._pause_until):
                await self._record(bc.release, delivery, "stopped before sending")
                return False
            self.pacer.dispatched(max(slot, self._pause_until))
            task = asyncio.create_task(self._send(delivery, message))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            launched = True
            return True
        finally:
            if not launched:
                self._slots.release()

    async def _claim(self) -> tuple[bc.Delivery, Payload] | None:
        """Claim the next delivery and decide its message; skipped ones are settled here."""
        while True:
            now = utcnow()
            async with self.svc.storage.transaction() as tx:
                delivery = await bc.claim_next(tx, CHANNEL, now, self.svc.progress)
                if delivery is None:
                    return None
                broadcast = self._broadcasts.get(delivery.broadcast_id)
                if broadcast is None:
                    broadcast = await bc.get_broadcast(tx, delivery.broadcast_id)
                    assert broadcast is not None
                    self._broadcasts[delivery.broadcast_id] = broadcast
                if await window_open(tx, CHANNEL, delivery.address, now):
                    return delivery, free_form(broadcast, delivery.locale)
                if broadcast.kind == "reminder" and self.template is not None:
                    self.templates_total += 1
                    return delivery, self.template.message()
                reason = (
                    OUTSIDE_WINDOW_REASON if broadcast.kind != "reminder" else NO_TEMPLATE_REASON
                )
                await bc.mark_skipped(tx, delivery, now, reason)

    async def _send(self, delivery: bc.Delivery, message: Payload) -> None:
        try:
            await self._deliver(delivery, message)
        except Exception:
            log.exception(
                "whatsapp broadcast %s: recording a delivery failed", delivery.broadcast_id
            )
        finally:
            self._slots.release()

    async def _deliver(self, delivery: bc.Delivery, message: Payload) -> None:
        try:
            await self.api.send(delivery.address, message)
        except CloudApiError as exc:
            await self._api_error(delivery, exc)
        except _NEVER_SENT as exc:
            await self._transient(delivery, str(exc) or type(exc).__name__)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # It may have reached Meta and only the answer was lost: never resent.
            await self._record(bc.mark_unknown, delivery, str(exc) or type(exc).__name__)
        else:
            self.sent_total += 1
            await self._record(bc.mark_sent, delivery)

    def hold(self) -> None:
        """Throughput exceeded (130429): no broadcast message for :attr:`pause` seconds."""
        self.rate_limited_total += 1
        self._pause_until = max(self._pause_until, time.monotonic() + self.pause)
        self.pacer.hold(self._pause_until)
        log.warning("whatsapp: rate limit; broadcasts paused for %.1f s", self.pause)

    async def _api_error(self, delivery: bc.Delivery, exc: CloudApiError) -> None:
        if exc.code in (RATE_LIMITED, PAIR_RATE_LIMITED):
            self.hold()
            await self._record(bc.release, delivery, f"rate limited ({exc.code})")
        elif exc.code == OUTSIDE_WINDOW:
            async with self.svc.storage.transaction() as tx:
                await close_window(tx, CHANNEL, delivery.address)
                await bc.release(tx, delivery, utcnow(), "outside the 24-hour window (131047)")
        elif exc.status >= 500:
            await self._transient(delivery, str(exc))
        else:
            await self._record(bc.mark_failed, delivery, str(exc))

    async def _transient(self, delivery: bc.Delivery, error: str) -> None:
        if delivery.attempts >= MAX_ATTEMPTS:
            await self._record(bc.mark_failed, delivery, f"gave up after {MAX_ATTEMPTS}: {error}")
        else:
            delay = dt.timedelta(seconds=backoff(delivery.attempts))
            await self._record(bc.retry_later, delivery, delay, error)

    async def _record(
        self, action: Callable[..., object], delivery: bc.Delivery, *args: object
    ) -> None:
        async with self.svc.storage.transaction() as tx:
            await action(tx, delivery, utcnow(), *args)  # type: ignore[misc]


# -- reminders -----------------------------------------------------------------------
def reminder_key(occurrence: Occurrence) -> str:
    """Its own broadcast per channel: the Telegram sender never claims these rows."""
    return jobs.reminder_key(occurrence, CHANNEL)


async def create_reminder(svc: Services, occurrence: Occurrence, now: dt.datetime) -> int | None:
    return await jobs.create_reminder(svc, occurrence, now, CHANNEL)


async def run_reminders(svc: Services, sender: WhatsAppSender, clock: Clock = utcnow) -> None:
    """Create each reminder when due (once: its key is unique) and wake the sender."""
    rules = ReminderRules.from_settings(svc.settings)
    if not rules.valid:
        return
    while True:
        now = clock()
        planned = due_and_upcoming(rules, now)
        for item in planned:
            if item.state == "due" and await create_reminder(svc, item.occurrence, now):
                log.info("whatsapp reminder %s created", reminder_key(item.occurrence))
                sender.wake()
        upcoming = [p.occurrence.at for p in planned if p.state == "upcoming"]
        if not upcoming:
            return
        wait = (min(upcoming) - clock()).total_seconds()
        await asyncio.sleep(min(max(wait, 0.0) + 0.5, REMINDER_RECHECK))
