"""WhatsApp load benchmark: `spi-bot run` (WhatsApp only) as its own process, the fake
Cloud API in this one, signed webhooks in and Cloud API calls out over 127.0.0.1.

Simulated respondents take the whole survey concurrently (/start, consent, group,
screening, a typed unit search, a unit, every question, Send), each waiting for the
bot's next screen (its next interactive message) before acting again. Latency runs
from posting the signed webhook to the fake receiving that screen. An *answer* is an
action taken on a question screen.

    python bench/load_whatsapp.py [--respondents 100] [--latency-ms 0] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script

import aiohttp

from core.config import PROJECT_ROOT
from tests.support import walker
from tests.support.fake_whatsapp_api import FakeWhatsAppApi, Sent

SECRET = "bench-secret-key-0123456789abcdef0123456789abcdef"
VERIFY = "bench-verify-token"
GROUPS = [
    ("Pengguna layanan", ["Ya, pernah", "Saya urus sendiri"]),
    ("Pegawai unit", ["Ya, ASN", "Lebih dari 2 tahun"]),
    ("Ahli", ["Akademisi", "Ya"]),
]
QUERIES = [
    ("kesehatan", "Dinas Kesehatan"),
    ("tembalang", "Tembalang"),
    ("pendidikan", "Pendidikan"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Screens:
    """Wakes the respondent a message was sent to (the fake calls it for every send)."""

    def __init__(self, api: FakeWhatsAppApi) -> None:
        self.api = api
        self.events: dict[str, asyncio.Event] = {}
        self.seen: dict[str, int] = {}

    def notify(self, sent: Sent) -> None:
        event = self.events.get(sent.to)
        if event is not None:
            event.set()

    def watch(self, wa_id: str) -> None:
        self.events[wa_id] = asyncio.Event()
        self.seen[wa_id] = 0

    async def next(self, wa_id: str, timeout: float = 30.0) -> Sent:
        """The next message with choices sent to ``wa_id`` (texts before it are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            mine = self.api.to(wa_id)
            for index in range(self.seen[wa_id], len(mine)):
                if mine[index].choices():
                    self.seen[wa_id] = index + 1
                    return mine[index]
            self.seen[wa_id] = len(mine)
            event = self.events[wa_id]
            event.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{wa_id}: no screen within {timeout} s")
            try:
                await asyncio.wait_for(event.wait(), left)
            except TimeoutError:
                continue


class BenchWalk:
    """A respondent's question screens for the survey walker; every action is an answer."""

    def __init__(self, screen: Sent, act: Callable[[dict[str, object], bool], Awaitable[Sent]]):
        self.screen = screen
        self.act = act

    def current(self) -> walker.Screen:
        choices = self.screen.choices()
        return walker.Screen(self.screen.text, tuple((t, i) for i, t, _ in choices))

    async def press_button(self, button: walker.ButtonPair) -> None:
        kind = "button" if self.screen.kind == "button" else "list"
        title, reply_id = button
        self.screen = await self.act(FakeWhatsAppApi.reply(kind, reply_id, title), True)

    async def type(self, text: str) -> None:
        self.screen = await self.act(FakeWhatsAppApi.text(text), True)


async def respondent(
    api: FakeWhatsAppApi, screens: Screens, wa_id: str, number: int, latencies: list[float]
) -> int:
    rng = random.Random(number)
    screens.watch(wa_id)
    answers = 0

    async def act(message: dict[str, object], on_question: bool) -> Sent:
        nonlocal answers
        started = time.monotonic()
        status = await api.deliver(api.update(wa_id, message))
        assert status == 200, status
        screen = await screens.next(wa_id)
        latencies.append(time.monotonic() - started)
        answers += on_question
        return screen

    async def press(screen: Sent, label: str, on_question: bool = False) -> Sent:
        for reply_id, title, description in screen.choices():
            if label in title or label in description:
                kind = "button" if screen.kind == "button" else "list"
                return await act(api.reply(kind, reply_id, title), on_question)
        raise AssertionError(f"{wa_id}: no {label!r} in {screen.choices()}")

    group, screening = GROUPS[number % len(GROUPS)]
    query, unit = QUERIES[number % len(QUERIES)]
    screen = await act(api.text("/start"), False)
    screen = await press(screen, "setuju")
    screen = await press(screen, group)
    screen = await act(api.text(query), False)
    screen = await press(screen, unit)  # the unit first, then screening about that unit
    for label in screening:
        screen = await press(screen, label)
    walk = BenchWalk(screen, act)

    def choose(step: walker.Step) -> str | None:
        if step.typed:
            return None if step.skippable else str(rng.randint(1, 9))
        return rng.choice(step.codes)

    await walker.answer_all(walk, choose)
    screen = walk.screen
    await press(screen, "Kirim")
    return answers


async def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "ok"}
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"bot exited with {process.returncode}")
            try:
                async with http.get(url, params=params) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("webhook not ready")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(respondents: int, latency_ms: float) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="spi-wa-bench-"))
    try:
        await measure(workdir, respondents, latency_ms)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def measure(workdir: Path, respondents: int, latency_ms: float) -> None:
    db_path = workdir / "spi.sqlite3"
    async with FakeWhatsAppApi(latency=latency_ms / 1000) as api:
        screens = Screens(api)
        api.on_sent.append(screens.notify)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WHATSAPP_"))}
        env.update(
            DATABASE_PATH=str(db_path),
            SPI_SECRET_KEY=SECRET,
            LOG_LEVEL="WARNING",
            WHATSAPP_PHONE_ID=api.phone_id,
            WHATSAPP_TOKEN=api.token,
            WHATSAPP_APP_SECRET=api.app_secret.decode(),
            WHATSAPP_VERIFY_TOKEN=VERIFY,
            WHATSAPP_API_URL=api.base_url,
            WHATSAPP_PORT=str(port),
        )
        log = (workdir / "bot.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}/whatsapp"
            api.webhook_url = url
            await wait_ready(url, process)
            latencies: list[float] = []
            started = time.monotonic()
            counts = await asyncio.gather(
                *(
                    respondent(api, screens, f"62800{n:07d}", n, latencies)
                    for n in range(respondents)
                )
            )
            elapsed = time.monotonic() - started
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
        with sqlite3.connect(db_path) as db:
            completed = db.execute(
                "SELECT COUNT(*) FROM responses WHERE status = 'completed'"
            ).fetchone()[0]
        answers = sum(counts)
        print(f"respondents: {respondents}, fake latency {latency_ms:.0f} ms, bot exit code {code}")
        print(f"completed surveys in the database: {completed}/{respondents}")
        print(f"refused by the fake (limits): {len(api.refused)}")
        print(f"actions: {len(latencies)}, answers: {answers}, wall time {elapsed:.1f} s")
        print(f"answers/s: {answers / elapsed:.1f}, actions/s: {len(latencies) / elapsed:.1f}")
        print(
            f"latency per action: p50 {pct(latencies, 0.5):.0f} ms, "
            f"p95 {pct(latencies, 0.95):.0f} ms, max {max(latencies) * 1000:.0f} ms, "
            f"mean {statistics.mean(latencies) * 1000:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--respondents", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--quick", action="store_true", help="10 respondents")
    args = parser.parse_args()
    asyncio.run(run(10 if args.quick else args.respondents, args.latency_ms))


if __name__ == "__main__":
    main()
