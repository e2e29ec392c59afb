"""Latency and throughput bookkeeping shared by the simulated respondents."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class Stats:
    """What all respondents of one run did and saw."""

    latencies: list[float] = field(default_factory=list)  # every action, seconds
    press_latencies: list[float] = field(default_factory=list)  # button presses only
    done_at: list[float] = field(default_factory=list)  # when each reply arrived
    actions: int = 0
    answers: int = 0
    completed: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, text: str) -> None:
        self.errors.append(text)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


class Controller:
    """Whether the bot is up; the crash test bumps ``generation`` at every kill."""

    def __init__(self) -> None:
        self.generation = 0
        self.up_since: float | None = time.monotonic()
        self._up = asyncio.Event()
        self._up.set()

    def killed(self) -> None:
        self.generation += 1
        self.up_since = None
        self._up.clear()

    def restarted(self) -> None:
        self.up_since = time.monotonic()
        self._up.set()

    async def wait_up(self) -> None:
        await self._up.wait()
