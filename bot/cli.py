"""Command line: `spi-bot [run|console|check-questionnaire|export|backup]`.

With no sub-command it runs the main job: the Telegram bot when a token is
configured, otherwise the same survey in the terminal on a local database.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from core.config import Settings, SettingsError, load_settings
from core.questionnaire import DataFileError, load_questionnaire
from core.storage import StorageError

log = logging.getLogger("spi-bot")


class RedactSecrets(logging.Filter):
    """Keep the bot token and the pseudonym key out of every log line and traceback."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[REDACTED]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._clean(record.getMessage())
        record.args = None
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self._clean(formatted)
            record.exc_info = None
        return True


def setup_logging(settings: Settings) -> None:
    secrets = [
        s.get_secret_value()
        for s in (
            settings.telegram_bot_token,
            settings.spi_secret_key,
            settings.webhook_secret,
            settings.whatsapp_token,
            settings.whatsapp_app_secret,
            settings.whatsapp_verify_token,
        )
        if s is not None
    ]
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # httpx logs every request URL, and Bot API URLs contain the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spi-bot", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the Telegram bot (long polling)")
    run.add_argument("--webhook", action="store_true", help="receive updates by webhook")
    sub.add_parser("console", help="take the survey in the terminal")
    check = sub.add_parser("check-questionnaire", help="validate a questionnaire file")
    check.add_argument("file", type=Path)
    export = sub.add_parser("export", help="export scores and answers")
    export.add_argument("--format", choices=("xlsx", "csv"), default="xlsx")
    export.add_argument("--out", type=Path, required=True)
    backup = sub.add_parser("backup", help="copy the live database (online backup)")
    backup.add_argument("file", type=Path)
    return parser


def check_questionnaire(path: Path) -> int:
    try:
        questionnaire = load_questionnaire(path)
    except DataFileError as exc:
        print(f"{exc.path}: invalid questionnaire", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue.field}: {issue.reason}", file=sys.stderr)
        return 1
    counts = ", ".join(
        f"{g.code} {len(questionnaire.questions_for(g.code))}" for g in questionnaire.groups
    )
    print(f"{path}: OK (period {questionnaire.period}; questions: {counts})")
    return 0


async def run_console_job(settings: Settings) -> None:
    from bot.console import run_console
    from bot.services import local_secret_key, open_services

    key = None if settings.spi_secret_key else local_secret_key(settings.database_path)
    svc = await open_services(settings, secret_key=key)
    try:
        await run_console(svc.engine)
    finally:
        await svc.close()


def run_telegram(settings: Settings, webhook: bool) -> None:
    from bot.app import build_application
    from bot.services import open_services

    settings.secret_key()  # fail before connecting when the key is missing
    if settings.whatsapp_enabled:
        settings.whatsapp_secrets()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    svc = loop.run_until_complete(open_services(settings))
    application = build_application(svc)
    whatsapp = None
    try:
        if settings.whatsapp_enabled:  # same process and event loop as the Telegram bot
            from bot.whatsapp.runner import WhatsAppRuntime

            whatsapp = WhatsAppRuntime(svc)
            loop.run_until_complete(whatsapp.start())
        if webhook:
            if not settings.webhook_url or settings.webhook_secret is None:
                raise SettingsError("WEBHOOK_URL and WEBHOOK_SECRET are required for --webhook")
            application.run_webhook(
                listen=settings.webhook_listen,
                port=settings.webhook_port,
                webhook_url=settings.webhook_url,
                secret_token=settings.webhook_secret.get_secret_value(),
                close_loop=False,
            )
        else:
            application.run_polling(close_loop=False)
    finally:
        if whatsapp is not None:
            loop.run_until_complete(whatsapp.stop())
        loop.run_until_complete(svc.close())
        loop.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        sys.exit(_main(args))
    except (SettingsError, DataFileError, StorageError) as exc:
        print(f"spi-bot: cannot start: {exc}", file=sys.stderr)
        sys.exit(2)


def _main(args: argparse.Namespace) -> int:
    if args.command == "check-questionnaire":
        return check_questionnaire(args.file)
    settings = load_settings()
    setup_logging(settings)
    command = args.command
    if command is None:
        command = "run" if settings.telegram_bot_token or settings.whatsapp_enabled else "console"
    if command == "console":
        asyncio.run(run_console_job(settings))
    elif command == "run":
        if settings.telegram_bot_token is None and not settings.whatsapp_enabled:
            raise SettingsError(
                "TELEGRAM_BOT_TOKEN (or WHATSAPP_PHONE_ID and WHATSAPP_TOKEN): required for 'run'"
            )
        if settings.telegram_bot_token is None:
            from bot.whatsapp.runner import run_whatsapp

            asyncio.run(run_whatsapp(settings))
        else:
            run_telegram(settings, webhook=args.command == "run" and bool(args.webhook))
    elif command == "export":
        from bot.export_cli import export_command

        return asyncio.run(export_command(settings, args.format, args.out))
    elif command == "backup":
        from core.storage import Storage

        async def backup() -> None:
            storage = await Storage.open(settings.database_path)
            try:
                await storage.backup(args.file)
            finally:
                await storage.close()

        asyncio.run(backup())
        print(f"backup written to {args.file}")
    return 0
