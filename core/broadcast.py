"""Broadcast plan and state: one row per broadcast, one delivery row per recipient.

Why rows and not a queue in memory: sending 10,000 messages at Telegram's 30/s
takes minutes, and the bot may crash or be restarted in between. Every delivery
moves ``pending → sending → sent | blocked | failed | unknown | skipped``, and
each move is its own committed transaction, so a restarted bot continues with
the pending rows and never sends a finished one again.

Delivery guarantee (at most once): a row is claimed ('sending', committed)
BEFORE its API call. Telegram has no idempotency key, so a row still 'sending'
after a crash (its answer was never recorded) may or may not have reached the
recipient; :func:`recover_interrupted` turns it into 'unknown' and it is never
resent. Only those in-flight rows (at most the sender's in-flight limit, in
practice one or two) can end without a certain outcome; every other recipient
gets the broadcast exactly once, or is recorded as blocked/failed/skipped.

No pseudonym is stored here: deliveries name the chat (channel, address) like
the contacts table does, and erasing a contact erases its delivery rows.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from core.identity import pseudonym
from core.model import SurveyStatus, iso
from core.storage import Transaction

BroadcastKind = Literal["manual", "reminder"]
BroadcastStatus = Literal["draft", "sending", "done", "cancelled"]
DeliveryStatus = Literal["pending", "sending", "sent", "blocked", "failed", "unknown", "skipped"]
Audience = Literal["all", "not_completed", "started"]

DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = (
    "pending",
    "sending",
    "sent",
    "blocked",
    "failed",
    "unknown",
    "skipped",
)
MAX_TEXT_LENGTH = 3500  # leaves room under Telegram's 4096 for the admin preview's header

_CLAIM_WINDOW = 50  # candidate rows looked at per claim (ineligible ones are skipped)


def stamp(moment: dt.datetime) -> str:
    """UTC ISO time with milliseconds: sortable as text and fine enough for a rate."""
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


class Broadcast(BaseModel):
    id: int
    kind: BroadcastKind
    key: str | None
    message_key: str | None
    audience: Audience
    texts: dict[str, str]
    button: str | None
    status: BroadcastStatus
    created_at: str
    created_by: int | None
    started_at: str | None
    finished_at: str | None

    def text_for(self, locale: str) -> str:
        """The text in the recipient's language, Indonesian when that one is missing."""
        return self.texts.get(locale) or self.texts.get("id") or next(iter(self.texts.values()))


class Delivery(BaseModel):
    """A claimed delivery: what the sender needs for one API call."""

    broadcast_id: int
    channel: str
    address: str
    locale: str
    attempts: int


class Counts(BaseModel):
    pending: int = 0
    sending: int = 0
    sent: int = 0
    blocked: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return sum(getattr(self, status) for status in DELIVERY_STATUSES)

    @property
    def open(self) -> int:
        return self.pending + self.sending


def _broadcast(row: sqlite3.Row) -> Broadcast:
    data = {key: row[key] for key in row.keys()}  # noqa: SIM118 - sqlite3.Row is no Mapping
    data["texts"] = json.loads(str(data["texts"]))
    return Broadcast.model_validate(data)


# -- audience and creation ------------------------------------------------------
@dataclass(frozen=True)
class SurveyProgress:
    """Who has started or finished, derived with the pseudonym key when a reminder
    needs it: contacts never record it, so the database alone cannot tell it."""

    secret_key: bytes
    period: str

    def _key(self, channel: str, address: str) -> str:
        # A private chat's address is its user's id on every channel we speak.
        return pseudonym(self.secret_key, channel, address)

    async def status(self, tx: Transaction, channel: str, address: str) -> SurveyStatus:
        return await tx.survey_status(self._key(channel, address), self.period)

    async def statuses(self, tx: Transaction) -> dict[str, SurveyStatus]:
        """Every pseudonym with a response this period (or one still open)."""
        rows = await tx.fetchall(
            "SELECT respondent_key, MAX(status = 'completed') AS done FROM responses "
            "WHERE period = ? OR status = 'in_progress' GROUP BY respondent_key",
            (self.period,),
        )
        return {r["respondent_key"]: "completed" if r["done"] else "started" for r in rows}

    def wants(self, audience: Audience, status: SurveyStatus) -> bool:
        if audience == "not_completed":
            return status != "completed"
        if audience == "started":
            return status == "started"
        return True


