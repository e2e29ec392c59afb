"""The bot as its own process: environment, start, readiness, stop, CPU and memory."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.paths import PROJECT_ROOT, SECRET
from tests.support.bot_process import bot_env as test_bot_env
from tests.support.fake_bot_api import FakeBotApi


def bot_env(api: FakeBotApi, db_path: Path, **extra: str) -> dict[str, str]:
    """The test suite's environment for `python -m bot run`, quieter for benchmarks."""
    return test_bot_env(
        api, db_path, SPI_SECRET_KEY=SECRET, LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", **extra
    )


def start_process(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, *args], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


async def wait_polling(
    api: FakeBotApi, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30.0
) -> None:
    """Ready means a getUpdates after start-up: handlers are registered and polling runs."""
    before = api.method_counts["getUpdates"]
    deadline = time.monotonic() + timeout
    while api.method_counts["getUpdates"] <= before:
        if process.poll() is not None:
            raise RuntimeError(f"bot exited with {process.returncode}:\n{tail(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"bot did not start polling in {timeout}s:\n{tail(log_path)}")
        await asyncio.sleep(0.02)


async def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM (PTB stops polling and closes the database), SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 5)
    return process.returncode


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ProcessSampler:
    """Peak RSS and CPU use of the bot process, sampled while the load runs."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self.first_rss = 0
        self._task: asyncio.Task[None] | None = None
        self._cpu0 = 0.0
        self._wall0 = 0.0
        self.cpu_seconds = 0.0
        self.wall_seconds = 0.0

    def _cpu(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def _sample(self) -> None:
        rss = int(self.process.memory_info().rss)
        self.peak_rss = max(self.peak_rss, rss)

    async def _run(self) -> None:
        while True:
            try:
                self._sample()
            except psutil.Error:
                return
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self.first_rss = int(self.process.memory_info().rss)
        self._cpu0, self._wall0 = self._cpu(), time.monotonic()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        try:
            self._sample()
            self.cpu_seconds = self._cpu() - self._cpu0
        except psutil.Error:
            pass
        self.wall_seconds = time.monotonic() - self._wall0
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0
