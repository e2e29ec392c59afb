"""Reminders and broadcasts on WhatsApp: the 24-hour window, templates, 130429 and 131047."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.jobs import RESUME_TOKEN
from bot.whatsapp.runner import WhatsAppRuntime
from bot.whatsapp.sender import NO_TEMPLATE_REASON, OUTSIDE_WINDOW_REASON
from core import broadcast as bc
from core.model import iso, utcnow
from tests.support.fake_whatsapp_api import FakeWhatsAppApi
from tests.support.whatsapp_driver import WhatsAppUser, running_whatsapp, settings_for

WA_ID = "6289876543210"
TEMPLATE = "spi_pengingat"


@pytest.fixture
async def api() -> AsyncIterator[FakeWhatsAppApi]:
    async with FakeWhatsAppApi() as server:
        yield server


def deliveries(db_path: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(db_path) as db:
        return list(db.execute("SELECT status, error FROM deliveries"))


async def consented_contact(api: FakeWhatsAppApi, runtime: WhatsAppRuntime) -> None:
    user = WhatsAppUser(api, runtime, WA_ID)
    await user.send("/start", expect="sukarela")
    await user.press("setuju", expect="kelompok")


async def leave_window(api: FakeWhatsAppApi, runtime: WhatsAppRuntime) -> None:
    """As if the respondent last wrote two days ago, for the bot and for WhatsApp."""
    api.expire_window(WA_ID)
    async with runtime.svc.storage.transaction() as tx:
        await tx.execute(
            "UPDATE chat_windows SET last_inbound = ?", (iso(utcnow() - dt.timedelta(days=2)),)
        )
    runtime.channel._window_noted.clear()


async def broadcast(runtime: WhatsAppRuntime, kind: bc.BroadcastKind = "reminder") -> None:
    svc = runtime.svc
    async with svc.storage.transaction() as tx:
        await bc.create_broadcast(
            tx,
            kind=kind,
            texts={"id": "<b>Pengingat:</b> survei SPI &amp; integritas", "en": "Reminder"},
            audience="all",
            channels=("whatsapp",),
            now=utcnow(),
            progress=svc.progress,
            button=RESUME_TOKEN if kind == "reminder" else None,
        )
    runtime.sender.wake()


async def settled(db_path: Path, timeout: float = 10.0) -> list[tuple[str, str | None]]:
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries(db_path)
        if found and all(status not in ("pending", "sending") for status, _ in found):
            return found
        assert time.monotonic() < deadline, f"deliveries not settled: {found}"
        await asyncio.sleep(0.05)


async def test_inside_the_window_a_reminder_is_a_normal_message_with_a_button(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    settings = settings_for(api, db_path, whatsapp_reminder_template=TEMPLATE)
    async with running_whatsapp(api, settings) as runtime:
        await consented_contact(api, runtime)
        await broadcast(runtime)
        assert await settled(db_path) == [("sent", None)]
    last = api.to(WA_ID)[-1]
    assert last.kind == "button"
    assert last.text == "*Pengingat:* survei SPI & integritas"
    assert last.choices() == [(RESUME_TOKEN, "Isi survei", "")]


async def test_outside_the_window_a_reminder_goes_as_the_template(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    settings = settings_for(
        api, db_path, whatsapp_reminder_template=TEMPLATE, whatsapp_template_language="id"
    )
    async with running_whatsapp(api, settings) as runtime:
        await consented_contact(api, runtime)
        await leave_window(api, runtime)
        await broadcast(runtime)
        assert await settled(db_path) == [("sent", None)]
    last = api.to(WA_ID)[-1]
    assert last.message["template"] == {"name": TEMPLATE, "language": {"code": "id"}}
    assert not api.refused  # no free-form attempt outside the window


async def test_outside_the_window_without_template_or_for_announcements_skipped_with_reason(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with running_whatsapp(api, settings_for(api, db_path)) as runtime:
        await consented_contact(api, runtime)
        await leave_window(api, runtime)
        sent_before = len(api.sent)
        await broadcast(runtime, "reminder")
        await broadcast(runtime, "manual")
        found = await settled(db_path)
        assert sorted(found) == sorted(
            [("skipped", NO_TEMPLATE_REASON), ("skipped", OUTSIDE_WINDOW_REASON)]
        )
        assert len(api.sent) == sent_before


async def test_re_engagement_error_marks_outside_the_window_and_resends_as_template(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    settings = settings_for(api, db_path, whatsapp_reminder_template=TEMPLATE)
    async with running_whatsapp(api, settings) as runtime:
        await consented_contact(api, runtime)
        api.fail_next(131047, to=WA_ID)  # the bot believes the window is open; WhatsApp does not
        await broadcast(runtime)
        assert await settled(db_path) == [("sent", None)]
    assert [body["error"]["code"] for _, body in api.refused] == [131047]
    assert api.to(WA_ID)[-1].kind == "template"
    with sqlite3.connect(db_path) as db:
        assert list(db.execute("SELECT * FROM chat_windows")) == []


async def test_rate_limit_error_pauses_sending(api: FakeWhatsAppApi, tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with running_whatsapp(api, settings_for(api, db_path), pause=0.5) as runtime:
        await consented_contact(api, runtime)
        api.fail_next(130429)
        started = time.monotonic()
        await broadcast(runtime)
        assert await settled(db_path) == [("sent", None)]
        assert runtime.sender.rate_limited_total == 1
    refused_at = started
    assert api.to(WA_ID)[-1].at - refused_at >= 0.5


async def test_failed_status_webhook_with_131047_closes_the_window(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with running_whatsapp(api, settings_for(api, db_path)) as runtime:
        await consented_contact(api, runtime)
        with sqlite3.connect(db_path) as db:
            assert list(db.execute("SELECT address FROM chat_windows")) == [(WA_ID,)]
        assert await api.deliver(api.failed_status(WA_ID, 131026)) == 200
        await runtime.channel.drain()
        with sqlite3.connect(db_path) as db:
            assert list(db.execute("SELECT address FROM chat_windows")) == [(WA_ID,)]
        assert await api.deliver(api.failed_status(WA_ID, 131047)) == 200
        await runtime.channel.drain()
        with sqlite3.connect(db_path) as db:
            assert list(db.execute("SELECT address FROM chat_windows")) == []


async def test_a_rate_limited_reply_is_retried_and_pauses_broadcasts(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with running_whatsapp(api, settings_for(api, db_path), pause=5.0) as runtime:
        user = WhatsAppUser(api, runtime, WA_ID)
        api.fail_next(130429)
        await user.send("/start", expect="sukarela")
        assert [body["error"]["code"] for _, body in api.refused] == [130429]
        assert runtime.sender.rate_limited_total == 1
        assert runtime.sender.paused_for() > 0
