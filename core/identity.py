"""Respondent pseudonyms: a keyed hash instead of any chat identity.

Answers are stored under HMAC-SHA256(SPI_SECRET_KEY, channel:user id). Without
the key, the database alone cannot tell whose answers are whose, and the same
person still maps to the same pseudonym, which enforces one response per unit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac


def pseudonym(secret_key: bytes, channel: str, user_id: str) -> str:
    message = f"respondent:{channel}:{user_id}".encode()
    return hmac.new(secret_key, message, hashlib.sha256).hexdigest()


def hash_code(secret_key: bytes, code: str) -> str:
    """Invite codes are stored hashed so a leaked database cannot be redeemed."""
    return hmac.new(secret_key, f"invite:{code}".encode(), hashlib.sha256).hexdigest()


def seal_time(secret_key: bytes, response_id: int, moment: dt.datetime) -> str:
    """A start time only the key holder can read back: milliseconds XOR a keyed pad.

    The pad is HMAC-SHA256(key, response id), unique per response, so the stored
    value tells someone without the key nothing about when the survey began; the
    engine still computes the duration at completion.
    """
    millis = int(moment.timestamp() * 1000)
    return (millis ^ _pad(secret_key, response_id)).to_bytes(8, "big").hex()


def open_time(secret_key: bytes, response_id: int, sealed: str) -> dt.datetime | None:
    try:
        millis = int.from_bytes(bytes.fromhex(sealed), "big") ^ _pad(secret_key, response_id)
        return dt.datetime.fromtimestamp(millis / 1000, dt.UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _pad(secret_key: bytes, response_id: int) -> int:
    digest = hmac.new(secret_key, f"started:{response_id}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)
