"""Reminder jobs on PTB's JobQueue and the paced, resumable broadcast sender.

Start-up (:func:`start`) is the only place that decides what happens after a
stop or crash, so a restart neither loses nor repeats anything:

1. deliveries left 'sending' by a crash become 'unknown' (never resent: at most once);
2. the reminder schedule is recomputed from settings: an occurrence whose
   broadcast row exists is left alone (its pending deliveries are simply
   resumed), one due earlier today is created now, later ones become JobQueue
   jobs, and older missed ones are skipped;
3. the sender starts and works through every pending delivery, oldest broadcast first.

Pacing: sends are spaced evenly at :data:`DEFAULT_RATE` (28.5/s, under Telegram's
30/s) with no bursts, so even a strict sliding one-second window never sees more
than 30, with room for about 50 ms of scheduling and network jitter; a chat gets
at most one message per second. A 429 pauses all sending for its ``retry_after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import random
import time
import warnings
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.ext import ContextTypes
from telegram.warnings import PTBDeprecationWarning

from bot.keyboards import inline_keyboard
from bot.services import EVENT_MEMORY, AnyApplication, Services, services_of
from core import broadcast as bc
from core.engine import GLOBAL, token
from core.events import Button
from core.i18n import gettext_for
from core.model import utcnow
from core.reminders import (
    Occurrence,
    ReminderRules,
    due_and_upcoming,
    reminder_texts,
    state_of,
)
from core.storage import Storage

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

CHANNEL = "telegram"
SENDER_KEY = "broadcast_sender"
_CLOCK_KEY = "reminder_clock"
# Messages/s overall. Telegram allows about 30; at 29/s the benchmark still met a few
# 429s (arrival jitter on a busy host), at 28.5/s none, and a real 429 costs far more
# (retry_after can be many seconds) than the 2 % of rate given up here.
DEFAULT_RATE = 28.5
PER_CHAT_INTERVAL = 1.0  # seconds between two messages to one chat
MAX_IN_FLIGHT = 16  # concurrent API calls: covers 28.5/s at up to ~0.5 s round trip
MAX_ATTEMPTS = 5  # for errors where the request provably never reached Telegram
BACKOFF_BASE = 2.0  # seconds; doubles per attempt
BACKOFF_CAP = 60.0
IDLE_POLL = 0.5  # seconds between looks at the queue when there is nothing to send
RESUME_TOKEN = token(GLOBAL, "resume")
PRUNE_INTERVAL = dt.timedelta(hours=1)  # processed update ids outlive the horizon by <= 1 h
PRUNE_JOB = "prune-processed-events"


class Pacer:
    """Even spacing without bursts (a token bucket holding one token).

    ``reserve`` hands out slots ``1/rate`` apart on a fixed grid, so sleeping a
    little late never slows the average; after a stall longer than one interval
    the grid restarts at "now" instead of catching up in a burst. A send that was
    late cannot pull the next one closer than ``min_gap`` to its planned time.
    A send late by D lets at most ceil(rate × (1 + D)) sends into any sliding
    second: at 28.5/s that stays ≤ 30 for D up to about 50 ms.
    """

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.min_gap = 1.0 / (rate + 0.5)
        self._next = 0.0
        self._last = -math.inf

    def reserve(self, now: float) -> float:
        slot = max(self._next, now)
        self._next = slot + self.interval
        return slot

    def earliest(self, slot: float) -> float:
        return max(slot, self._last + self.min_gap)

    def dispatched(self, moment: float) -> None:
        self._last = moment

    def hold(self, until: float) -> None:
        self._next = max(self._next, until)


class BroadcastSender:
    """Claims pending deliveries one at a time and sends them at a steady rate.

    Each delivery is claimed ('sending', committed) just before its API call, so
    a crash leaves at most the in-flight rows without a recorded outcome.
    """

    def __init__(
        self,
        application: AnyApplication,
        svc: Services,
        *,
        rate: float = DEFAULT_RATE,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.application = application
        self.svc = svc
        self.rate = rate
        self.pacer = Pacer(rate)
        self.retry_after_total = 0
        self.sent_total = 0
        self._slots = asyncio.Semaphore(max_in_flight)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()  # set by stop(): send nothing new, finish in flight
        self._task: asyncio.Task[None] | None = None
        self._pause_until = 0.0
        self._recent: dict[str, float] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._broadcasts: dict[int, bc.Broadcast] = {}
        self._claim_seconds = 0.005  # moving average: how early to claim before a slot

    # -- control -----------------------------------------------------------
    def wake(self) -> None:
        """New deliveries exist: stop idling."""
        self._wake.set()

    def paused_for(self) -> float:
        """Seconds left of a flood-control pause (0 when sending normally)."""
        return max(0.0, self._pause_until - time.monotonic())

    def start(self) -> None:
        """Run in the background until :meth:`stop` (the application's post_stop)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="broadcast-sender")

    async def stop(self) -> None:
        """Stop claiming deliveries, wait for the ones in flight; no polling involved."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await self._task

    def _running(self) -> bool:
        return not self._stopping.is_set()

    async def _sleep_until(self, moment: float) -> bool:
        """Sleep until ``moment`` unless stopped first; False if stopping."""
        left = moment - time.monotonic()
        if left > 0 and self._running():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), left)
        return self._running()

    # -- main loop ---------------------------------------------------------
    async def run(self) -> None:
        log.info("broadcast sender started (%.1f msg/s)", self.rate)
        try:
            while self._running():
                try:
                    progressed = await self._dispatch_next()
                except Exception:
                    log.exception("broadcast sender: unexpected error; retrying in 1 s")
                    await asyncio.sleep(1.0)
                    continue
                if not progressed and self._running():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
        finally:
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            log.info("broadcast sender stopped (%d sent since start)", self.sent_total)

    async def _dispatch_next(self) -> bool:
        """Claim and launch one delivery; False when nothing could be sent now."""
        if not await self._sleep_until(self._pause_until):
            return False
        await self._slots.acquire()
        launched = False
        try:
            slot = self.pacer.reserve(time.monotonic())
            lead = min(self.pacer.interval, max(0.002, 2 * self._claim_seconds))
            if not await self._sleep_until(slot - lead):
                return False
            self._wake.clear()
            delivery = await self._claim()
            if delivery is None:
                return False
            broadcast = await self._broadcast(delivery.broadcast_id)
            target = self.pacer.earliest(slot)
            ready = await self._sleep_until(target)
            if ready and self._pause_until > time.monotonic():
                ready = await self._sleep_until(self._pause_until)
            if not ready:  # stopping: this one was not sent, hand it back
                await self._record(bc.release, delivery, "stopped before sending")
                return False
            # The planned time, not the (slightly later) wake-up: sleep overshoot
            # must not add up from one send to the next.
            self.pacer.dispatched(max(target, self._pause_until))
            self._recent[delivery.address] = time.monotonic()
            task = asyncio.create_task(self._send(delivery, broadcast))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            launched = True
            return True
        finally:
            if not launched:
                self._slots.release()

    async def _claim(self) -> bc.Delivery | None:
        now = time.monotonic()
        for address, sent_at in list(self._recent.items()):
            if now - sent_at >= PER_CHAT_INTERVAL:
                del self._recent[address]
        started = time.monotonic()
        async with self.svc.storage.transaction() as tx:
            delivery = await bc.claim_next(
                tx, CHANNEL, utcnow(), self.svc.progress, skip_addresses=self._recent
            )
        self._claim_seconds = 0.8 * self._claim_seconds + 0.2 * (time.monotonic() - started)
        return delivery

    async def _broadcast(self, broadcast_id: int) -> bc.Broadcast:
        found = self._broadcasts.get(broadcast_id)
        if found is None:
            async with self.svc.storage.transaction() as tx:
                found = await bc.get_broadcast(tx, broadcast_id)
            if found is None:
                raise LookupError(f"broadcast {broadcast_id} vanished")
            self._broadcasts[broadcast_id] = found
        return found

    # -- one delivery --------------------------------------------------------
    async def _send(self, delivery: bc.Delivery, broadcast: bc.Broadcast) -> None:
        try:
            await self._deliver(delivery, broadcast)
        except Exception:
            log.exception("broadcast %s: recording a delivery failed", delivery.broadcast_id)
        finally:
            self._slots.release()

    async def _deliver(self, delivery: bc.Delivery, broadcast: bc.Broadcast) -> None:
        markup = None
        if broadcast.button:
            label = gettext_for(delivery.locale).gettext("Continue the survey")
            markup = inline_keyboard([[Button(label, broadcast.button)]])
        try:
            await self.application.bot.send_message(
                int(delivery.address),
                broadcast.text_for(delivery.locale),
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
            )
        except RetryAfter as exc:
            wait = retry_after_seconds(exc)
            self.retry_after_total += 1
            self._pause_until = max(self._pause_until, time.monotonic() + wait)
            self.pacer.hold(self._pause_until)
            log.warning("flood control: Telegram asked to wait %.1f s", wait)
            await self._record(bc.release, delivery, "flood control (429)")
        except Forbidden as exc:
            await self._record(bc.mark_blocked, delivery, str(exc))
        except BadRequest as exc:  # e.g. chat not found: retrying cannot help
            await self._record(bc.mark_failed, delivery, str(exc))
        except NetworkError as exc:  # includes TimedOut
            await self._network_error(delivery, exc)
        except TelegramError as exc:
            await self._record(bc.mark_failed, delivery, str(exc))
        else:
            self.sent_total += 1
            await self._record(bc.mark_sent, delivery)

    async def _network_error(self, delivery: bc.Delivery, exc: NetworkError) -> None:
        error = str(exc) or type(exc).__name__
        if not request_never_sent(exc):
            # The request may have been delivered and only its answer lost: resending
            # could deliver twice, and Telegram has no idempotency key.
            await self._record(bc.mark_unknown, delivery, error)
        elif delivery.attempts >= MAX_ATTEMPTS:
            await self._record(bc.mark_failed, delivery, f"gave up after {MAX_ATTEMPTS}: {error}")
        else:
            delay = backoff(delivery.attempts)
            log.info("transient error (%s); retrying in %.1f s", error, delay)
            await self._record(bc.retry_later, delivery, dt.timedelta(seconds=delay), error)

    async def _record(
        self, action: Callable[..., Awaitable[bool]], delivery: bc.Delivery, *args: object
    ) -> None:
        async with self.svc.storage.transaction() as tx:
            await action(tx, delivery, utcnow(), *args)


# Failures before any byte of the request left: no connection, or no free pooled
# connection in time (aiohttp counts the pool wait in its connect timeout).
_NEVER_SENT: tuple[type[BaseException], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    aiohttp.ClientConnectorError,
    *((aiohttp.ConnectionTimeoutError,) if hasattr(aiohttp, "ConnectionTimeoutError") else ()),
)


def request_never_sent(exc: NetworkError) -> bool:
    """True when Telegram cannot have processed the request, so a retry is safe.

    Connection and pool failures happen before anything is sent; an error answer
    from Telegram (e.g. 502: no transport exception behind it) says it was not
    processed. A read timeout or a dropped connection is ambiguous: False.
    Both PTB's httpx transport and the bot's aiohttp one (bot/http.py) are known.
    """
    cause = exc.__cause__
    if cause is None or isinstance(cause, TelegramError):
        return True
    return isinstance(cause, _NEVER_SENT)


def backoff(attempt: int) -> float:
    """2, 4, 8, 16 … seconds (capped), with jitter so retries do not arrive together."""
    delay: float = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** max(0, attempt - 1))
    return delay * random.uniform(0.8, 1.2)


def retry_after_seconds(exc: RetryAfter) -> float:
    """Seconds to wait, whether PTB reports an int (v22 default) or a timedelta (later)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


# -- reminders -----------------------------------------------------------------------
def sender_of(application: AnyApplication) -> BroadcastSender | None:
    found: BroadcastSender | None = application.bot_data.get(SENDER_KEY)
    return found


def reminder_key(occurrence: Occurrence, channel: str = CHANNEL) -> str:
    """One broadcast per reminder and channel: each channel's sender claims only its own
    rows. Telegram's keep the plain key they always had."""
    return occurrence.key if channel == CHANNEL else f"{occurrence.key}/{channel}"


async def create_reminder(
    svc: Services, occurrence: Occurrence, now: dt.datetime, channel: str = CHANNEL
) -> int | None:
    """The reminder's broadcast and deliveries; None if it already exists (its key is UNIQUE)."""
    rules = ReminderRules.from_settings(svc.settings)
    texts = reminder_texts(occurrence.kind, svc.settings.survey_period, rules)
    async with svc.storage.transaction() as tx:
        broadcast_id = await bc.create_broadcast(
            tx,
            kind="reminder",
            key=reminder_key(occurrence, channel),
            message_key=occurrence.kind,
            texts=texts,
            audience=occurrence.audience,
            channels=(channel,),
            now=now,
            progress=svc.progress,
            button=RESUME_TOKEN,
        )
        recipients = await bc.counts(tx, broadcast_id) if broadcast_id is not None else None
    if broadcast_id is not None and recipients is not None:
        log.info(
            "reminder %s created: broadcast %d, %d recipients",
            reminder_key(occurrence, channel),
            broadcast_id,
            recipients.total,
        )
    return broadcast_id


async def _reminder_job(context: ContextTypes.DEFAULT_TYPE) -> None:
    """A scheduled reminder's time has come: create it (once) and wake the sender."""
    job = context.job
    assert job is not None and isinstance(job.data, Occurrence)
    occurrence: Occurrence = job.data
    application: AnyApplication = context.application
    svc = services_of(application)
    clock: Clock = application.bot_data.get(_CLOCK_KEY, utcnow)
    now = clock()
    if state_of(occurrence, now, svc.settings.tz) == "expired":
        log.warning("reminder %s fired too late (a later day); skipped", occurrence.key)
        return
    await create_reminder(svc, occurrence, now)
    sender = sender_of(application)
    if sender is not None:
        sender.wake()


async def _start_sender_job(context: ContextTypes.DEFAULT_TYPE) -> None:
    """Runs once the application is running; the application's post_stop stops it."""
    sender = sender_of(context.application)
    if sender is not None:
        sender.start()


async def schedule_reminders(application: AnyApplication, clock: Clock) -> list[str]:
    """Create due reminders now and put upcoming ones on the JobQueue; returns job names."""
    svc = services_of(application)
    job_queue = application.job_queue
    if job_queue is None:
        raise RuntimeError("reminders need python-telegram-bot[job-queue]")
    rules = ReminderRules.from_settings(svc.settings)
    if not rules.valid:
        log.warning("SURVEY_WINDOW_END is before SURVEY_WINDOW_START: no reminders scheduled")
        return []
    now = clock()
    planned = due_and_upcoming(rules, now)
    async with svc.storage.transaction() as tx:
        existing = await bc.broadcasts_by_key(tx, [p.occurrence.key for p in planned])
    scheduled: list[str] = []
    for item in planned:
        occurrence = item.occurrence
        if occurrence.key in existing:
            continue  # created before: the sender resumes whatever is still pending
        if item.state == "due":
            await create_reminder(svc, occurrence, now)
            continue
        for old in job_queue.get_jobs_by_name(occurrence.key):
            old.schedule_removal()
        job_queue.run_once(
            _reminder_job,
            when=occurrence.at,
            data=occurrence,
            name=occurrence.key,
            job_kwargs={"misfire_grace_time": None},  # late is checked by state_of
        )
        scheduled.append(occurrence.key)
    return scheduled


async def prune_processed_events(storage: Storage, now: dt.datetime) -> int:
    """Forget update ids older than Telegram's redelivery horizon.

    Telegram redelivers an unconfirmed update for at most 24 hours, so an id is kept
    that long and no longer: after a week without updates Telegram may start ids
    again from a random number, and an id remembered for ever would drop a new update.
    """
    async with storage.transaction() as tx:
        return await tx.prune_events(now - EVENT_MEMORY)


async def _prune_job(context: ContextTypes.DEFAULT_TYPE) -> None:
    clock: Clock = context.application.bot_data.get(_CLOCK_KEY, utcnow)
    forgotten = await prune_processed_events(services_of(context.application).storage, clock())
    log.info("forgot %d processed update ids older than %s", forgotten, EVENT_MEMORY)


def schedule_pruning(application: AnyApplication) -> None:
    """Prune hourly while the bot runs, not only at start-up."""
    assert application.job_queue is not None
    application.job_queue.run_repeating(
        _prune_job, interval=PRUNE_INTERVAL, first=PRUNE_INTERVAL, name=PRUNE_JOB
    )


async def start(
    application: AnyApplication, *, clock: Clock = utcnow, rate: float | None = None
) -> BroadcastSender:
    """Recover, schedule and start sending; safe to call twice (the second call is a no-op)."""
    existing = sender_of(application)
    if existing is not None:
        return existing
    svc = services_of(application)
    if application.job_queue is None:
        raise RuntimeError("reminders need python-telegram-bot[job-queue]")
    async with svc.storage.transaction() as tx:
        interrupted = await bc.recover_interrupted(tx, utcnow())
    if interrupted:
        log.warning(
            "%d deliveries were in flight when the bot stopped; marked 'unknown' (not resent)",
            interrupted,
        )
    sender = BroadcastSender(application, svc, rate=DEFAULT_RATE if rate is None else rate)
    application.bot_data[SENDER_KEY] = sender
    application.bot_data[_CLOCK_KEY] = clock
    schedule_pruning(application)
    scheduled = await schedule_reminders(application, clock)
    if scheduled:
        log.info("%d reminders scheduled; next: %s", len(scheduled), scheduled[0])
    application.job_queue.run_once(
        _start_sender_job,
        when=0,
        name="broadcast-sender-start",
        job_kwargs={"misfire_grace_time": None},  # however slow the rest of start-up is
    )
    sender.wake()
    return sender


async def stop(application: AnyApplication) -> None:
    """From post_stop: the sender finishes what is in flight and stops."""
    sender = sender_of(application)
    if sender is not None:
        await sender.stop()
