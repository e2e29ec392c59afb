"""The update processor: in order per user, concurrent across users, no user blocks the rest."""

from __future__ import annotations

import asyncio

from telegram import CallbackQuery, Update, User

from bot.processor import PerUserUpdateProcessor


def press(update_id: int, user_id: int) -> Update:
    user = User(user_id, "Budi", is_bot=False)
    return Update(update_id, callback_query=CallbackQuery(f"q{update_id}", user, "chat"))


async def test_one_users_updates_run_in_order_and_others_run_beside_them() -> None:
    processor = PerUserUpdateProcessor(max_concurrent_updates=8)
    order: list[tuple[int, int]] = []
    release = asyncio.Event()

    async def handle(user_id: int, n: int) -> None:
        if (user_id, n) == (1, 0):
            await release.wait()
        order.append((user_id, n))

    tasks = [
        asyncio.create_task(processor.process_update(press(n, 1), handle(1, n))) for n in range(5)
    ]
    other = asyncio.create_task(processor.process_update(press(99, 2), handle(2, 0)))
    await asyncio.wait_for(other, 1)  # user 2 is not held up by user 1's first update
    release.set()
    await asyncio.gather(*tasks)
    assert order == [(2, 0)] + [(1, n) for n in range(5)]


async def test_waiting_for_a_users_turn_holds_no_processing_slot() -> None:
    """A thousand queued updates of one account leave every slot to everyone else."""
    processor = PerUserUpdateProcessor(max_concurrent_updates=4)
    release = asyncio.Event()

    async def stuck() -> None:
        await release.wait()

    flood = [
        asyncio.create_task(processor.process_update(press(n, 1), stuck())) for n in range(1000)
    ]
    await asyncio.sleep(0)
    served = []

    async def serve(user_id: int) -> None:
        served.append(user_id)

    others = [
        processor.process_update(press(2000 + u, 1000 + u), serve(1000 + u)) for u in range(3)
    ]
    await asyncio.wait_for(asyncio.gather(*others), 1)
    assert sorted(served) == [1000, 1001, 1002]
    release.set()
    await asyncio.gather(*flood)
