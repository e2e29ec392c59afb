"""Concurrent across users, strictly in order per user, and no user can block the rest.

With Telegram's round trip of 50 ms or more, handling one update at a time
caps the bot near 20 updates/s; unlimited concurrency lets one user's second
tap overtake the first. A lock per user gives both: many users at once, each
user's updates in arrival order.

PTB takes one of its global processing slots *before* it calls the processor.
Waiting for a user's lock inside such a slot lets one account that sends a
thousand updates fill every slot with updates that only wait for each other,
and everyone else queues behind them. So PTB's own limit is set out of reach and
the real one (:attr:`slots`) is taken here, after the user's lock: an update
waiting for its turn holds nothing anyone else needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

UNLIMITED = 2**31  # PTB's slot count: its slots are never the ones waited for


def serial_key(update: object) -> int | None:
    if isinstance(update, Update):
        if update.effective_user is not None:
            return update.effective_user.id
        if update.effective_chat is not None:
            return update.effective_chat.id
    return None


class PerUserUpdateProcessor(BaseUpdateProcessor):
    def __init__(self, max_concurrent_updates: int = 512) -> None:
        super().__init__(UNLIMITED)
        self.slots = asyncio.BoundedSemaphore(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._holders: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = serial_key(update)
        if key is None:
            async with self.slots:
                await coroutine
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._holders[key] = self._holders.get(key, 0) + 1
        try:
            async with lock, self.slots:  # the user's turn first, then a slot
                await coroutine
        finally:
            self._holders[key] -= 1
            if self._holders[key] == 0:
                del self._holders[key]
                del self._locks[key]

    async def initialize(self) -> None:
        """Nothing to set up: locks are created on demand."""

    async def shutdown(self) -> None:
        """Nothing to release: locks vanish with their last waiter."""
