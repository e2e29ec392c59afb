"""Per-user limit on incoming messages: a flood gets one polite notice, not a reply each.

Runs as the first handler group, before any handler touches the database, so
a user hammering the bot cannot slow everyone else down: a dropped update costs
a dictionary look-up and no Bot API call (only the one notice per window).
"""

from __future__ import annotations

import time
from collections import deque

from telegram import Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot.handlers import user_locale
from core.i18n import gettext_for

WINDOW_SECONDS = 60.0


class FloodGuard:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.clock = time.monotonic
        self._seen: dict[int, deque[float]] = {}
        self._warned: dict[int, float] = {}

    def allow(self, user_id: int) -> tuple[bool, bool]:
        """(allowed, warn): warn is True once per window for a user over the limit."""
        now = self.clock()
        stamps = self._seen.setdefault(user_id, deque())
        while stamps and now - stamps[0] > WINDOW_SECONDS:
            stamps.popleft()
        if len(stamps) < self.per_minute:
            stamps.append(now)
            self._warned.pop(user_id, None)
            return True, False
        warned_at = self._warned.get(user_id)
        if warned_at is not None and now - warned_at < WINDOW_SECONDS:
            return False, False
        self._warned[user_id] = now
        return False, True

    def forget_idle(self) -> None:
        """Drop users quiet for a full window, so memory follows active users only."""
        now = self.clock()
        for user_id in [u for u, s in self._seen.items() if not s or now - s[-1] > WINDOW_SECONDS]:
            del self._seen[user_id]
            self._warned.pop(user_id, None)

    async def __call__(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user = update.effective_user
        if user is None:
            return
        allowed, warn = self.allow(user.id)
        if len(self._seen) > 10_000:
            self.forget_idle()
        if allowed:
            return
        # A dropped press gets no answerCallbackQuery: a round trip per press would let
        # a flood spend the bot's time and Bot API budget (the spinner times out alone).
        chat = update.effective_chat
        if warn and chat is not None and chat.type == ChatType.PRIVATE:
            locale = await user_locale(update, context)
            await context.bot.send_message(
                chat.id,
                gettext_for(locale).gettext(
                    "You are sending messages very quickly. Please wait a minute, then continue."
                ),
            )
        raise ApplicationHandlerStop
