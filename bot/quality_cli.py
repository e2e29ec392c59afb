"""`spi-bot item-rates` and `spi-bot flags list|unflag|keep`: data quality for admins.

Reads go through a read-only snapshot (as the export does), so a running bot
keeps recording answers. A review decision is one short write transaction that
also appends to the audit log.
"""

from __future__ import annotations

import getpass
import sys

from bot.export_cli import read_snapshot
from bot.services import load_survey
from core.aggregates import ReviewDecision, ReviewError, review_flag
from core.config import Settings
from core.model import utcnow
from core.quality import flagged_responses, nonresponse_rates
from core.scoring import K_ANONYMITY
from core.storage import Storage


def _percent(count: int, n: int) -> str:
    return f"{100 * count / n:5.1f} %" if n >= K_ANONYMITY else "    –  "


async def _ready(settings: Settings, unit: str | None, command: str) -> bool:
    """The database exists (then checked and migrated) and the unit is known."""
    if not settings.database_path.exists():
        print(
            f"spi-bot {command}: database {settings.database_path} not found (set DATABASE_PATH)",
            file=sys.stderr,
        )
        return False
    _, units = load_survey(settings)
    if unit is not None and units.get(unit) is None:
        print(f"spi-bot {command}: unknown unit '{unit}'", file=sys.stderr)
        return False
    storage = await Storage.open(settings.database_path)
    await storage.close()
    return True


async def item_rates_command(settings: Settings, unit: str | None) -> int:
    """Per item: answers, and the shares of "Tidak tahu" and "Tidak ingin menjawab"."""
    if not await _ready(settings, unit, "item-rates"):
        return 1
    questionnaire, _ = load_survey(settings)
    async with read_snapshot(settings.database_path) as tx:
        rates = await nonresponse_rates(tx, questionnaire, questionnaire.period, unit)
    scope = f"unit {unit}" if unit else "all units"
    print(f"period {questionnaire.period}, {scope} (shares hidden under {K_ANONYMITY} answers)")
    print(f"{'item':<18} {'groups':<26} {'n':>6}  {'tidak tahu':>10}  {'tidak ingin menjawab':>20}")
    for qid, item in rates.items():
        question = questionnaire.question(qid)
        groups = ",".join(question.groups) if question else ""
        has_tt = question is not None and question.option("tt") is not None
        dont_know = _percent(item.dont_know, item.n) if has_tt else "    n/a"
        print(
            f"{qid:<18} {groups:<26} {item.n:>6}  {dont_know:>10}  "
            f"{_percent(item.no_answer, item.n):>20}"
        )
    return 0


async def flags_list_command(settings: Settings, unit: str | None) -> int:
    if not await _ready(settings, unit, "flags list"):
        return 1
    questionnaire, _ = load_survey(settings)
    async with read_snapshot(settings.database_path) as tx:
        flagged = await flagged_responses(tx, questionnaire.period, unit)
    print(f"period {questionnaire.period}: {len(flagged)} flagged response(s)")
    for item in flagged:
        counted = "counted" if item.counted else "excluded"
        print(
            f"{item.id:>20}  {item.unit:<16} {item.group:<10} {','.join(item.flags):<28} {counted}"
        )
    return 0


async def flags_review_command(
    settings: Settings, response_id: int, decision: ReviewDecision, reason: str
) -> int:
    """Unflag or keep one response's flags; the decision is appended to the audit log."""
    if not await _ready(settings, None, f"flags {decision}"):
        return 1
    questionnaire, _ = load_survey(settings)
    actor = f"cli:{getpass.getuser()}"
    storage = await Storage.open(settings.database_path)
    try:
        async with storage.transaction() as tx:
            flags = await review_flag(
                tx,
                questionnaire,
                response_id,
                decision,
                actor,
                reason,
                utcnow(),
                sampled_only=settings.sampled_only,
            )
    except ReviewError as exc:
        print(f"spi-bot flags {decision}: {exc}", file=sys.stderr)
        return 1
    finally:
        await storage.close()
    done = "unflagged" if decision == "unflag" else "flags kept"
    print(f"response {response_id}: {done} ({','.join(flags)}); logged as {actor}")
    return 0
