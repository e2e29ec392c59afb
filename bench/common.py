"""Shared parts of the load and crash benchmarks.

An instrumented fake Bot API (in the benchmark's own process, so every reaction is
time-stamped the moment the bot's request arrives), the bot as its own process, and
simulated respondents that take the real survey. Respondents pick buttons by their
engine tokens (``seq|action|arg``) rather than by label, so a wording change in the
questionnaire does not break the benchmark, and they remember every answer the bot
acknowledged so the database can be checked afterwards.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:  # run as `python bench/x.py`: make the project importable
    sys.path.insert(0, str(PROJECT_ROOT))

import psutil  # noqa: E402

from core.i18n import gettext_for  # noqa: E402
from core.identity import pseudonym  # noqa: E402
from core.model import AnswerValue, SessionState  # noqa: E402
from core.questionnaire import Question, Questionnaire, load_questionnaire  # noqa: E402
from core.storage import Storage  # noqa: E402
from tests.bot_process import bot_env as test_bot_env  # noqa: E402
from tests.fake_bot_api import FakeBotApi, JSONDict  # noqa: E402

TOKEN = "123456:BENCH"
SECRET = "bench-secret-key-0123456789abcdef0123456789abcdef"
QUESTIONNAIRE_PATH = PROJECT_ROOT / "surveys" / "spi.toml"
UNIT_QUERIES = (
    "kesehatan",
    "pendidikan",
    "kecamatan",
    "dinas",
    "badan",
    "tembalang",
    "perhubungan",
    "sosial",
    "semarang",
)
GROUP_WEIGHTS = (("eksternal", 6), ("internal", 3), ("eksper", 1))
_PAGE = re.compile(r"Pertanyaan (\d+) dari (\d+)")
_ID = gettext_for("id")
WELCOME_BACK = _ID.gettext("Welcome back! Continuing your survey about {unit}.").split("{")[0]
NO_SURVEY = _ID.gettext("You have no unfinished survey. Send /start to begin one.")


# --------------------------------------------------------------------------- the fake Bot API


@dataclass(frozen=True)
class Reaction:
    """One thing the bot did in a chat, stamped when its request reached the fake."""

    time: float
    method: str
    message_id: int
    text: str
    buttons: tuple[tuple[str, str], ...] = ()

    @property
    def keyboard(self) -> bool:
        return bool(self.buttons)

    def actions(self) -> set[str]:
        return {split_token(data)[1] for _, data in self.buttons}

    def tokens(self, action: str) -> list[tuple[str, str]]:
        """(arg, full token) of every button with this action."""
        found = []
        for _, data in self.buttons:
            _, act, arg = split_token(data)
            if act == action:
                found.append((arg, data))
        return found

    def token(self, action: str, arg: str | None = None) -> str:
        for found_arg, data in self.tokens(action):
            if arg is None or found_arg == arg:
                return data
        raise LookupError(f"no {action}|{arg} button in {self.buttons}")


def split_token(data: str) -> tuple[str, str, str]:
    parts = data.split("|")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("", data, "")


class BenchApi(FakeBotApi):
    """The fake Bot API, handing each respondent its chat's reactions as they arrive.

    Waiting on a queue instead of polling the call log keeps the driver's CPU low, which
    matters on a two-core machine where the bot needs the other core.
    """

    def __init__(self, latency: float = 0.0) -> None:
        super().__init__(TOKEN, latency=latency)
        self.inboxes: dict[int, asyncio.Queue[Reaction]] = {}
        self.notices: list[str] = []
        self._query_owner: dict[str, int] = {}

    def inbox(self, chat_id: int) -> asyncio.Queue[Reaction]:
        return self.inboxes.setdefault(chat_id, asyncio.Queue())

    def press_button(
        self, user_id: int, message_id: int, data: str, *, chat_id: int | None = None
    ) -> JSONDict:
        update = super().press_button(user_id, message_id, data, chat_id=chat_id)
        self._query_owner[update["callback_query"]["id"]] = user_id
        return update

    def _deliver(self, method: str, raw: Any) -> None:
        if not isinstance(raw, dict):
            return
        inbox = self.inboxes.get(raw["chat"]["id"])
        if inbox is None:
            return
        buttons = tuple(
            (str(b.get("text", "")), str(b["callback_data"]))
            for row in (raw.get("reply_markup") or {}).get("inline_keyboard", [])
            for b in row
            if "callback_data" in b
        )
        inbox.put_nowait(
            Reaction(time.monotonic(), method, raw["message_id"], raw.get("text") or "", buttons)
        )

    def _send_message(self, params: JSONDict) -> JSONDict:
        raw = super()._send_message(params)
        self._deliver("sendMessage", raw)
        return raw

    def _edit_message_text(self, params: JSONDict) -> JSONDict | bool:
        raw = super()._edit_message_text(params)
        self._deliver("editMessageText", raw)
        return raw

    def _answer_callback_query(self, params: JSONDict) -> bool:
        result = super()._answer_callback_query(params)
        notice = str(params.get("text") or "")
        owner = self._query_owner.pop(str(params.get("callback_query_id")), None)
        if notice:
            self.notices.append(notice)
        if owner is not None and owner in self.inboxes:
            self.inboxes[owner].put_nowait(
                Reaction(time.monotonic(), "answerCallbackQuery", 0, notice)
            )
        return result


# --------------------------------------------------------------------------- the bot process


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


# --------------------------------------------------------------------------- bookkeeping


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


class Stuck(Exception):
    """A respondent got no usable reaction in time."""


Verdict = Literal["ack", "rejected", "lost", "timeout"]
Accept = Callable[[Reaction], bool | None]
PlanStep = tuple[str, int, bool]  # (kind "text"/"press", count, is a question answer)


class Chat:
    """One respondent's side of a private chat: inject an update, wait for its outcome."""

    def __init__(
        self, api: BenchApi, user_id: int, stats: Stats, ctl: Controller, timeout: float
    ) -> None:
        self.api = api
        self.user_id = user_id
        self.stats = stats
        self.ctl = ctl
        self.timeout = timeout
        self.inbox = api.inbox(user_id)
        self.screen: Reaction | None = None
        self.latest: Reaction | None = None
        self.stray: list[Reaction] = []  # replies that answered nothing we waited for
        self.plan: list[PlanStep] = []
        self.order_errors: list[str] = []
        self.think: tuple[float, float] | None = None  # seconds before each action
        self._think_rng = random.Random(user_id)
        self.grace = 2.0  # after a restart, time for the redelivered update to be answered

    async def wait(self, t0: float, generation: int, accept: Accept) -> tuple[Verdict, Reaction]:
        """Consume reactions until ``accept`` says True (ack) or False (rejected).

        A kill after the update was sent makes the outcome unknowable: once the bot is up
        again and has had ``grace`` seconds for the redelivered update, report "lost".
        """
        none = Reaction(0.0, "", 0, "")
        while True:
            try:
                async with asyncio.timeout(0.25):
                    reaction = await self.inbox.get()
            except TimeoutError:
                now = time.monotonic()
                if self.ctl.generation != generation:
                    up = self.ctl.up_since
                    if up is not None and now - up > self.grace:
                        return "lost", none
                elif now - t0 > self.timeout:
                    return "timeout", none
                continue
            if reaction.keyboard:
                self.latest = reaction
            verdict = accept(reaction)
            if verdict is True:
                return "ack", reaction
            if verdict is False:
                return "rejected", reaction
            if reaction.method != "answerCallbackQuery":
                self.stray.append(reaction)

    async def pause(self) -> None:
        """A respondent reading the screen before acting (only when ``think`` is set)."""
        if self.think is not None:
            await asyncio.sleep(self._think_rng.uniform(*self.think))

    def _press(self, message_id: int, data: str) -> tuple[float, int]:
        generation = self.ctl.generation
        t0 = time.monotonic()
        self.api.press_button(self.user_id, message_id, data)
        return t0, generation

    def _type(self, text: str) -> tuple[float, int]:
        generation = self.ctl.generation
        t0 = time.monotonic()
        self.api.send_text(self.user_id, text)
        return t0, generation

    def _record(self, t0: float, reaction: Reaction, answer: bool, press: bool = False) -> None:
        self.stats.latencies.append(reaction.time - t0)
        if press:
            self.stats.press_latencies.append(reaction.time - t0)
        self.stats.done_at.append(reaction.time)
        self.stats.actions += 1
        if answer:
            self.stats.answers += 1

    async def press(self, data: str, answer: bool = False) -> tuple[Verdict, Reaction]:
        """Press a button of the current screen; its outcome is the edit of that message."""
        assert self.screen is not None
        await self.pause()
        message_id = self.screen.message_id
        t0, generation = self._press(message_id, data)
        self.plan.append(("press", 1, answer))

        def accept(r: Reaction) -> bool | None:
            if r.method == "editMessageText" and r.message_id == message_id and r.keyboard:
                return True
            if r.method == "answerCallbackQuery" and r.text:
                return False  # refused (stale or unknown button): no edit will come
            return None

        verdict, reaction = await self.wait(t0, generation, accept)
        if verdict == "ack":
            self._record(t0, reaction, answer, press=True)
            self.screen = reaction
        return verdict, reaction

    async def type(
        self, text: str, accept: Accept, answer: bool = False
    ) -> tuple[Verdict, Reaction]:
        """Send a text; its outcome is the first new keyboard message ``accept`` takes."""
        await self.pause()
        t0, generation = self._type(text)
        self.plan.append(("text", 1, answer))
        verdict, reaction = await self.wait(t0, generation, accept)
        if verdict == "ack":
            self._record(t0, reaction, answer)
            self.screen = reaction
        return verdict, reaction

    async def type_burst(self, texts: list[str], accepts: list[Accept]) -> list[Reaction]:
        """Send several texts back to back (a fast typist): replies must come in order."""
        await self.pause()
        sent = [self._type(text) for text in texts]
        self.plan.append(("text", len(texts), False))
        reactions = []
        for i, ((t0, generation), accept) in enumerate(zip(sent, accepts, strict=True)):
            verdict, reaction = await self.wait(t0, generation, new_keyboard_message())
            if verdict != "ack":
                raise Stuck(f"user {self.user_id}: burst reply {i + 1} {verdict}")
            if accept(reaction) is not True:
                self.order_errors.append(f"reply {i + 1} to {texts} was for another message")
            self._record(t0, reaction, False)
            reactions.append(reaction)
        self.screen = reactions[-1]
        return reactions


