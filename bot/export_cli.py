"""`spi-bot export`: scores, answers and a codebook for auditors; free text apart.

    spi-bot export --out FILE [--format xlsx|csv] [--open-period]
    spi-bot export --free-text FILE

It needs no SPI_SECRET_KEY: the export carries no pseudonym and computes none.
The database is first opened as usual (integrity check, schema migrations) and
the export is recorded in the audit log; the tables are then read through a
separate read-only connection in one deferred transaction: a consistent
snapshot that takes no write lock, so a running bot keeps recording answers
while a large export is written. Files are created with mode 0600.
"""

from __future__ import annotations

import json
import os
import pwd
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from bot.services import load_survey
from core.config import Settings
from core.export import (
    FREE_TEXT_ACTION,
    ExportData,
    Table,
    export_rows,
    free_text_rows,
    record_export,
    write_csv,
    write_csv_table,
    write_tables,
    write_xlsx,
)
from core.model import utcnow
from core.retention import is_closed
from core.storage import Storage, Transaction

FORMATS = ("xlsx", "csv")


def cli_actor() -> str:
    """Who runs the export, as the audit log records it: ``cli:<unix user>``."""
    uid = os.getuid()
    try:
        return f"cli:{pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"cli:uid{uid}"


@asynccontextmanager
async def read_snapshot(path: Path) -> AsyncIterator[Transaction]:
    """A read-only transaction: every query sees the same committed state."""
    db = await aiosqlite.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        await db.execute("BEGIN")
        try:
            yield Transaction(db)
        finally:
            await db.execute("ROLLBACK")
    finally:
        await db.close()


async def export_command(
    settings: Settings,
    fmt: str,
    out: Path | None,
    *,
    free_text: Path | None = None,
    open_period: bool = False,
    actor: str | None = None,
) -> int:
    """Write the export and/or the free-text file, one summary line each; 0 on success."""
    if fmt not in FORMATS:
        print(f"spi-bot export: unknown format '{fmt}' (use xlsx or csv)", file=sys.stderr)
        return 2
    if out is None and free_text is None:
        print("spi-bot export: give --out FILE, --free-text FILE or both", file=sys.stderr)
        return 2
    if not settings.database_path.exists():
        print(
            f"spi-bot export: database {settings.database_path} not found (set DATABASE_PATH)",
            file=sys.stderr,
        )
        return 1
    questionnaire, units = load_survey(settings)
    period = questionnaire.period
    who = actor or cli_actor()

    storage = await Storage.open(settings.database_path)  # checks and migrates
    try:
        async with storage.transaction() as tx:  # recorded before anything is read
            now = utcnow()
            microdata = open_period or await is_closed(tx, period)
            if out is not None:
                await record_export(tx, who, now, period, fmt, microdata, open_period)
            if free_text is not None:
                detail = {"period": period, "format": _free_text_format(free_text)}
                await tx.audit(who, FREE_TEXT_ACTION, json.dumps(detail), now)
    finally:
        await storage.close()

    data: ExportData | None = None
    texts: Table | None = None
    async with read_snapshot(settings.database_path) as tx:
        if out is not None:
            data = await export_rows(
                tx,
                questionnaire,
                units,
                period,
                open_period=open_period,
                margin=settings.sample_margin_of_error,
            )
        if free_text is not None:
            texts = await free_text_rows(tx, questionnaire, period)

    try:
        if data is not None and out is not None:
            _report(data, _write_export(data, fmt, out))
        if texts is not None and free_text is not None:
            _write_free_text(texts, free_text)
            print(
                f"free text period {period}: {len(texts.rows)} answers, "
                f"{sum(1 for r in texts.rows if r[5])} with automatic redactions -> "
                f"{free_text} (review every line by hand before passing it on)"
            )
    except OSError as exc:
        print(f"spi-bot export: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _write_export(data: ExportData, fmt: str, out: Path) -> list[Path]:
    if fmt == "xlsx":
        write_xlsx(data, out)
        return [out]
    return write_csv(data, out)


def _free_text_format(path: Path) -> str:
    return "csv" if path.suffix.lower() == ".csv" else "xlsx"


def _write_free_text(table: Table, path: Path) -> None:
    if _free_text_format(path) == "csv":
        write_csv_table(table, path)
    else:
        write_tables([table], path)


def _report(data: ExportData, written: list[Path]) -> None:
    if data.answers is None:
        answers = (
            f"no answers (period {data.period} is open: close it with spi-bot close-period, "
            "or pass --open-period)"
        )
    else:
        answers = f"{data.responses} responses, {len(data.answers.rows)} answers"
        if data.withheld:
            answers += f", {data.withheld} withheld (groups under k)"
    print(
        f"export period {data.period}: {len(data.units.rows)} units, {answers} -> "
        f"{', '.join(str(p) for p in written)}"
    )
