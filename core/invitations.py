"""Invitation tokens: unit links, poster QR codes and personal single-use invitations.

A token is what a deep link carries (`https://t.me/<bot>?start=<token>`, or the first
WhatsApp message). The database keeps only a keyed hash of it, its unit and group,
and for personal invitations whether it was used: no time, no row id (the table is
WITHOUT ROWID, so its order is hash order), and nothing that names the response it
opened. The engine marks a personal token used when the respondent consents, a
transaction that never creates the response; the response only records its route,
an aggregate column ('self', 'link', 'poster', 'sample').

Unit and poster tokens are derived from the key, so printing a poster again gives
the same QR code. Personal tokens are random: the send-out list is the only record
of whose link is whose, and once it is deleted a used flag points at nobody.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from core.model import Route
from core.storage import Transaction

InvitationKind = Literal["link", "poster", "sample"]
TOKEN_LETTERS = 20  # base32 letters after the prefix: 100 bits
_TOKEN = re.compile(r"^spi[a-z2-7]{20}$")


@dataclass(frozen=True)
class Invitation:
    token_hash: str
    period: str
    unit: str
    group: str
    kind: InvitationKind
    used: bool

    @property
    def single_use(self) -> bool:
        return self.kind == "sample"

    @property
    def route(self) -> Route:
        return self.kind


@dataclass(frozen=True)
class ResponseRate:
    """Personal invitations of one unit and group: issued, and used at least to consent."""

    unit: str
    group: str
    sent: int
    used: int

    @property
    def rate(self) -> float:
        return self.used / self.sent if self.sent else 0.0


def normalise_token(text: str) -> str | None:
    """The token in a deep-link argument or a typed message, or None if it is not one."""
    candidate = text.strip().lower()
    return candidate if _TOKEN.match(candidate) else None


def _derive(secret_key: bytes, message: str) -> str:
    digest = hmac.new(secret_key, message.encode(), hashlib.sha256).digest()
    return "spi" + base64.b32encode(digest).decode().lower()[:TOKEN_LETTERS]


def unit_token(secret_key: bytes, period: str, unit: str, group: str, kind: InvitationKind) -> str:
    """The reusable token of a unit link or poster: the same every time it is printed."""
    return _derive(secret_key, f"invitation-unit:{period}:{kind}:{unit}:{group}")


def personal_token() -> str:
    """A sampled person's single-use token: random, so that once the send-out list is
    deleted nobody (not even the key holder) can tell whose link a used token was."""
    return "spi" + base64.b32encode(secrets.token_bytes(15)).decode().lower()[:TOKEN_LETTERS]


def token_hash(secret_key: bytes, token: str) -> str:
    """What is stored: a leaked database neither reveals nor redeems a token."""
    return hmac.new(secret_key, f"invitation:{token}".encode(), hashlib.sha256).hexdigest()


def telegram_link(bot_username: str, token: str) -> str:
    return f"https://t.me/{bot_username.lstrip('@')}?start={token}"


def whatsapp_link(number: str, token: str) -> str:
    return f"https://wa.me/{number.lstrip('+')}?text={token}"


async def issue(
    tx: Transaction,
    secret_key: bytes,
    tokens: list[str],
    period: str,
    unit: str,
    group: str,
    kind: InvitationKind,
) -> int:
    """Store tokens (idempotent: a token issued again keeps its used/unused state).

    Returns how many were new. Rows go in sorted by hash, so even the file's page
    layout follows hash order, not the roster's.
    """
    hashes = sorted(token_hash(secret_key, t) for t in tokens)
    new = 0
    for digest in hashes:
        new += await tx.execute(
            "INSERT INTO invitations(token_hash, period, unit_code, group_code, kind, used) "
            "VALUES (?, ?, ?, ?, ?, 0) ON CONFLICT(token_hash) DO NOTHING",
            (digest, period, unit, group, kind),
        )
    return new


async def find(tx: Transaction, secret_key: bytes, token: str, period: str) -> Invitation | None:
    """The invitation a token opens in this period, or None (unknown, mistyped, old)."""
    row = await tx.fetchone(
        "SELECT token_hash, period, unit_code, group_code, kind, used FROM invitations "
        "WHERE token_hash = ? AND period = ?",
        (token_hash(secret_key, token), period),
    )
    if row is None:
        return None
    return Invitation(
        token_hash=row["token_hash"],
        period=row["period"],
        unit=row["unit_code"],
        group=row["group_code"],
        kind=row["kind"],
        used=bool(row["used"]),
    )


async def consume(tx: Transaction, invitation: Invitation) -> bool:
    """Use a personal invitation; False if it was already used. Reusable ones always pass.

    Only the flag changes, in place: no time and no reference to who used it.
    """
    if not invitation.single_use:
        return True
    changed = await tx.execute(
        "UPDATE invitations SET used = 1 WHERE token_hash = ? AND used = 0",
        (invitation.token_hash,),
    )
    return changed == 1


async def personal_invitations(
    tx: Transaction, period: str, unit: str, group: str
) -> tuple[int, int]:
    """(issued, used) personal invitations of one unit and group."""
    row = await tx.fetchone(
        "SELECT COUNT(*) AS sent, COALESCE(SUM(used), 0) AS used FROM invitations "
        "WHERE period = ? AND unit_code = ? AND group_code = ? AND kind = 'sample'",
        (period, unit, group),
    )
    return (int(row["sent"]), int(row["used"])) if row else (0, 0)


async def withdraw_unused(tx: Transaction, period: str, unit: str, group: str) -> int:
    """Unused personal invitations of a unit and group stop working (a new draw)."""
    return await tx.execute(
        "DELETE FROM invitations WHERE period = ? AND unit_code = ? AND group_code = ? "
        "AND kind = 'sample' AND used = 0",
        (period, unit, group),
    )


async def record_route(tx: Transaction, response_id: int, route: Route) -> None:
    await tx.execute("UPDATE responses SET route = ? WHERE id = ?", (route, response_id))


async def response_rates(tx: Transaction, period: str) -> list[ResponseRate]:
    """Used / sent personal invitations per unit and group (for /skor, /rekap, export)."""
    rows = await tx.fetchall(
        "SELECT unit_code, group_code, COUNT(*) AS sent, SUM(used) AS used FROM invitations "
        "WHERE period = ? AND kind = 'sample' GROUP BY unit_code, group_code "
        "ORDER BY unit_code, group_code",
        (period,),
    )
    return [
        ResponseRate(unit=r["unit_code"], group=r["group_code"], sent=r["sent"], used=r["used"])
        for r in rows
    ]


def counts_in_index(route: str, sampled_only: bool) -> bool:
    """Whether a completed response enters the index under the SAMPLED_ONLY setting."""
    return route == "sample" or not sampled_only
