"""Closing a survey period and purging what it no longer needs (docs/PRIVACY.md).

Closing freezes the period: no new response starts or completes in it, so its
published figures are final. ``retention_days`` later, the chat-side records and
everything that could still tie an answer to a person are purged:

* contacts and sessions (chat ids, languages, conversation state);
* abandoned (in-progress) responses of the period, with their answers;
* broadcast deliveries (who was messaged when) and processed update ids;
* the pseudonym on completed responses of the period, replaced by a random key, so
  that not even the key holder can find a person's answers any more.

Aggregates, scores and the de-identified answers stay.
"""

from __future__ import annotations

import datetime as dt
import secrets

from pydantic import BaseModel

from core.storage import Transaction


class PeriodState(BaseModel):
    period: str
    closed_on: dt.date
    purge_after: dt.date
    purged_on: dt.date | None = None


class PurgeCounts(BaseModel):
    period: str
    contacts: int = 0
    sessions: int = 0
    abandoned: int = 0
    deliveries: int = 0
    events: int = 0
    dissociated: int = 0


async def period_state(tx: Transaction, period: str) -> PeriodState | None:
    row = await tx.fetchone(
        "SELECT period, closed_on, purge_after, purged_on FROM periods WHERE period = ?",
        (period,),
    )
    return PeriodState.model_validate(dict(row)) if row is not None else None


async def is_closed(tx: Transaction, period: str) -> bool:
    return await period_state(tx, period) is not None


async def close_period(
    tx: Transaction, period: str, today: dt.date, retention_days: int
) -> PeriodState:
    """Close ``period`` (idempotent: closing twice keeps the first date)."""
    existing = await period_state(tx, period)
    if existing is not None:
        return existing
    state = PeriodState(
        period=period,
        closed_on=today,
        purge_after=today + dt.timedelta(days=retention_days),
    )
    await tx.execute(
        "INSERT INTO periods(period, closed_on, purge_after) VALUES (?, ?, ?)",
        (period, state.closed_on.isoformat(), state.purge_after.isoformat()),
    )
    return state


async def purge_due(tx: Transaction, today: dt.date) -> list[PurgeCounts]:
    """Purge every closed period whose retention has run out; idempotent."""
    rows = await tx.fetchall(
        "SELECT period FROM periods WHERE purged_on IS NULL AND purge_after <= ? "
        "ORDER BY period",
        (today.isoformat(),),
    )
    return [await _purge(tx, str(row["period"]), today) for row in rows]


async def _purge(tx: Transaction, period: str, today: dt.date) -> PurgeCounts:
    counts = PurgeCounts(period=period)
    counts.contacts = await tx.execute("DELETE FROM contacts")
    counts.sessions = await tx.execute("DELETE FROM sessions")
    counts.abandoned = await tx.execute(
        "DELETE FROM responses WHERE period = ? AND status = 'in_progress'", (period,)
    )
    counts.deliveries = await tx.execute("DELETE FROM deliveries")
    counts.events = await tx.execute("DELETE FROM processed_events")
    for row in await tx.fetchall(
        "SELECT id FROM responses WHERE period = ? AND status = 'completed'", (period,)
    ):
        await tx.execute(
            "UPDATE responses SET respondent_key = ? WHERE id = ?",
            (secrets.token_hex(32), row["id"]),
        )
        counts.dissociated += 1
    await tx.execute(
        "UPDATE periods SET purged_on = ? WHERE period = ?", (today.isoformat(), period)
    )
    return counts
