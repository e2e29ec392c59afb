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
        for s in (settings.telegram_bot_token, settings.spi_secret_key, settings.webhook_secret)
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
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    svc = loop.run_until_complete(open_services(settings))
    application = build_application(svc)
    try:
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
        command = "run" if settings.telegram_bot_token else "console"
    if command == "console":
        asyncio.run(run_console_job(settings))
    elif command == "run":
        if settings.telegram_bot_token is None:
            raise SettingsError("TELEGRAM_BOT_TOKEN: required for 'run'")
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
