"""Reminders and broadcasts end to end: the real Application over HTTP against the fake Bot API."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import pytest
from telegram.error import NetworkError, TimedOut

from bot.broadcast_handlers import start_reminders
from bot.jobs import MAX_IN_FLIGHT, Clock, request_never_sent
from bot.services import AnyApplication, Services
from core import broadcast as bc
from core.config import Settings
from core.identity import pseudonym
from core.model import utcnow
from core.storage import Storage
from tests.conftest import SECRET
from tests.support.bot_process import start_bot
from tests.support.fake_bot_api import ApiCall, FakeBotApi
from tests.support.telegram_driver import TelegramUser, running_application, settings_for

JAKARTA_OFFSET = dt.timedelta(hours=7)
PERIOD = "2025"
ADMIN = 9001
OUTSIDER = 9002
PAST_WINDOW = {
    "survey_window_start": dt.date(2000, 6, 1),
    "survey_window_end": dt.date(2000, 6, 30),
}

# chat id → (locale, survey_status, opted_out, active)
CONTACTS: dict[int, tuple[str, str, bool, bool]] = {
    7001: ("id", "none", False, True),
    7002: ("id", "started", False, True),
    7003: ("id", "completed", False, True),
    7004: ("id", "started", True, True),  # opted out
    7005: ("id", "started", False, False),  # blocked the bot earlier
    7006: ("en", "started", False, True),
    7007: ("id", "started", False, True),  # blocks the bot during the test
}


def today_jakarta() -> dt.date:
    return (utcnow() + JAKARTA_OFFSET).date()


async def seed(db_path: Path, contacts: dict[int, tuple[str, str, bool, bool]]) -> None:
    storage = await Storage.open(db_path)
    now = utcnow()
    try:
        async with storage.transaction() as tx:
            for chat, (locale, status, opted_out, active) in contacts.items():
                await tx.upsert_contact("telegram", str(chat), locale)
                await tx.set_contact_opt_out("telegram", str(chat), opted_out)
                if not active:
                    await tx.mark_contact_inactive("telegram", str(chat))
                if status != "none":
                    # Progress lives only under the respondent's pseudonym, as in real use.
                    key = pseudonym(SECRET, "telegram", str(chat))
                    response = await tx.create_response(
                        key, PERIOD, "eksternal", "dinkes", "telegram"
                    )
                    if status == "completed":
                        await tx.complete_response(response, now.date(), 600)
    finally:
        await storage.close()


async def seed_broadcast(db_path: Path, chats: Iterable[int], text: str) -> int:
    await seed(db_path, {chat: ("id", "none", False, True) for chat in chats})
    storage = await Storage.open(db_path)
    try:
        async with storage.transaction() as tx:
            found = await bc.create_broadcast(
                tx,
                kind="manual",
                texts={"id": text, "en": text},
                audience="all",
                channels=("telegram",),
                now=utcnow(),
                progress=bc.SurveyProgress(SECRET, PERIOD),
            )
    finally:
        await storage.close()
    assert found is not None
    return found


def broadcast_bot(
    settings: Settings, *, rate: float = 200.0, clock: Clock = utcnow
) -> AbstractAsyncContextManager[tuple[Services, AnyApplication]]:
    """The Application as `spi-bot run` builds it; the reminders and the sender start
    with this clock and rate."""

    async def startup(app: AnyApplication) -> None:
        await start_reminders(app, clock=clock, rate=rate)

    return running_application(settings, startup)


def sends(api: FakeBotApi, status: int | None = 200, since: int = 0) -> list[ApiCall]:
    return [c for c in api.calls_of("sendMessage")[since:] if status is None or c.status == status]


def received(api: FakeBotApi, marker: str) -> Counter[int]:
    """How many successful messages containing ``marker`` each chat got."""
    return Counter(
        int(c.params["chat_id"]) for c in sends(api) if marker in str(c.params.get("text", ""))
    )


def rows(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as db:
        return list(db.execute(sql, params))


def delivery_status(db_path: Path) -> dict[int, str]:
    return {
        int(address): status
        for address, status in rows(db_path, "SELECT address, status FROM deliveries")
    }


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as server:
        yield server


# -- reminders ---------------------------------------------------------------------------
async def test_closing_reminder_reaches_non_completers_once(
    api: FakeBotApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    today = today_jakarta()
    # Today is the day before the window's last day: the closing reminder is due at 00:00.
    settings = settings_for(
        api,
        db_path,
        survey_window_start=today - dt.timedelta(days=5),
        survey_window_end=today + dt.timedelta(days=1),
        reminder_time=dt.time(0, 0),
    )
    await seed(db_path, CONTACTS)
    api.blocked_chats.add(7007)
    async with broadcast_bot(settings):
        await api.wait_for(lambda: delivery_status(db_path).get(7007) == "blocked", timeout=10)
        await api.wait_for(lambda: len(received(api, "SPI")) == 3, timeout=10)
    got = received(api, "SPI")
    assert got == Counter({7001: 1, 7002: 1, 7006: 1})  # not completed, opted out or inactive
    english = next(c for c in sends(api) if c.params["chat_id"] == 7006)
    assert "closes tomorrow" in english.params["text"]
    indonesian = next(c for c in sends(api) if c.params["chat_id"] == 7001)
    assert "besok" in indonesian.params["text"]
    assert FakeBotApi.buttons(api.last_message(7001)) == [("Isi survei", "-|resume|")]
    assert FakeBotApi.buttons(api.last_message(7006)) == [("Continue the survey", "-|resume|")]
    key = f"reminder:{today.isoformat()}:closing"
    assert rows(db_path, "SELECT key, status FROM broadcasts") == [(key, "done")]
    # A 403 marks the contact inactive for good.
    assert rows(db_path, "SELECT active FROM contacts WHERE address = '7007'") == [(0,)]
    assert delivery_status(db_path)[7007] == "blocked"

    # Restarted the same day: the reminder exists, so nobody gets it twice.
    reminder_texts = {c.params["text"] for c in sends(api)}
    mark = api.mark()
    async with broadcast_bot(settings):
        await asyncio.sleep(1.0)
        # The reminder's button resumes or starts the survey through the engine.
        user = TelegramUser(api, 7001)
        await user.press("Isi survei", expect="sukarela")
    again = [
        c
        for c in api.calls[mark:]
        if c.method == "sendMessage" and c.params["text"] in reminder_texts
    ]
    assert not again
    assert len(rows(db_path, "SELECT id FROM broadcasts")) == 1


async def test_in_window_reminder_goes_only_to_unfinished_and_later_ones_are_scheduled(
    api: FakeBotApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    today = today_jakarta()
    settings = settings_for(
        api,
        db_path,
        survey_window_start=today - dt.timedelta(days=3),
        survey_window_end=today + dt.timedelta(days=10),
        reminder_every_days=3,
        reminder_time=dt.time(0, 0),
    )
    await seed(db_path, CONTACTS)
    async with broadcast_bot(settings) as (_svc, app):
        await api.wait_for(lambda: len(received(api, "SPI")) == 3, timeout=10)
        assert app.job_queue is not None
        names = {job.name for job in app.job_queue.jobs()}
    assert received(api, "SPI") == Counter({7002: 1, 7006: 1, 7007: 1})  # 'started' only
    assert "belum menyelesaikan" in next(
        c.params["text"] for c in sends(api) if c.params["chat_id"] == 7002
    )
    later = today + dt.timedelta(days=3)
    closing = today + dt.timedelta(days=9)
    assert f"reminder:{later.isoformat()}:during" in names
    assert f"reminder:{closing.isoformat()}:closing" in names


async def test_scheduled_reminder_fires_from_the_job_queue(api: FakeBotApi, tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    now_local = utcnow() + JAKARTA_OFFSET
    fire = (now_local + dt.timedelta(seconds=3)).replace(microsecond=0)
    if fire.date() != now_local.date():
        pytest.skip("too close to midnight in Jakarta")
    settings = settings_for(
        api,
        db_path,
        survey_window_start=fire.date() + dt.timedelta(days=1),
        survey_window_end=fire.date() + dt.timedelta(days=20),
        reminder_days_before=[1],
        reminder_time=fire.time(),
    )
    key = f"reminder:{fire.date().isoformat()}:before"
    await seed(db_path, {7001: ("id", "none", False, True)})
    async with broadcast_bot(settings) as (_svc, app):
        assert app.job_queue is not None
        assert app.job_queue.get_jobs_by_name(key)  # scheduled, not sent at start-up
        assert rows(db_path, "SELECT key FROM broadcasts") == []
        await api.wait_for(lambda: received(api, "SPI") == Counter({7001: 1}), timeout=10)
    assert rows(db_path, "SELECT key FROM broadcasts") == [(key,)]


# -- opt-out / opt-in -----------------------------------------------------------------------
async def test_berhenti_and_langganan(api: FakeBotApi, tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    settings = settings_for(api, db_path, admin_ids=[ADMIN], **PAST_WINDOW)
    await seed(db_path, {7006: ("en", "none", False, True)})
    async with broadcast_bot(settings):
        user = TelegramUser(api, 7101)
        await user.send("/start", expect="sukarela")
        await user.send("/berhenti", expect="tidak akan lagi menerima")
        assert rows(db_path, "SELECT opted_out FROM contacts WHERE address = '7101'") == [(1,)]
        admin = TelegramUser(api, ADMIN)
        await admin.send("/siaran Halo", expect="1 penerima")  # only 7006 is left

        await user.send("/langganan", expect="menerima pengingat")
        assert rows(db_path, "SELECT opted_out FROM contacts WHERE address = '7101'") == [(0,)]
        await admin.send("/siaran Halo", expect="2 penerima")

        english = TelegramUser(api, 7006, language_code="en")
        await english.send("/berhenti", expect="no longer receive")
        # Someone who never started the bot can opt out too, and it sticks through /start.
        stranger = TelegramUser(api, 7102)
        await stranger.send("/berhenti", expect="tidak akan lagi menerima")
        await stranger.send("/start", expect="sukarela")
        assert rows(db_path, "SELECT opted_out FROM contacts WHERE address = '7102'") == [(1,)]
    # The survey handlers did not also answer "unknown command".
    assert not any("tidak dikenal" in t for t in user.texts())


# -- admin commands ------------------------------------------------------------------------
async def test_siaran_preview_confirm_status_and_refusal(api: FakeBotApi, tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    settings = settings_for(api, db_path, admin_ids=[ADMIN], **PAST_WINDOW)
    await seed(
        db_path,
        {
            7001: ("id", "none", False, True),
            7002: ("en", "completed", False, True),
            7003: ("id", "started", True, True),
        },
    )
    async with broadcast_bot(settings):
        outsider = TelegramUser(api, OUTSIDER)
        await outsider.send("/siaran Halo semua", expect="hanya untuk admin")
        await outsider.send("/siaran_status", expect="hanya untuk admin")
        await outsider.send("/jadwal", expect="hanya untuk admin")

        admin = TelegramUser(api, ADMIN)
        await admin.send("/siaran", expect="/siaran")  # usage
        preview = await admin.send("/siaran Halo <semua> & selamat pagi", expect="2 penerima")
        assert "Halo <semua> & selamat pagi" in (preview.text or "")
        assert received(api, "selamat pagi") == Counter({ADMIN: 1})  # only the preview so far

        # A forged press by a non-admin does nothing.
        send_data = api.button_data(ADMIN, "Kirim")
        api.press_button(OUTSIDER, 1, send_data)
        await api.wait_for_call("answerCallbackQuery")
        await asyncio.sleep(0.3)
        assert rows(db_path, "SELECT status FROM broadcasts") == [("draft",)]

        await admin.press("Kirim", expect="sedang dikirim")
        await api.wait_for(lambda: len(received(api, "selamat pagi")) == 3, timeout=10)
        assert api.last_message(7001).text == "Halo <semua> & selamat pagi"
        # Pressing the same button again (e.g. an old copy) sends nothing twice.
        mark = api.mark()
        api.press_button(ADMIN, preview.message_id, send_data)
        await api.wait_for_call("answerCallbackQuery", after=mark)
        await asyncio.sleep(0.3)
        assert received(api, "selamat pagi") == Counter({ADMIN: 1, 7001: 1, 7002: 1})

        status = await admin.send("/siaran_status", expect="terkirim 2")
        assert "pesan/detik" in (status.text or "")

        await admin.send("/siaran Jangan dikirim", expect="Pratinjau")
        await admin.press("Batal", expect="dibatalkan")
    assert received(api, "Jangan dikirim") == Counter({ADMIN: 1})
    assert rows(db_path, "SELECT status FROM broadcasts ORDER BY id") == [
        ("done",),
        ("cancelled",),
    ]
    assert rows(db_path, "SELECT COUNT(*) FROM deliveries WHERE status = 'sent'") == [(2,)]


async def test_jadwal_lists_the_schedule(api: FakeBotApi, tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    today = today_jakarta()
    settings = settings_for(
        api,
        db_path,
        admin_ids=[ADMIN],
        survey_window_start=today + dt.timedelta(days=10),
        survey_window_end=today + dt.timedelta(days=20),
    )
    async with broadcast_bot(settings):
        admin = TelegramUser(api, ADMIN)
        shown = await admin.send("/jadwal", expect="Jadwal pengingat")
    text = shown.text or ""
    assert "Asia/Jakarta" in text
    # 14 days before is past (missed); 7 and 1 day before, two in the window, the closing one.
    assert text.count("terjadwal") == 5
    assert text.count("terlewat") == 1
    assert "pengingat penutupan" in text


# -- blocked users and Telegram's limits -----------------------------------------------------
async def test_blocked_user_is_marked_inactive_and_skipped_later(
    api: FakeBotApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    settings = settings_for(api, db_path, admin_ids=[ADMIN], **PAST_WINDOW)
    await seed_broadcast(db_path, [7001, 7002, 7003], "Pengumuman pertama")
    api.blocked_chats.add(7002)
    async with broadcast_bot(settings):
        await api.wait_for(
            lambda: rows(db_path, "SELECT status FROM broadcasts") == [("done",)], timeout=10
        )
        assert rows(db_path, "SELECT active FROM contacts WHERE address = '7002'") == [(0,)]
        admin = TelegramUser(api, ADMIN)
        await admin.send("/siaran Pengumuman kedua", expect="2 penerima")
        await admin.press("Kirim", expect="sedang dikirim")
        await api.wait_for(lambda: len(received(api, "Pengumuman kedua")) == 3, timeout=10)
    attempts = Counter(int(c.params["chat_id"]) for c in sends(api, status=None))
    assert attempts[7002] == 1  # the 403; never tried again
    assert delivery_status(db_path)[7002] == "blocked"


# PTB itself warns when it builds RetryAfter that retry_after becomes a timedelta in v23.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_429_retry_after_is_honoured(tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    chats = list(range(7200, 7214))
    async with FakeBotApi(rate_limit_per_second=5) as api:
        settings = settings_for(api, db_path, **PAST_WINDOW)
        await seed_broadcast(db_path, chats, "Uji batas")
        async with broadcast_bot(settings, rate=29.0):
            await api.wait_for(lambda: len(received(api, "Uji batas")) == len(chats), timeout=20)
        assert api.too_many_requests >= 1
        assert received(api, "Uji batas") == Counter(dict.fromkeys(chats, 1))
        refused = [c.time for c in api.calls_of("sendMessage") if c.status == 429]
        for moment in refused:
            # retry_after is 1 s: nothing more in that second (beyond calls already in flight).
            during_pause = [
                c for c in api.calls_of("sendMessage") if moment + 0.1 < c.time < moment + 0.95
            ]
            assert not during_pause
    assert rows(db_path, "SELECT status, attempts FROM deliveries GROUP BY status") == [("sent", 1)]
    assert rows(db_path, "SELECT MAX(attempts) FROM deliveries") == [(1,)]


def test_only_requests_that_never_left_are_retried() -> None:
    def wrapped(exc: NetworkError, cause: BaseException | None) -> NetworkError:
        exc.__cause__ = cause
        return exc

    request = httpx.Request("POST", "https://example.invalid")
    assert request_never_sent(wrapped(NetworkError("Bad Gateway"), None))
    assert request_never_sent(wrapped(NetworkError("x"), httpx.ConnectError("refused")))
    assert request_never_sent(wrapped(TimedOut("pool"), httpx.PoolTimeout("pool")))
    assert not request_never_sent(wrapped(TimedOut(), httpx.ReadTimeout("slow", request=request)))
    assert not request_never_sent(
        wrapped(NetworkError("x"), httpx.RemoteProtocolError("dropped", request=request))
    )
    # The bot's aiohttp transport (bot/http.py).
    key = SimpleNamespace(host="api.telegram.org", port=443, ssl=True)
    refused = aiohttp.ClientConnectorError(key, OSError(111, "refused"))  # type: ignore[arg-type]
    assert request_never_sent(wrapped(NetworkError("x"), refused))
    assert request_never_sent(wrapped(TimedOut(), aiohttp.ConnectionTimeoutError("connect")))
    assert not request_never_sent(wrapped(TimedOut(), aiohttp.SocketTimeoutError("read")))
    assert not request_never_sent(wrapped(NetworkError("x"), aiohttp.ServerDisconnectedError()))


# -- restarts ----------------------------------------------------------------------------
async def test_stopped_half_way_resumes_without_duplicates(api: FakeBotApi, tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    chats = list(range(7300, 7360))
    settings = settings_for(api, db_path, **PAST_WINDOW)
    await seed_broadcast(db_path, chats, "Lanjut setelah restart")
    async with broadcast_bot(settings, rate=29.0):
        await api.wait_for(lambda: len(received(api, "Lanjut setelah")) >= 15, timeout=10)
    statuses = Counter(delivery_status(db_path).values())
    assert statuses["sending"] == 0  # a clean stop finishes what is in flight
    assert 15 <= statuses["sent"] < len(chats) and statuses["pending"] > 0
    assert statuses["sent"] == len(received(api, "Lanjut setelah"))
    async with broadcast_bot(settings, rate=200.0):
        await api.wait_for(lambda: len(received(api, "Lanjut setelah")) == len(chats), timeout=10)
        await asyncio.sleep(0.3)
    assert received(api, "Lanjut setelah") == Counter(dict.fromkeys(chats, 1))
    assert Counter(delivery_status(db_path).values()) == Counter({"sent": len(chats)})


def start_child(api: FakeBotApi, db_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`python -m bot run` with the survey window long past: no reminder falls due."""
    return start_bot(
        api, db_path, log_path, SURVEY_WINDOW_START="2000-06-01", SURVEY_WINDOW_END="2000-06-30"
    )


