"""Command line: `spi-bot [run|console|check-questionnaire|export|backup|item-rates|flags]`.

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

from bot.services import AnyApplication, StartupError, not_utf8
from core.config import Settings, SettingsError, load_settings
from core.questionnaire import DataFileError, label_issues, load_questionnaire
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


# Our own modules log at LOG_LEVEL; every library stays at INFO or above whatever it is.
# At DEBUG, python-telegram-bot logs whole updates (user id, name, free text) and the
# database driver logs every statement with its parameters (answers, invite codes):
# no log level may join a person to an answer.
OWN_LOGGERS = ("spi-bot", "bot", "core")
LIBRARY_FLOOR = logging.INFO


class LibraryFloor(logging.Filter):
    """Drop a library's records below INFO, even from a logger with its own level."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= LIBRARY_FLOOR or record.name.split(".")[0] in OWN_LOGGERS


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
    level = logging.getLevelNamesMapping()[settings.log_level]
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(LibraryFloor())
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, LIBRARY_FLOOR))
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
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
    export = sub.add_parser("export", help="export scores and answers (docs/EXPORT.md)")
    export.add_argument("--format", choices=("xlsx", "csv"), default="xlsx")
    export.add_argument("--out", type=Path, help="the export (XLSX file or CSV files)")
    export.add_argument(
        "--free-text", type=Path, help="free-text answers, redacted, for manual review"
    )
    export.add_argument(
        "--open-period", action="store_true", help="include answers of a period not yet closed"
    )
    backup = sub.add_parser("backup", help="copy the live database (online backup)")
    backup.add_argument("file", type=Path)
    close = sub.add_parser("close-period", help="freeze a survey period; schedule its purge")
    close.add_argument("period")
    sub.add_parser("purge", help="purge chat-side records of periods past their retention")
    rates = sub.add_parser(
        "item-rates", help='per item: shares of "Tidak tahu" and "Tidak ingin menjawab"'
    )
    rates.add_argument("--unit", help="one unit's code (default: all units)")
    flags = sub.add_parser("flags", help="review data-quality flags")
    flag_commands = flags.add_subparsers(dest="flags_command", required=True)
    flag_list = flag_commands.add_parser("list", help="flagged responses of the period")
    flag_list.add_argument("--unit", help="one unit's code (default: all units)")
    for decision, text in (("unflag", "clear a response's flags"), ("keep", "keep them")):
        review = flag_commands.add_parser(decision, help=text + " (logged with the reason)")
        review.add_argument("response_id", type=int)
        review.add_argument("--reason", required=True)
    add_fieldwork_commands(sub)
    return parser


def add_fieldwork_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """population import, links, sample, progress (docs/FIELDWORK.md)."""
    population = sub.add_parser("population", help="population frames per unit and group")
    population_sub = population.add_subparsers(dest="population_command", required=True)
    population_import = population_sub.add_parser("import", help="load an xlsx or csv file")
    population_import.add_argument("file", type=Path)
    links = sub.add_parser("links", help="a unit's invitation link and QR code (offline)")
    links.add_argument("--unit", required=True, help="unit code, or 'all'")
    links.add_argument("--group", default="eksternal")
    links.add_argument("--out", type=Path, default=Path("."), help="folder for the PNG files")
    links.add_argument("--poster", action="store_true", help="also an A4 poster PNG")
    sample = sub.add_parser("sample", help="draw a sample with one single-use link each")
    sample.add_argument("--roster", type=Path, required=True)
    sample.add_argument("--unit", required=True)
    sample.add_argument("--group", default="internal")
    sample.add_argument("--n", type=int, required=True)
    sample.add_argument("--seed", required=True)
    sample.add_argument("--out", type=Path, default=None)
    sample.add_argument(
        "--replace", action="store_true", help="withdraw unused links of an earlier draw"
    )
    progress = sub.add_parser("progress", help="responses / target / population per unit")
    progress.add_argument("--limit", type=int, default=None, help="show the first N rows")
    progress.add_argument("--unit", action="append", default=None, help="only this unit")


def check_questionnaire(path: Path) -> int:
    try:
        questionnaire = load_questionnaire(path)
    except UnicodeDecodeError as exc:
        print(f"{not_utf8(path, exc)}: invalid questionnaire", file=sys.stderr)
        return 1
    except DataFileError as exc:
        print(f"{exc.path}: invalid questionnaire", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue.field}: {issue.reason}", file=sys.stderr)
        return 1
    too_long = label_issues(questionnaire)
    if too_long:
        print(f"{path}: labels too long for a channel", file=sys.stderr)
        for issue in too_long:
            print(f"  {issue.field}: {issue.reason}", file=sys.stderr)
        return 1
    counts = ", ".join(
        f"{g.code} {len(questionnaire.questions_for(g.code))}" for g in questionnaire.groups
    )
    print(f"{path}: OK (period {questionnaire.period}; questions: {counts})")
    return 0


