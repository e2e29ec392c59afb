"""The 24-hour customer-service window, per chat.

WhatsApp delivers free-form and interactive messages only within 24 hours of
the person's last message; after that only an approved template. The last
inbound time is kept per chat (channel, address) in ``chat_windows``, only for
consented contacts (a row is written only while a contact row exists, and the
contact's deletion removes it), never beside answers.
"""

from __future__ import annotations

import datetime as dt

from core.model import iso
from core.storage import Transaction

WINDOW = dt.timedelta(hours=24)
REFRESH = dt.timedelta(minutes=5)  # a chat's time is rewritten at most this often
# A window is treated as closed this long before it really closes, so a time
# written up to REFRESH ago and a send in flight never fall outside it.
MARGIN = REFRESH + dt.timedelta(minutes=10)


async def record_inbound(tx: Transaction, channel: str, address: str, now: dt.datetime) -> bool:
    """Note the person's latest message; False when they are no contact (nothing kept)."""
    changed = await tx.execute(
        "INSERT INTO chat_windows(channel, address, last_inbound) SELECT ?, ?, ? "
        "WHERE EXISTS (SELECT 1 FROM contacts WHERE channel = ? AND address = ?) "
        "ON CONFLICT(channel, address) DO UPDATE SET last_inbound = excluded.last_inbound",
        (channel, address, iso(now), channel, address),
    )
    return changed == 1


async def window_open(tx: Transaction, channel: str, address: str, now: dt.datetime) -> bool:
    row = await tx.fetchone(
        "SELECT last_inbound FROM chat_windows WHERE channel = ? AND address = ?",
        (channel, address),
    )
    if row is None:
        return False
    last = dt.datetime.fromisoformat(str(row["last_inbound"]))
    return now < last + WINDOW - MARGIN


async def close_window(tx: Transaction, channel: str, address: str) -> None:
    """WhatsApp said the window is closed (131047): only templates until they write again."""
    await tx.execute(
        "DELETE FROM chat_windows WHERE channel = ? AND address = ?", (channel, address)
    )