async def test_killed_mid_broadcast_resumes_at_most_once(tmp_path: Path) -> None:
    """SIGKILL while messages are in flight: those become 'unknown' and are never resent;
    every other recipient gets the broadcast exactly once after the restart."""
    db_path = tmp_path / "spi.sqlite3"
    log_path = tmp_path / "bot.log"
    chats = list(range(7400, 7460))
    marker = "Uji crash"
    await seed_broadcast(db_path, chats, marker)
    async with FakeBotApi(latency=0.15) as api:  # a real round trip: several calls in flight
        process = start_child(api, db_path, log_path)
        try:
            await api.wait_for(lambda: len(received(api, marker)) >= 20, timeout=30)
        finally:
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait, 10)
        await asyncio.sleep(0.3)  # let the fake finish requests that were already sent
        before_restart = received(api, marker)
        in_flight = {
            int(a)
            for (a,) in rows(db_path, "SELECT address FROM deliveries WHERE status = 'sending'")
        }
        assert 1 <= len(in_flight) <= MAX_IN_FLIGHT

        mark = api.mark()
        process = start_child(api, db_path, log_path)
        try:
            await api.wait_for(
                lambda: (
                    rows(
                        db_path,
                        "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'sending')",
                    )
                    == [(0,)]
                ),
                timeout=30,
            )
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 30)
        assert process.returncode == 0, log_path.read_text()

        after = received(api, marker)
        resent_to = {
            int(c.params["chat_id"]) for c in api.calls[mark:] if c.method == "sendMessage"
        }
    statuses = delivery_status(db_path)
    unknown = {chat for chat, status in statuses.items() if status == "unknown"}
    assert unknown == in_flight  # exactly the in-flight rows, resolved at start-up
    assert not unknown & resent_to  # never resent
    assert all(count == 1 for count in after.values())  # nobody twice
    for chat in chats:
        if chat in unknown:
            assert after[chat] == before_restart[chat] <= 1  # once or not at all
        else:
            assert statuses[chat] == "sent" and after[chat] == 1
    assert "Traceback" not in log_path.read_text()
