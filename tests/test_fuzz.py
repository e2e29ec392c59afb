"""Hostile input: random updates never raise out of a handler, never silence the bot,
and never change an answer a respondent did not give."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fake_bot_api import FakeBotApi
from tests.support.telegram_driver import (
    TelegramUser,
    running_bot,
    settings_for,
    start_as_service_user,
)

VICTIM = 424242
PROBE = 515151


class ErrorCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class BotInThread:
    """The real bot and the fake Bot API on an event loop of their own, so that
    hypothesis (which is synchronous) can drive them example by example."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.api = FakeBotApi()
        self._stop: asyncio.Event | None = None
        self._done: Future[None] | None = None

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        self.run(self.api.start())
        ready: Future[None] = Future()

        async def serve() -> None:
            self._stop = asyncio.Event()
            settings_ = settings_for(self.api, self.db_path, incoming_per_minute=100_000)
            async with running_bot(settings_):
                ready.set_result(None)
                await self._stop.wait()

        self._done = asyncio.run_coroutine_threadsafe(serve(), self.loop)  # type: ignore[assignment]
        ready.result(30)

    def stop(self) -> None:
        assert self._stop is not None and self._done is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._done.result(30)
        self.run(self.api.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotInThread]:
    counter = ErrorCounter()
    logging.getLogger().addHandler(counter)
    runner = BotInThread(tmp_path_factory.mktemp("fuzz") / "spi.sqlite3")
    runner.start()
    victim = TelegramUser(runner.api, VICTIM)

    runner.run(victim_mid_survey(victim))
    runner.errors = counter  # type: ignore[attr-defined]
    yield runner
    runner.stop()
    logging.getLogger().removeHandler(counter)


async def victim_mid_survey(victim: TelegramUser) -> None:
    """A respondent with two answers stored: what random input must never change."""
    await start_as_service_user(victim)
    await victim.press("Warga", expect="Pertanyaan 2")
    await victim.send("3", expect="Pertanyaan 3")


def victim_answers(db_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db_path) as db:
        return sorted(db.execute("SELECT question_id, value FROM answers WHERE response_id = 1"))


USER_IDS = st.integers(min_value=1, max_value=2**40)
CHAT_TYPES = st.sampled_from(["private", "group", "supergroup", "channel"])
TEXTS = st.one_of(
    st.text(max_size=300),
    st.text(min_size=4000, max_size=5000),
    st.from_regex(r"\A/[a-z_]{1,30}( [^\n]{0,40})?\Z"),
    st.sampled_from(["/start", "/lanjut", "/batal", "/skor", "/daftar AAAA", "/ekspor", "7"]),
)
CALLBACK_DATA = st.one_of(
    st.text(max_size=100),
    st.from_regex(r"\A(-|\d{1,4})\|[a-z]{1,6}\|[a-z0-9_]{0,30}\Z"),
    st.sampled_from(["adm|rank|0", "adm|rev|1", "bc|ok|1", "-|resume|", "-|erase|y"]),
)


@st.composite
def updates(draw: st.DrawFn) -> dict[str, Any]:
    user_id = draw(USER_IDS)
    chat_type = draw(CHAT_TYPES)
    chat_id = user_id if chat_type == "private" else -draw(USER_IDS)
    user = {"id": user_id, "is_bot": False, "first_name": draw(st.text(min_size=1, max_size=20))}
    chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
    base = {"message_id": draw(st.integers(1, 10_000)), "date": 0, "chat": chat, "from": user}
    kind = draw(st.sampled_from(
        ["text", "edited", "photo", "sticker", "contact", "location", "callback", "steal",
         "channel_post"]
    ))
    if kind == "text":
        return {"message": {**base, "text": draw(TEXTS)}}
    if kind == "edited":
        return {"edited_message": {**base, "text": draw(TEXTS), "edit_date": 1}}
    if kind == "photo":
        return {"message": {**base, "photo": [
            {"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}]}}
    if kind == "sticker":
        return {"message": {**base, "sticker": {
            "file_id": "s", "file_unique_id": "s", "width": 1, "height": 1,
            "is_animated": False, "is_video": False, "type": "regular"}}}
    if kind == "contact":
        return {"message": {**base, "contact": {"phone_number": "+62811", "first_name": "X"}}}
    if kind == "location":
        return {"message": {**base, "location": {"latitude": -7.0, "longitude": 110.4}}}
    if kind == "channel_post":
        return {"channel_post": {**base, "chat": {"id": -100, "type": "channel"},
                                 "text": draw(TEXTS)}}
    data = draw(CALLBACK_DATA)
    if kind == "steal":  # another user presses the victim's real buttons
        data = draw(st.sampled_from(["1|a|tidak_pernah", "5|a|sgt_jelas", data]))
        chat = {"id": VICTIM, "type": "private"}
    return {"callback_query": {
        "id": str(draw(st.integers(1, 10**9))), "from": user, "chat_instance": "x",
        "data": data, "message": {**base, "chat": chat, "text": "q"}}}


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(updates(), min_size=1, max_size=6))
def test_random_updates_are_handled(bot: BotInThread, batch: list[dict[str, Any]]) -> None:
    before = victim_answers(bot.db_path)
    probe = TelegramUser(bot.api, PROBE)

    async def send_and_probe() -> None:
        for update in batch:
            bot.api.send_update(update)
        await probe.send("/bantuan", expect="/lanjut", timeout=10)

    bot.run(send_and_probe())
    errors = bot.errors.records  # type: ignore[attr-defined]
    assert not errors, [r.getMessage() for r in errors]
    assert victim_answers(bot.db_path) == before
