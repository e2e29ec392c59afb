"""Respondent pseudonyms: a keyed hash instead of any chat identity.

Answers are stored under HMAC-SHA256(SPI_SECRET_KEY, channel:user id). Without
the key, the database alone cannot tell whose answers are whose, and the same
person still maps to the same pseudonym, which enforces one response per unit.
"""

from __future__ import annotations

import hashlib
import hmac


def pseudonym(secret_key: bytes, channel: str, user_id: str) -> str:
    message = f"respondent:{channel}:{user_id}".encode()
    return hmac.new(secret_key, message, hashlib.sha256).hexdigest()


def hash_code(secret_key: bytes, code: str) -> str:
    """Invite codes are stored hashed so a leaked database cannot be redeemed."""
    return hmac.new(secret_key, f"invite:{code}".encode(), hashlib.sha256).hexdigest()