def new_keyboard_message(predicate: Callable[[Reaction], bool] | None = None) -> Accept:
    def accept(r: Reaction) -> bool | None:
        if r.method == "sendMessage" and r.keyboard and (predicate is None or predicate(r)):
            return True
        return None

    return accept


def _lists_units_for(r: Reaction, query: str) -> bool:
    """The unit list for this query (its first line quotes it; the hint names examples)."""
    return "u" in r.actions() and f"“{query}”" in r.text.split("\n", 1)[0]


def page_of(text: str) -> tuple[int, int] | None:
    match = _PAGE.search(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


# --------------------------------------------------------------------------- the survey


class Survey:
    """The questionnaire, indexed by what a respondent sees on screen."""

    def __init__(self, questionnaire: Questionnaire) -> None:
        self.q = questionnaire
        self.questions: dict[tuple[str, str], Question] = {}  # (group, text); texts repeat
        self.screening: dict[str, tuple[str, list[str]]] = {}
        for group in questionnaire.groups:
            for question in questionnaire.questions_for(group.code):
                self.questions[group.code, question.text.get("id")] = question
            for screen in group.screening:
                eligible = [o.code for o in screen.options if o.eligible]
                self.screening[screen.text.get("id")] = (screen.id, eligible)

    @classmethod
    def load(cls) -> Survey:
        return cls(load_questionnaire(QUESTIONNAIRE_PATH))

    def question_on(self, group: str, text: str) -> Question:
        lines = text.split("\n")
        if len(lines) > 3 and (group, lines[3]) in self.questions:
            return self.questions[group, lines[3]]
        found = [q for (g, t), q in self.questions.items() if g == group and t in text]
        if not found:
            raise LookupError(f"no question on screen: {text[:200]!r}")
        return max(found, key=lambda q: len(q.text.get("id")))

    def screening_on(self, text: str) -> tuple[str, list[str]]:
        for screen_text, found in self.screening.items():
            if screen_text in text:
                return found
        raise LookupError(f"no screening question on screen: {text[:200]!r}")


class SurveyRespondent(Chat):
    """Takes the survey from /start to "Terima kasih", choosing answers at random (seeded).

    ``expected`` holds every answer the bot acknowledged (showed the next screen for);
    ``pages`` the question numbers seen, to check that nothing was reordered.
    """

    def __init__(
        self,
        api: BenchApi,
        user_id: int,
        survey: Survey,
        stats: Stats,
        ctl: Controller,
        *,
        seed: int = 0,
        burst: bool = True,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(api, user_id, stats, ctl, timeout)
        self.survey = survey
        self.rng = random.Random(f"{seed}:{user_id}")
        self.burst = burst
        choices = [g for g, w in GROUP_WEIGHTS for _ in range(w)]
        self.group = self.rng.choice(choices)
        self.queries = self.rng.sample(UNIT_QUERIES, k=2)
        self.expected: dict[str, AnswerValue] = {}
        self.screening_expected: dict[str, str] = {}
        self.unit: str | None = None  # set once a question shows: the response exists
        self.chosen_unit: str | None = None
        self.pages: list[tuple[int, int]] = []
        self.queried = False
        self.submitted = False
        self.done = False
        self.resumes = 0
        self._multi: tuple[str, list[str]] | None = None
        self._toggled = False
        self._steps = 0

    @property
    def respondent_key(self) -> str:
        return pseudonym(SECRET.encode(), "telegram", str(self.user_id))

    async def run(self) -> None:
        try:
            await self._start()
            while not self.done:
                self._steps += 1
                if self._steps > 200:
                    raise Stuck(f"user {self.user_id}: survey does not end")
                await self.step()
            self.stats.completed += 1
        except Stuck as exc:
            self.stats.error(str(exc))
        except Exception as exc:  # keep the other respondents going; report it
            self.stats.error(f"user {self.user_id}: {type(exc).__name__}: {exc}")

    async def _start(self) -> None:
        while True:
            verdict, _ = await self.type("/start", new_keyboard_message())
            if verdict == "ack":
                return
            await self._settle(verdict, None)
            if self.screen is not None:
                return

    async def step(self) -> None:
        screen = self.screen
        assert screen is not None
        actions = screen.actions()
        if "new" in actions:  # the thank-you screen
            self.done = True
        elif "ok" in actions:
            await self._act_press(screen.token("ok", "y"))
        elif "g" in actions:
            await self._act_press(screen.token("g", self.group))
        elif "s" in actions:
            screen_id, eligible = self.survey.screening_on(screen.text)
            code = self.rng.choice(eligible)
            verdict = await self._act_press(screen.token("s", code))
            if verdict == "ack":
                self.screening_expected[f"screen_{screen_id}"] = code
        elif "u" in actions and not self.queried:
            await self._query_units()
        elif "u" in actions:
            arg, data = self.rng.choice(screen.tokens("u"))
            if await self._act_press(data) == "ack":
                self.chosen_unit = arg  # screening follows; the response opens after it
        elif "send" in actions:
            self.submitted = True
            verdict = await self._act_press(screen.token("send"))
            if verdict == "ack":
                self.done = "new" in (self.screen.actions() if self.screen else set())
                if not self.done:
                    raise Stuck(f"user {self.user_id}: no thank-you after Send")
        elif page_of(screen.text) is not None:
            self.unit = self.unit or self.chosen_unit
            await self._answer(screen)
        else:
            raise Stuck(f"user {self.user_id}: unknown screen {screen.text[:120]!r}")

    async def _query_units(self) -> None:
        self.queried = True
        queries = self.queries if self.burst else self.queries[-1:]
        accepts = [new_keyboard_message(lambda r, q=q: _lists_units_for(r, q)) for q in queries]
        if len(queries) == 1:
            verdict, reaction = await self.type(queries[-1], accepts[-1])
            await self._settle(verdict, reaction)
            return
        await self.type_burst(queries, accepts)

    async def _answer(self, screen: Reaction) -> None:
        page = page_of(screen.text)
        assert page is not None
        self._check_order(page)
        question = self.survey.question_on(self.group, screen.text)
        rng = self.rng
        self._toggled = False
        if question.type == "multi":
            if self._multi is None or self._multi[0] != question.id:
                options = [o.code for o in question.options if not o.exclusive]
                self._multi = (question.id, rng.sample(options, k=rng.randint(1, 2)))
            _, todo = self._multi
            if todo:
                code = todo[0]
                if await self._act_press(screen.token("m", code), answer=True) == "ack":
                    todo.pop(0)
                    self._toggled = True
                    chosen = [*self._chosen(question.id), code]
                    order = [o.code for o in question.options]
                    self.expected[question.id] = sorted(chosen, key=order.index)
            else:
                await self._act_press(screen.token("md"), answer=True)
        elif question.is_choice:
            code = rng.choice(question.options).code
            if await self._act_press(screen.token("a", code), answer=True) == "ack":
                self.expected[question.id] = code
        elif question.type == "number":
            low, high = int(question.min_value or 0), int(question.max_value or 0)
            value = rng.randint(low, min(high, low + 50))
            if await self._act_type(str(value), page[0]) == "ack":
                self.expected[question.id] = value
        elif question.optional and rng.random() < 0.5:
            if await self._act_press(screen.token("sk"), answer=True) == "ack":
                self.expected[question.id] = None
        else:
            text = f"saran responden {self.user_id}"
            if await self._act_type(text, page[0]) == "ack":
                self.expected[question.id] = text

    def _chosen(self, question_id: str) -> list[str]:
        given = self.expected.get(question_id)
        return [str(c) for c in given] if isinstance(given, list) else []

    def _check_order(self, page: tuple[int, int]) -> None:
        if self.pages:
            last = self.pages[-1][0]
            wanted = last if self._toggled else last + 1
            if page[0] < last or (self.ctl.generation == 0 and page[0] != wanted):
                self.order_errors.append(f"question {page[0]} after {last}")
        self.pages.append(page)

    async def _act_press(self, data: str, answer: bool = False) -> Verdict:
        verdict, reaction = await self.press(data, answer)
        await self._settle(verdict, reaction)
        return verdict

    async def _act_type(self, text: str, current: int) -> Verdict:
        def moved_on(r: Reaction) -> bool:
            page = page_of(r.text)
            return (page is not None and page[0] > current) or "send" in r.actions()

        verdict, reaction = await self.type(text, new_keyboard_message(moved_on), answer=True)
        await self._settle(verdict, reaction)
        return verdict

    async def _settle(self, verdict: Verdict, reaction: Reaction | None) -> None:
        if verdict == "ack":
            return
        if verdict == "timeout":
            raise Stuck(f"user {self.user_id}: no reply within {self.timeout}s")
        if verdict == "rejected":
            if self.ctl.generation == 0:
                text = reaction.text if reaction else ""
                raise Stuck(f"user {self.user_id}: button refused: {text!r}")
            self.screen = self.latest  # a newer screen (from a resume) made it stale
            return
        await self.resume()

    async def resume(self) -> None:
        """After a kill: /lanjut and carry on from the question shown, like a real user."""
        while True:
            await self.ctl.wait_up()
            self.resumes += 1
            welcomed = False
            nothing_open = False

            def accept(r: Reaction) -> bool | None:
                nonlocal welcomed, nothing_open
                if r.method == "sendMessage" and not r.keyboard:
                    if r.text.startswith(WELCOME_BACK):
                        welcomed = True
                    elif NO_SURVEY in r.text:
                        nothing_open = True
                        return False
                    return None
                if r.method == "sendMessage" and r.keyboard and welcomed:
                    return True
                return None

            verdict, _ = await self.type("/lanjut", accept)
            if verdict == "ack":
                self._multi = None
                return
            if verdict == "timeout":
                raise Stuck(f"user {self.user_id}: /lanjut got no reply")
            if verdict == "lost":
                continue
            if nothing_open:
                if self.submitted:
                    self.done = True  # Send was committed but its reply was killed
                    return
                if self.unit is not None:
                    raise Stuck(f"user {self.user_id}: the open response vanished")
                self.queried = False  # the unit press never committed: start over
                self.screening_expected.clear()
                self.pages.clear()
                await self._start()
                return


class ReplayRespondent(Chat):
    """Makes the same kinds of updates, in the same order, as a survey respondent did."""

    def __init__(
        self,
        api: BenchApi,
        user_id: int,
        plan: list[PlanStep],
        stats: Stats,
        ctl: Controller,
        deadline: float | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(api, user_id, stats, ctl, timeout)
        self.replay = plan
        self.deadline = deadline

    async def run(self) -> None:
        try:
            for kind, count, answer in self.replay:
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    return
                if kind == "press" and self.screen is not None:
                    verdict, _ = await self.press(self.screen.buttons[0][1], answer)
                elif count == 1:
                    verdict, _ = await self.type("x", new_keyboard_message(), answer)
                else:
                    await self.type_burst(["x"] * count, [new_keyboard_message()] * count)
                    continue
                if verdict != "ack":
                    raise Stuck(f"user {self.user_id}: {kind} {verdict}")
            self.stats.completed += 1
        except Stuck as exc:
            self.stats.error(str(exc))


# --------------------------------------------------------------------------- checking the database


@dataclass
class Check:
    respondents: int = 0
    completed: int = 0
    acknowledged: int = 0
    missing: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.wrong or self.duplicates or self.unfinished or self.order)

    def summary(self) -> str:
        parts = [
            f"{self.completed}/{self.respondents} completed",
            f"{self.acknowledged} acknowledged answers checked",
            f"{len(self.missing)} missing",
            f"{len(self.wrong)} different",
            f"{len(self.duplicates)} duplicated responses",
            f"{len(self.order)} order errors",
        ]
        return ", ".join(parts)

    def examples(self, n: int = 5) -> list[str]:
        problems = self.missing + self.wrong + self.duplicates + self.unfinished + self.order
        return problems[:n]


def check_database(db_path: Path, respondents: list[SurveyRespondent], exact: bool) -> Check:
    """Every acknowledged answer is stored; one completed response per respondent.

    ``exact``: without crashes the stored answers must equal the pressed ones, no more.
    """
    result = Check(respondents=len(respondents))
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        for r in respondents:
            rows = db.execute(
                "SELECT id, status, unit_code, group_code FROM responses WHERE respondent_key = ?",
                (r.respondent_key,),
            ).fetchall()
            completed = [row for row in rows if row[1] == "completed"]
            open_ = [row for row in rows if row[1] == "in_progress"]
            if len(completed) > 1:
                result.duplicates.append(f"user {r.user_id}: {len(completed)} completed")
            if open_ or not completed:
                result.unfinished.append(f"user {r.user_id}: {len(open_)} open, not completed")
                continue
            result.completed += 1
            response_id, _, unit, group = completed[0]
            if group != r.group or (r.unit is not None and unit != r.unit):
                result.wrong.append(f"user {r.user_id}: {group}/{unit} != {r.group}/{r.unit}")
            stored = {
                qid: json.loads(value)
                for qid, value in db.execute(
                    "SELECT question_id, value FROM answers WHERE response_id = ?", (response_id,)
                )
            }
            wanted: dict[str, Any] = {**r.expected, **r.screening_expected}
            for qid, value in wanted.items():
                result.acknowledged += 1
                if qid not in stored:
                    result.missing.append(f"user {r.user_id}: {qid} not stored")
                elif stored[qid] != value:
                    result.wrong.append(f"user {r.user_id}: {qid} = {stored[qid]!r}, not {value!r}")
            if exact:
                extra = sorted(set(stored) - set(wanted))
                if extra:
                    result.wrong.append(f"user {r.user_id}: unexpected answers {extra}")
            result.order.extend(f"user {r.user_id}: {e}" for e in r.order_errors)
    finally:
        db.close()
    return result


# --------------------------------------------------------------------------- seeding


async def seed_unfinished(db_path: Path, count: int, survey: Survey, first_user: int) -> None:
    """Put ``count`` respondents mid-survey into a fresh database, as months of use would.

    The schema comes from the real migrations; rows are inserted directly for speed.
    """
    storage = await Storage.open(db_path)
    await storage.close()
    rng = random.Random(count)
    units = [row for row in _unit_codes()]
    now = "2025-06-10T02:00:00+00:00"
    db = sqlite3.connect(db_path)
    try:
        db.execute("BEGIN")
        events = 0
        for i in range(count):
            user_id = first_user + i
            key = pseudonym(SECRET.encode(), "telegram", str(user_id))
            group = "eksternal" if i % 3 else "internal"
            unit = rng.choice(units)
            questions = survey.q.questions_for(group)
            answered = rng.randint(1, min(8, len(questions) - 1))
            cur = db.execute(
                "INSERT INTO responses(respondent_key, period, group_code, unit_code, status, "
                "channel, started_at) VALUES (?, ?, ?, ?, 'in_progress', 'telegram', ?)",
                (key, survey.q.period, group, unit, now),
            )
            response_id = cur.lastrowid
            screening = {}
            for screen in survey.q.group(group).screening:  # type: ignore[union-attr]
                code = next(o.code for o in screen.options if o.eligible)
                screening[screen.id] = code
            rows: list[tuple[Any, ...]] = [
                (response_id, f"screen_{sid}", json.dumps(code), now)
                for sid, code in screening.items()
            ]
            for question in questions[:answered]:
                value: Any = question.options[0].code if question.options else 3
                if question.type == "multi":
                    value = [question.options[0].code]
                rows.append((response_id, question.id, json.dumps(value), now))
            db.executemany(
                "INSERT INTO answers(response_id, question_id, value, answered_at) "
                "VALUES (?, ?, ?, ?)",
                rows,
            )
            state = SessionState(
                respondent_key=key,
                stage="question",
                seq=10 + answered,
                group=group,
                screening=screening,
                unit=unit,
                response_id=response_id,
                question_id=questions[answered].id,
            )
            db.execute(
                "INSERT INTO sessions(respondent_key, state, updated_at) VALUES (?, ?, ?)",
                (key, state.model_dump_json(), now),
            )
            db.execute(
                "INSERT INTO contacts(channel, address, locale, opted_out, active, "
                "survey_status, updated_at) VALUES ('telegram', ?, 'id', 0, 1, 'started', ?)",
                (str(user_id), now),
            )
            n_events = 8 + answered
            db.executemany(
                "INSERT INTO processed_events(event_id, processed_at) VALUES (?, ?)",
                [(f"tg:{10_000_000 + events + k}", now) for k in range(n_events)],
            )
            events += n_events
        db.execute("COMMIT")
    finally:
        db.close()


def _unit_codes() -> list[str]:
    from core.units import load_units

    return [u.code for u in load_units(PROJECT_ROOT / "surveys" / "units-kota-semarang.toml").units]
