"""`spi-bot export --format xlsx|csv --out FILE`: scores and answers for auditors.

It needs no SPI_SECRET_KEY: the export shows the stored pseudonyms and never
computes one. The database is first opened as usual (integrity check, schema
migrations), then read through a separate read-only connection in one
deferred transaction: a consistent snapshot that takes no write lock, so a
running bot keeps recording answers while a large export is written.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from bot.services import load_survey
from core.config import Settings
from core.export import ExportData, export_rows, write_csv, write_xlsx
from core.storage import Storage, Transaction

FORMATS = ("xlsx", "csv")


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


async def collect(settings: Settings) -> ExportData:
    questionnaire, units = load_survey(settings)
    storage = await Storage.open(settings.database_path)  # checks and migrates
    await storage.close()
    async with read_snapshot(settings.database_path) as tx:
        return await export_rows(tx, questionnaire, units, questionnaire.period)


async def export_command(settings: Settings, fmt: str, out: Path) -> int:
    """Write the export and print one summary line; 0 on success."""
    if fmt not in FORMATS:
        print(f"spi-bot export: unknown format '{fmt}' (use xlsx or csv)", file=sys.stderr)
        return 2
    if not settings.database_path.exists():
        print(
            f"spi-bot export: database {settings.database_path} not found (set DATABASE_PATH)",
            file=sys.stderr,
        )
        return 1
    data = await collect(settings)
    if fmt == "xlsx":
        out.parent.mkdir(parents=True, exist_ok=True)
        write_xlsx(data, out)
        written = [out]
    else:
        written = write_csv(data, out)
    print(
        f"export period {data.period}: {len(data.units.rows)} units, {data.responses} "
        f"responses, {len(data.answers.rows)} answers -> {', '.join(str(p) for p in written)}"
    )
    return 0