async def audience_rows(
    tx: Transaction, audience: Audience, channels: Collection[str], progress: SurveyProgress
) -> list[sqlite3.Row]:
    """Reachable contacts in the audience, in address order."""
    marks = ", ".join("?" for _ in channels)
    rows = await tx.fetchall(
        f"SELECT channel, address, locale FROM contacts WHERE channel IN ({marks}) "
        "AND active = 1 AND opted_out = 0 ORDER BY channel, address",
        tuple(channels),
    )
    if audience == "all":
        return rows
    statuses = await progress.statuses(tx)
    return [
        r
        for r in rows
        if progress.wants(
            audience, statuses.get(progress._key(r["channel"], r["address"]), "none")
        )
    ]


async def count_audience(
    tx: Transaction, audience: Audience, channel: str, progress: SurveyProgress
) -> int:
    return len(await audience_rows(tx, audience, (channel,), progress))


async def create_draft(
    tx: Transaction,
    *,
    kind: BroadcastKind,
    texts: Mapping[str, str],
    audience: Audience,
    now: dt.datetime,
    key: str | None = None,
    message_key: str | None = None,
    button: str | None = None,
    created_by: int | None = None,
) -> int | None:
    """A broadcast without recipients yet; None when ``key`` already exists."""
    if not texts:
        raise ValueError("a broadcast needs a text")
    changed = await tx.execute(
        "INSERT INTO broadcasts(kind, key, message_key, audience, texts, button, status, "
        "created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, 'draft', ?, ?) "
        "ON CONFLICT(key) DO NOTHING",
        (
            kind,
            key,
            message_key,
            audience,
            json.dumps(dict(texts), ensure_ascii=False),
            button,
            iso(now),
            created_by,
        ),
    )
    if changed != 1:
        return None
    row = await tx.fetchone("SELECT last_insert_rowid() AS id")
    assert row is not None
    return int(row["id"])


async def start_draft(
    tx: Transaction,
    broadcast_id: int,
    channels: Collection[str],
    now: dt.datetime,
    progress: SurveyProgress,
) -> int | None:
    """Fix the audience as delivery rows and start sending; None if not a draft (any more).

    Pressing "send" twice, or after a cancel, changes nothing: only a draft starts.
    """
    row = await tx.fetchone(
        "SELECT audience FROM broadcasts WHERE id = ? AND status = 'draft'", (broadcast_id,)
    )
    if row is None:
        return None
    audience: Audience = row["audience"]
    stamped = stamp(now)
    recipients = await audience_rows(tx, audience, channels, progress)
    await tx.executemany(
        "INSERT INTO deliveries(broadcast_id, channel, address, locale, status, attempts, "
        "updated_at) VALUES (?, ?, ?, ?, 'pending', 0, ?)",
        [(broadcast_id, r["channel"], r["address"], r["locale"], stamped) for r in recipients],
    )
    count = len(recipients)
    await tx.execute(
        "UPDATE broadcasts SET status = 'sending', started_at = ? WHERE id = ?",
        (iso(now), broadcast_id),
    )
    await _finish_if_complete(tx, broadcast_id, now)
    return count


async def create_broadcast(
    tx: Transaction,
    *,
    kind: BroadcastKind,
    texts: Mapping[str, str],
    audience: Audience,
    channels: Collection[str],
    now: dt.datetime,
    progress: SurveyProgress,
    key: str | None = None,
    message_key: str | None = None,
    button: str | None = None,
    created_by: int | None = None,
) -> int | None:
    """Create a broadcast and its deliveries in one transaction; None if ``key`` exists.

    Both rows appear together or not at all, and the UNIQUE key makes a scheduled
    reminder impossible to create twice, even by two start-ups racing.
    """
    broadcast_id = await create_draft(
        tx,
        kind=kind,
        texts=texts,
        audience=audience,
        now=now,
        key=key,
        message_key=message_key,
        button=button,
        created_by=created_by,
    )
    if broadcast_id is None:
        return None
    await start_draft(tx, broadcast_id, channels, now, progress)
    return broadcast_id


async def cancel_draft(tx: Transaction, broadcast_id: int, now: dt.datetime) -> bool:
    changed = await tx.execute(
        "UPDATE broadcasts SET status = 'cancelled', finished_at = ? WHERE id = ? "
        "AND status = 'draft'",
        (iso(now), broadcast_id),
    )
    return changed == 1


async def get_broadcast(tx: Transaction, broadcast_id: int) -> Broadcast | None:
    row = await tx.fetchone("SELECT * FROM broadcasts WHERE id = ?", (broadcast_id,))
    return _broadcast(row) if row else None


