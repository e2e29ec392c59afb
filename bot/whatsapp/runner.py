"""Start and stop the WhatsApp channel inside a running event loop.

With Telegram, it shares the PTB application's loop (bot/cli.py starts it before
polling and stops it after); alone, :func:`run_whatsapp` owns the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from bot.services import Services, open_services
from bot.whatsapp.api import CloudApi
from bot.whatsapp.channel import WhatsAppChannel
from bot.whatsapp.sender import RATE_LIMIT_PAUSE, Template, WhatsAppSender, run_reminders
from bot.whatsapp.webhook import WEBHOOK_PATH, build_webhook
from core.config import Settings, SettingsError

log = logging.getLogger(__name__)


class WhatsAppRuntime:
    """The webhook server, the reply channel and the broadcast sender of one number."""

    def __init__(self, svc: Services, *, pause: float | None = None) -> None:
        settings = svc.settings
        if not settings.whatsapp_phone_id or settings.whatsapp_token is None:
            raise SettingsError("WHATSAPP_PHONE_ID and WHATSAPP_TOKEN: required for WhatsApp")
        self.app_secret, self.verify_token = settings.whatsapp_secrets()
        self.svc = svc
        self.api = CloudApi(
            settings.whatsapp_api_url,
            settings.whatsapp_phone_id,
            settings.whatsapp_token.get_secret_value(),
        )
        self.channel = WhatsAppChannel(svc, self.api)
        template = (
            Template(settings.whatsapp_reminder_template, settings.whatsapp_template_language)
            if settings.whatsapp_reminder_template
            else None
        )
        self.sender = WhatsAppSender(
            svc,
            self.api,
            rate=settings.whatsapp_rate,
            template=template,
            pause=RATE_LIMIT_PAUSE if pause is None else pause,
        )
        self.channel.on_rate_limited = self.sender.hold
        self.port = settings.whatsapp_port
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return f"http://{self.svc.settings.whatsapp_listen}:{self.port}{WEBHOOK_PATH}"

    async def start(self) -> None:
        settings = self.svc.settings
        await self.api.start()
        interrupted = await self.sender.recover()
        if interrupted:
            log.warning(
                "%d deliveries were in flight at the last stop; marked 'unknown'", interrupted
            )
        app = build_webhook(self.channel, self.app_secret, self.verify_token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.whatsapp_listen, settings.whatsapp_port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        self._tasks = [
            asyncio.create_task(self.sender.run(), name="whatsapp-sender"),
            asyncio.create_task(run_reminders(self.svc, self.sender), name="whatsapp-reminders"),
        ]
        log.info("whatsapp webhook listening on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # no new updates from here on
            self._runner = None
        await self.channel.drain()
        self.sender.stop()
        for task in self._tasks:
            if task.get_name() == "whatsapp-reminders":
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.api.close()


async def run_whatsapp(settings: Settings) -> None:
    """`spi-bot run` with WhatsApp only: serve until SIGINT or SIGTERM."""
    settings.secret_key()
    settings.whatsapp_secrets()  # fail before opening anything
    svc = await open_services(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        runtime = WhatsAppRuntime(svc)
        svc.storage.start_background_checkpoints()
        try:
            await runtime.start()
            await stop.wait()
        finally:
            await runtime.stop()
    finally:
        await svc.close()
