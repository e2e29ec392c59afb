"""Run the real PTB Application against the fake Bot API, and act as a Telegram user."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from bot.app import build_application
from bot.services import AnyApplication, Services, open_services
from core.config import Settings, load_settings
from tests.conftest import SECRET
from tests.support import walker
from tests.support.fake_bot_api import BotMessage, FakeBotApi

Startup = Callable[[AnyApplication], Awaitable[None]]


def settings_for(api: FakeBotApi, db_path: Path, **extra: object) -> Settings:
    return load_settings(
        telegram_bot_token=api.token,
        telegram_base_url=api.base_url,
        database_path=db_path,
        spi_secret_key=SECRET.decode(),
        **extra,
    )


@asynccontextmanager
async def running_application(
    settings: Settings, startup: Startup | None = None
) -> AsyncIterator[tuple[Services, AnyApplication]]:
    """The real Application with long polling, started and stopped like `spi-bot run`.

    ``startup`` runs instead of the application's ``post_init`` (e.g. the reminders
    with a test clock)."""
    svc = await open_services(settings)
    app = build_application(svc)
    try:
        async with app:
            if startup is not None:
                await startup(app)
            elif app.post_init is not None:  # as run_polling() does
                await app.post_init(app)
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(poll_interval=0, timeout=1)
            try:
                yield svc, app
            finally:
                await app.updater.stop()
                await app.stop()
                if app.post_stop is not None:  # as run_polling() does
                    await app.post_stop(app)
    finally:
        await svc.close()


@asynccontextmanager
async def running_bot(settings: Settings) -> AsyncIterator[Services]:
    async with running_application(settings) as (svc, _app):
        yield svc


class TelegramUser:
    """A respondent in a private chat (chat id = user id, as in Telegram)."""

    def __init__(self, api: FakeBotApi, user_id: int, language_code: str = "id") -> None:
        self.api = api
        self.user_id = user_id
        self.language_code = language_code

    def screen(self) -> BotMessage:
        """The newest message that has buttons, else the newest message."""
        messages = self.api.chat_messages(self.user_id)
        with_keys = [m for m in messages if FakeBotApi.buttons(m)]
        return with_keys[-1] if with_keys else messages[-1]

    def texts(self) -> list[str]:
        return [m.text or "" for m in self.api.chat_messages(self.user_id)]

    def _fingerprint(self) -> tuple[int, int, int]:
        messages = self.api.chat_messages(self.user_id)
        if not messages:
            return (0, 0, 0)
        return (len(messages), messages[-1].message_id, sum(m.edits for m in messages))

    async def _settle(
        self, before: tuple[int, int, int], what: str, expect: str | None, timeout: float
    ) -> BotMessage:
        await self.api.wait_for(
            lambda: self._fingerprint() != before,
            timeout=timeout,
            message=f"{what} changed nothing",
        )
        if expect is not None:
            await self.api.wait_for(
                lambda: any(expect in t for t in self.texts()[-3:]),
                timeout=timeout,
                message=f"no message containing {expect!r}; last: {self.texts()[-3:]}",
            )
        return self.screen()

    async def send(self, text: str, expect: str | None = None, timeout: float = 5.0) -> BotMessage:
        before = self._fingerprint()
        self.api.send_text(self.user_id, text, language_code=self.language_code)
        return await self._settle(before, f"sending {text!r}", expect, timeout)

    async def press(
        self, label: str, expect: str | None = None, timeout: float = 5.0
    ) -> BotMessage:
        mark = self.api.mark()
        before = self._fingerprint()
        self.api.press_label(self.user_id, label)
        await self.api.wait_for_call("answerCallbackQuery", after=mark, timeout=timeout)
        return await self._settle(before, f"pressing {label!r}", expect, timeout)

    async def press_button(
        self, button: walker.ButtonPair, expect: str | None = None, timeout: float = 5.0
    ) -> BotMessage:
        """Press a button of the current screen by its callback data."""
        mark = self.api.mark()
        before = self._fingerprint()
        self.api.press_button(self.user_id, self.screen().message_id, button[1])
        await self.api.wait_for_call("answerCallbackQuery", after=mark, timeout=timeout)
        return await self._settle(before, f"pressing {button[0]!r}", expect, timeout)

    async def type(self, text: str) -> BotMessage:
        return await self.send(text)

    def current(self) -> walker.Screen:
        """The current screen for the walker: its buttons as (label, callback data)."""
        message = self.screen()
        buttons = tuple((label, data or "") for label, data in FakeBotApi.buttons(message))
        return walker.Screen(message.text or "", buttons)

    def labels(self) -> list[str]:
        return [label for label, _ in FakeBotApi.buttons(self.screen())]

    async def answer_all(self, choose: walker.Choose = walker.never_or_first) -> int:
        """Answer every question up to the review screen (see tests.support.walker)."""
        return await walker.answer_all(self, choose)


async def start_as_service_user(
    user: TelegramUser, unit_query: str = "kesehatan", unit_label: str = "Dinas Kesehatan"
) -> None:
    """From /start to the first question, as an eligible service user of one unit."""
    await user.send("/start", expect="sukarela")
    await user.press("setuju", expect="kelompok")
    await user.press("Pengguna layanan", expect="Unit mana")
    await user.send(unit_query, expect="cocok")
    await user.press(unit_label, expect="12 bulan")
    await user.press("Ya, pernah")
    await user.press("Saya urus sendiri", expect="Pertanyaan 1 dari")
