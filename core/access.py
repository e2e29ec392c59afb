"""Who may see what: admins, officials bound to one unit, single-use invite codes.

Every check reads the database on the server side: hiding a button is never
the protection. A role belongs to an account on one channel, (channel, user id):
a WhatsApp number that equals a Telegram user id is another person. Invite codes
are stored as keyed hashes, expire, and are compared in constant time.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Collection, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel

from core.identity import hash_code
from core.model import iso
from core.storage import Transaction

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: typed from a phone
CODE_LENGTH = 10


TELEGRAM = "telegram"


class Official(BaseModel):
    user_id: int
    channel: str = TELEGRAM
    unit_code: str
    added_at: str


class Role(BaseModel):
    """What an account may do; computed per request, never cached in a button."""

    admin: bool = False
    unit_code: str | None = None  # the unit an official is bound to

    def may_see(self, unit_code: str) -> bool:
        return self.admin or self.unit_code == unit_code


class Admin(BaseModel):
    user_id: int
    channel: str = TELEGRAM
    added_by: int | None = None
    added_at: str | None = None
    configured: bool = False  # from the settings: removed only by changing them


class Invite(BaseModel):
    """An open invite as admins see it: never the code, which only its holder knows."""

    id: int
    unit_code: str
    created_by: int
    created_at: str
    expires_at: str


RedeemResult = Literal["ok", "invalid", "expired", "used", "revoked", "unit_removed"]


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


async def role_of(
    tx: Transaction, user_id: int, configured_admins: Sequence[int], *, channel: str = TELEGRAM
) -> Role:
    """The role of ``user_id`` on ``channel``; ``configured_admins`` are that channel's."""
    admin = user_id in configured_admins or (
        await tx.fetchone(
            "SELECT 1 FROM admins WHERE channel = ? AND user_id = ?", (channel, user_id)
        )
        is not None
    )
    row = await tx.fetchone(
        "SELECT unit_code FROM officials WHERE channel = ? AND user_id = ?", (channel, user_id)
    )
    return Role(admin=admin, unit_code=str(row["unit_code"]) if row else None)


async def add_admin(
    tx: Transaction, user_id: int, added_by: int, now: dt.datetime, *, channel: str = TELEGRAM
) -> None:
    await tx.execute(
        "INSERT OR IGNORE INTO admins(channel, user_id, added_by, added_at) VALUES (?, ?, ?, ?)",
        (channel, user_id, added_by, iso(now)),
    )


async def create_invite(
    tx: Transaction,
    secret_key: bytes,
    unit_code: str,
    created_by: int,
    now: dt.datetime,
    ttl: dt.timedelta,
    *,
    channel: str = TELEGRAM,
) -> str:
    """A fresh code for one official of ``unit_code``; only its hash is stored.
    ``channel`` is the creator's; the code may be redeemed on any channel."""
    code = new_code()
    await tx.execute(
        "INSERT INTO invites(code_hash, unit_code, created_by, created_channel, created_at, "
        "expires_at) VALUES (?, ?, ?, ?, ?, ?)",
        (hash_code(secret_key, code), unit_code, created_by, channel, iso(now), iso(now + ttl)),
    )
    return code


async def redeem_invite(
    tx: Transaction,
    secret_key: bytes,
    code: str,
    user_id: int,
    now: dt.datetime,
    known_units: Collection[str] | None = None,
    *,
    channel: str = TELEGRAM,
) -> tuple[RedeemResult, str | None]:
    """Bind ``user_id`` on ``channel`` to the invite's unit; a code works once, before
    it expires, unless it was revoked or its unit is no longer in ``known_units``."""
    digest = hash_code(secret_key, normalise_code(code))
    row = await tx.fetchone(
        "SELECT id, code_hash, unit_code, expires_at, used_at, revoked_at FROM invites "
        "WHERE code_hash = ?",
        (digest,),
    )
    if row is None or not hmac.compare_digest(str(row["code_hash"]), digest):
        return "invalid", None
    if row["used_at"] is not None:
        return "used", None
    if row["revoked_at"] is not None:
        return "revoked", None
    if dt.datetime.fromisoformat(row["expires_at"]) <= now:
        return "expired", None
    if known_units is not None and row["unit_code"] not in known_units:
        return "unit_removed", str(row["unit_code"])
    await tx.execute(
        "UPDATE invites SET used_at = ?, used_by = ?, used_channel = ? "
        "WHERE id = ? AND used_at IS NULL",
        (iso(now), user_id, channel, row["id"]),
    )
    await tx.execute(
        "INSERT INTO officials(channel, user_id, unit_code, added_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(channel, user_id) DO UPDATE SET unit_code = excluded.unit_code, "
        "added_at = excluded.added_at",
        (channel, user_id, row["unit_code"], iso(now)),
    )
    return "ok", str(row["unit_code"])


async def list_officials(tx: Transaction) -> list[Official]:
    rows = await tx.fetchall(
        "SELECT channel, user_id, unit_code, added_at FROM officials ORDER BY unit_code, added_at"
    )
    return [Official.model_validate(dict(row)) for row in rows]


async def revoke_official(tx: Transaction, user_id: int, *, channel: str = TELEGRAM) -> bool:
    return (
        await tx.execute(
            "DELETE FROM officials WHERE channel = ? AND user_id = ?", (channel, user_id)
        )
        == 1
    )


async def list_admins(
    tx: Transaction, configured: Mapping[str, Sequence[int]] | Sequence[int]
) -> list[Admin]:
    """Configured admins (per channel; a bare sequence is Telegram's ADMIN_IDS) first,
    then those added in chat."""
    by_channel = configured if isinstance(configured, Mapping) else {TELEGRAM: configured}
    admins = [
        Admin(user_id=user_id, channel=channel, configured=True)
        for channel, ids in by_channel.items()
        for user_id in ids
    ]
    rows = await tx.fetchall(
        "SELECT channel, user_id, added_by, added_at FROM admins ORDER BY added_at"
    )
    for row in rows:
        if row["user_id"] not in by_channel.get(row["channel"], ()):
            admins.append(Admin.model_validate(dict(row)))
    return admins


async def remove_admin(tx: Transaction, user_id: int, *, channel: str = TELEGRAM) -> bool:
    """Remove an admin added in chat; configured admins are outside the database's reach."""
    return (
        await tx.execute("DELETE FROM admins WHERE channel = ? AND user_id = ?", (channel, user_id))
        == 1
    )


async def open_invites(tx: Transaction, now: dt.datetime) -> list[Invite]:
    rows = await tx.fetchall(
        "SELECT id, unit_code, created_by, created_at, expires_at FROM invites "
        "WHERE used_at IS NULL AND revoked_at IS NULL AND expires_at > ? ORDER BY id",
        (iso(now),),
    )
    return [Invite.model_validate(dict(row)) for row in rows]


async def revoke_invite(tx: Transaction, invite_id: int, now: dt.datetime) -> str | None:
    """Revoke an unused invite; its unit code, or None if there was nothing to revoke."""
    row = await tx.fetchone(
        "SELECT unit_code FROM invites WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL",
        (invite_id,),
    )
    if row is None:
        return None
    await tx.execute("UPDATE invites SET revoked_at = ? WHERE id = ?", (iso(now), invite_id))
    return str(row["unit_code"])
