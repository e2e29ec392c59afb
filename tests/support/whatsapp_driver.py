"""Run the real WhatsApp channel against the fake Cloud API, and act as a WhatsApp user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bot.services import open_services
from bot.whatsapp.runner import WhatsAppRuntime
from core.config import Settings, load_settings
from tests.conftest import SECRET
from tests.support import walker
from tests.support.fake_whatsapp_api import FakeWhatsAppApi, Sent

VERIFY_TOKEN = "wa-verify-token-0123"


def settings_for(api: FakeWhatsAppApi, db_path: Path, **extra: object) -> Settings:
    return load_settings(
        whatsapp_phone_id=api.phone_id,
        whatsapp_token=api.token,
        whatsapp_app_secret=api.app_secret.decode(),
        whatsapp_verify_token=VERIFY_TOKEN,
        whatsapp_api_url=api.base_url,
        whatsapp_port=0,  # any free port
        database_path=db_path,
        spi_secret_key=SECRET.decode(),
        **extra,
    )


@asynccontextmanager
async def running_whatsapp(
    api: FakeWhatsAppApi, settings: Settings, pause: float = 0.3
) -> AsyncIterator[WhatsAppRuntime]:
    """The channel as `spi-bot run` starts it, its webhook known to the fake."""
    svc = await open_services(settings)
    runtime = WhatsAppRuntime(svc, pause=pause)
    try:
        await runtime.start()
        api.webhook_url = runtime.url
        yield runtime
    finally:
        await runtime.stop()
        await svc.close()


class WhatsAppUser:
    """A respondent writing to the business number."""

    def __init__(self, api: FakeWhatsAppApi, runtime: WhatsAppRuntime, wa_id: str) -> None:
        self.api = api
        self.runtime = runtime
        self.wa_id = wa_id

    def messages(self) -> list[Sent]:
        return self.api.to(self.wa_id)

    def screen(self) -> Sent:
        """The newest message with buttons or a list, else the newest message."""
        messages = self.messages()
        interactive = [m for m in messages if m.choices()]
        return interactive[-1] if interactive else messages[-1]

    def texts(self, last: int = 4) -> list[str]:
        return [m.text for m in self.messages()[-last:]]

    async def deliver(self, message: dict[str, object]) -> list[Sent]:
        """Deliver one user message; returns what the bot sent back."""
        before = len(self.messages())
        status = await self.api.deliver(self.api.update(self.wa_id, message))
        assert status == 200, status
        await self.runtime.channel.drain()
        return self.messages()[before:]

    async def send(self, text: str, expect: str | None = None) -> list[Sent]:
        replies = await self.deliver(self.api.text(text))
        self._expect(replies, expect, f"sending {text!r}")
        return replies

    def choice(self, label: str) -> tuple[str, str]:
        screen = self.screen()
        for reply_id, title, description in screen.choices():
            if label in title or label in description:
                return reply_id, title
        raise AssertionError(f"no choice {label!r} in {screen.choices()}")

    async def press(self, label: str, expect: str | None = None) -> list[Sent]:
        reply_id, title = self.choice(label)
        return await self.press_button((title, reply_id), expect)

    async def press_button(
        self, button: walker.ButtonPair, expect: str | None = None
    ) -> list[Sent]:
        """Press a reply button or list row of the current screen as ``(title, reply id)``."""
        title, reply_id = button
        kind = "button" if self.screen().kind == "button" else "list"
        replies = await self.deliver(self.api.reply(kind, reply_id, title))
        self._expect(replies, expect, f"pressing {title!r}")
        return replies

    async def type(self, text: str) -> list[Sent]:
        return await self.send(text)

    def current(self) -> walker.Screen:
        """The current screen for the walker: its choices as (title, reply id)."""
        screen = self.screen()
        return walker.Screen(screen.text, tuple((t, i) for i, t, _ in screen.choices()))

    def labels(self) -> list[str]:
        return [title for _, title, _ in self.screen().choices()]

    @staticmethod
    def _expect(replies: list[Sent], expect: str | None, what: str) -> None:
        assert replies, f"{what}: no reply"
        if expect is not None:
            assert any(expect in r.text for r in replies), (
                f"{what}: no reply containing {expect!r}: {[r.text for r in replies]}"
            )

    async def answer_all(self, choose: walker.Choose = walker.never_or_first) -> int:
        """Answer every question up to the review screen (see tests.support.walker)."""
        return await walker.answer_all(self, choose)


GROUPS = {
    "eksternal": ("Pengguna layanan", ["Ya, pernah", "Saya urus sendiri"]),
    "internal": ("Pegawai unit", ["Ya, ASN", "Lebih dari 2 tahun"]),
    "eksper": ("Ahli", ["Akademisi", "Ya"]),
}


async def start_survey(
    user: WhatsAppUser,
    group: str = "eksternal",
    unit_query: str = "kesehatan",
    unit_label: str = "Dinas Kesehatan",
) -> None:
    """From /start to the first question, as an eligible member of ``group``."""
    label, screening = GROUPS[group]
    await user.send("/start", expect="sukarela")
    await user.press("setuju", expect="kelompok")
    await user.press(label)
    await user.send(unit_query, expect="cocok")
    await user.press(unit_label)  # the unit first, then screening about that unit
    for answer in screening:
        await user.press(answer)
    assert "Pertanyaan 1 dari" in user.screen().text