async def broadcasts_by_key(tx: Transaction, keys: Collection[str]) -> dict[str, Broadcast]:
    found: dict[str, Broadcast] = {}
    for key in keys:
        row = await tx.fetchone("SELECT * FROM broadcasts WHERE key = ?", (key,))
        if row is not None:
            found[key] = _broadcast(row)
    return found


async def recent_broadcasts(tx: Transaction, limit: int = 5) -> list[Broadcast]:
    rows = await tx.fetchall(
        "SELECT * FROM broadcasts WHERE status IN ('sending', 'done') ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [_broadcast(r) for r in rows]


# -- sending ---------------------------------------------------------------------
async def recover_interrupted(tx: Transaction, now: dt.datetime) -> int:
    """At start-up: rows left 'sending' by a crash become 'unknown' and are never resent.

    Their API call may or may not have reached Telegram; resending could deliver
    twice, so at-most-once wins. Run this before the sender claims anything.
    """
    rows = await tx.fetchall(
        "SELECT DISTINCT broadcast_id FROM deliveries WHERE status = 'sending'"
    )
    changed = await tx.execute(
        "UPDATE deliveries SET status = 'unknown', updated_at = ?, "
        "error = 'interrupted while sending (crash or restart); not resent' "
        "WHERE status = 'sending'",
        (stamp(now),),
    )
    for row in rows:
        await _finish_if_complete(tx, int(row["broadcast_id"]), now)
    return changed


async def claim_next(
    tx: Transaction,
    channel: str,
    now: dt.datetime,
    progress: SurveyProgress,
    skip_addresses: Collection[str] = (),
) -> Delivery | None:
    """Claim the next pending delivery: mark it 'sending' (the caller commits, then sends).

    Eligibility is checked again here, not only when the audience was fixed: a
    contact who opted out, was found blocked, erased their data or completed the
    survey (for reminders) since then is skipped without an API call.
    ``skip_addresses`` holds chats messaged less than a second ago (1 msg/s per chat).
    """
    skip = list(skip_addresses)
    not_in = f" AND d.address NOT IN ({', '.join('?' for _ in skip)})" if skip else ""
    stamped = stamp(now)
    while True:
        rows = await tx.fetchall(
            "SELECT d.broadcast_id, d.channel, d.address, d.locale, d.attempts, b.audience, "
            "c.locale AS contact_locale, c.active, c.opted_out "
            "FROM deliveries d JOIN broadcasts b ON b.id = d.broadcast_id "
            "LEFT JOIN contacts c ON c.channel = d.channel AND c.address = d.address "
            "WHERE d.status = 'pending' AND d.channel = ? AND b.status = 'sending' "
            "AND (d.not_before IS NULL OR d.not_before <= ?)"
            + not_in
            + " ORDER BY d.broadcast_id, d.address LIMIT ?",
            (channel, stamped, *skip, _CLAIM_WINDOW),
        )
        if not rows:
            return None
        for row in rows:
            reason = _ineligible(row["active"], row["opted_out"])
            if reason is None and row["audience"] != "all":
                status = await progress.status(tx, row["channel"], row["address"])
                if not progress.wants(row["audience"], status):
                    # Deliberately vague: the row must not say who completed the survey.
                    reason = "no longer in the audience"
            ids = (row["broadcast_id"], row["channel"], row["address"])
            if reason is not None:
                await tx.execute(
                    "UPDATE deliveries SET status = 'skipped', error = ?, updated_at = ? "
                    "WHERE broadcast_id = ? AND channel = ? AND address = ? AND status = 'pending'",
                    (reason, stamped, *ids),
                )
                await _finish_if_complete(tx, int(row["broadcast_id"]), now)
                continue
            await tx.execute(
                "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, "
                "updated_at = ?, not_before = NULL WHERE broadcast_id = ? AND channel = ? "
                "AND address = ? AND status = 'pending'",
                (stamped, *ids),
            )
            return Delivery(
                broadcast_id=row["broadcast_id"],
                channel=row["channel"],
                address=row["address"],
                locale=row["contact_locale"] or row["locale"],
                attempts=int(row["attempts"]) + 1,
            )


def _ineligible(active: int | None, opted_out: int | None) -> str | None:
    if active is None:
        return "contact erased"
    if not active:
        return "contact inactive (blocked the bot)"
    if opted_out:
        return "opted out"
    return None


async def _settle(
    tx: Transaction,
    delivery: Delivery,
    status: DeliveryStatus,
    now: dt.datetime,
    error: str | None = None,
    not_before: dt.datetime | None = None,
    attempts_delta: int = 0,
) -> bool:
    """Record an outcome, but only for a row still 'sending' (a late answer after a
    restart must not overwrite what recovery decided)."""
    changed = await tx.execute(
        "UPDATE deliveries SET status = ?, updated_at = ?, error = ?, not_before = ?, "
        "attempts = attempts + ? WHERE broadcast_id = ? AND channel = ? AND address = ? "
        "AND status = 'sending'",
        (
            status,
            stamp(now),
            error,
            stamp(not_before) if not_before else None,
            attempts_delta,
            delivery.broadcast_id,
            delivery.channel,
            delivery.address,
        ),
    )
    if status != "pending":
        await _finish_if_complete(tx, delivery.broadcast_id, now)
    return changed == 1


async def mark_sent(tx: Transaction, delivery: Delivery, now: dt.datetime) -> bool:
    return await _settle(tx, delivery, "sent", now)


async def mark_blocked(
    tx: Transaction, delivery: Delivery, now: dt.datetime, error: str | None = None
) -> bool:
    """The user blocked the bot: record it and never message this contact again."""
    await tx.mark_contact_inactive(delivery.channel, delivery.address)
    return await _settle(tx, delivery, "blocked", now, error)


async def mark_failed(tx: Transaction, delivery: Delivery, now: dt.datetime, error: str) -> bool:
    return await _settle(tx, delivery, "failed", now, error)


async def mark_unknown(tx: Transaction, delivery: Delivery, now: dt.datetime, error: str) -> bool:
    """The request may have reached Telegram but its answer was lost: never resent."""
    return await _settle(tx, delivery, "unknown", now, error)


async def retry_later(
    tx: Transaction, delivery: Delivery, now: dt.datetime, delay: dt.timedelta, error: str
) -> bool:
    """A request that provably did not reach Telegram: pending again after ``delay``."""
    return await _settle(tx, delivery, "pending", now, error, not_before=now + delay)


async def mark_skipped(tx: Transaction, delivery: Delivery, now: dt.datetime, reason: str) -> bool:
    """Claimed but deliberately not sent (e.g. outside WhatsApp's 24-hour window): why is kept."""
    return await _settle(tx, delivery, "skipped", now, reason)


async def release(tx: Transaction, delivery: Delivery, now: dt.datetime, reason: str) -> bool:
    """Nothing was sent (a 429, or stopping before the call): pending again, no attempt used."""
    return await _settle(tx, delivery, "pending", now, reason, attempts_delta=-1)


async def _finish_if_complete(tx: Transaction, broadcast_id: int, now: dt.datetime) -> None:
    await tx.execute(
        "UPDATE broadcasts SET status = 'done', finished_at = ? WHERE id = ? "
        "AND status = 'sending' AND NOT EXISTS (SELECT 1 FROM deliveries "
        "WHERE broadcast_id = ? AND status IN ('pending', 'sending'))",
        (iso(now), broadcast_id, broadcast_id),
    )


# -- reporting ---------------------------------------------------------------------
async def counts(tx: Transaction, broadcast_id: int) -> Counts:
    rows = await tx.fetchall(
        "SELECT status, COUNT(*) AS n FROM deliveries WHERE broadcast_id = ? GROUP BY status",
        (broadcast_id,),
    )
    return Counts.model_validate({r["status"]: r["n"] for r in rows})


async def current_rate(
    tx: Transaction, now: dt.datetime, window: dt.timedelta = dt.timedelta(seconds=10)
) -> float:
    """Messages per second delivered over the last ``window`` (from recorded sent times)."""
    row = await tx.fetchone(
        "SELECT COUNT(*) AS n FROM deliveries INDEXED BY deliveries_sent_at "
        "WHERE status = 'sent' AND updated_at >= ?",
        (stamp(now - window),),
    )
    return (int(row["n"]) if row else 0) / window.total_seconds()


async def has_open_deliveries(tx: Transaction, channel: str) -> bool:
    row = await tx.fetchone(
        "SELECT 1 FROM deliveries d JOIN broadcasts b ON b.id = d.broadcast_id "
        "WHERE d.status = 'pending' AND d.channel = ? AND b.status = 'sending' LIMIT 1",
        (channel,),
    )
    return row is not None