async def run_console_job(settings: Settings) -> None:
    from bot.console import run_console
    from bot.services import local_secret_key, open_services, tryout_database

    database = tryout_database(settings.database_path)
    key = None if settings.spi_secret_key else local_secret_key(database)
    svc = await open_services(settings, secret_key=key, database_path=database)
    try:
        await run_console(svc.engine, database=database)
    finally:
        await svc.close()


async def check_telegram(application: AnyApplication, settings: Settings) -> None:
    """getMe before anything else, so a bad token or no network is one clear line.

    The Bot stays initialised; PTB's own start-up (``Application.initialize`` inside
    run_polling / run_webhook) then finds it ready and goes on as usual.
    """
    from telegram.error import InvalidToken, NetworkError, TelegramError

    where = settings.telegram_base_url
    bot = application.bot
    try:
        await bot.initialize()
        return
    except InvalidToken:
        # PTB's own message repeats the token: never shown.
        problem = (
            f"TELEGRAM_BOT_TOKEN: rejected by the Bot API at {where} (401 Unauthorized); "
            "copy the token again from @BotFather"
        )
    except NetworkError as exc:
        problem = f"cannot reach the Bot API at {where} (TELEGRAM_BASE_URL): {exc.message}"
    except TelegramError as exc:
        problem = f"the Bot API at {where} refused getMe: {exc.message}"
    await bot.shutdown()
    token = settings.telegram_bot_token
    if token is not None:
        problem = problem.replace(token.get_secret_value(), "[REDACTED]")
    raise StartupError(problem)


def run_telegram(settings: Settings, webhook: bool) -> None:
    from bot.app import build_application
    from bot.http import limit_webhook_requests
    from bot.services import open_services

    settings.secret_key()  # fail before connecting when the key is missing
    if webhook and (not settings.webhook_url or settings.webhook_secret is None):
        raise SettingsError("WEBHOOK_URL and WEBHOOK_SECRET are required for --webhook")
    if settings.whatsapp_enabled:
        settings.whatsapp_secrets()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        svc = loop.run_until_complete(open_services(settings))
        whatsapp = None
        try:
            application = build_application(svc)
            loop.run_until_complete(check_telegram(application, settings))
            if settings.whatsapp_enabled:  # same process and event loop as the Telegram bot
                from bot.whatsapp.runner import WhatsAppRuntime

                whatsapp = WhatsAppRuntime(svc)
                loop.run_until_complete(whatsapp.start())
            if webhook:
                assert settings.webhook_url and settings.webhook_secret is not None
                limit_webhook_requests()
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
    finally:
        loop.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    what = f"{args.command} failed" if args.command in ("backup", "export") else "cannot start"
    try:
        code = _main(args)
    except (SettingsError, DataFileError, StorageError, StartupError) as exc:
        print(f"spi-bot: {what}: {exc}", file=sys.stderr)
        code = 2
    except OSError as exc:  # anything the checks above did not foresee, still one line
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"spi-bot: {what}: {where}{exc.strerror or exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:  # Ctrl-C: leave at once, quietly
        print(file=sys.stderr)
        code = 130
    sys.exit(code)


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

        return asyncio.run(
            export_command(
                settings,
                args.format,
                args.out,
                free_text=args.free_text,
                open_period=args.open_period,
            )
        )
    elif command == "close-period":
        from bot.retention_cli import close_period_command

        return asyncio.run(close_period_command(settings, args.period))
    elif command == "purge":
        from bot.retention_cli import purge_command

        return asyncio.run(purge_command(settings))
    elif command == "backup":
        from core.storage import Storage

        async def backup() -> None:
            # An existing database only: a mistyped path is an error, not an empty backup.
            storage = await Storage.open(settings.database_path, existing=True)
            try:
                await storage.backup(args.file)
            finally:
                await storage.close()

        asyncio.run(backup())
        print(f"backup written to {args.file}")
    elif command in ("item-rates", "flags"):
        from bot import quality_cli

        if command == "item-rates":
            return asyncio.run(quality_cli.item_rates_command(settings, args.unit))
        if args.flags_command == "list":
            return asyncio.run(quality_cli.flags_list_command(settings, args.unit))
        return asyncio.run(
            quality_cli.flags_review_command(
                settings, args.response_id, args.flags_command, args.reason
            )
        )
    elif command in ("population", "links", "sample", "progress"):
        return run_fieldwork_command(settings, args)
    return 0


def run_fieldwork_command(settings: Settings, args: argparse.Namespace) -> int:
    from bot import fieldwork_cli as fw

    if args.command == "population":
        return asyncio.run(fw.population_import(settings, args.file))
    if args.command == "links":
        return asyncio.run(fw.links(settings, args.unit, args.group, args.out, args.poster))
    if args.command == "sample":
        return asyncio.run(
            fw.sample(
                settings,
                args.roster,
                args.unit,
                args.group,
                args.n,
                args.seed,
                args.out,
                args.replace,
            )
        )
    return asyncio.run(fw.progress_command(settings, args.limit, args.unit))
