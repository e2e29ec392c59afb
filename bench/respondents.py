"""Simulated respondents that take the real survey through the fake Bot API.

Respondents pick buttons by their engine tokens (``seq|action|arg``) rather than by
label, so a wording change in the questionnaire does not break the benchmarks, and
they remember every answer the bot acknowledged so the database can be checked.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from typing import Literal

from bench.fake_api import BenchApi, Reaction
from bench.paths import QUESTIONNAIRE_PATH, SECRET
from bench.stats import Controller, Stats
from core.i18n import gettext_for
from core.identity import pseudonym
from core.model import AnswerValue
from core.questionnaire import Question, Questionnaire, load_questionnaire

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
        # Later values of an acknowledged answer, pressed while the bot was killed: the
        # database may hold one of them instead (committed, but the reply was lost).
        self.unknown: dict[str, list[AnswerValue]] = {}
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
                order = [o.code for o in question.options]
                chosen = sorted([*self._chosen(question.id), code], key=order.index)
                verdict = await self._act_press(screen.token("m", code), answer=True)
                if verdict == "ack":
                    todo.pop(0)
                    self._toggled = True
                    self.expected[question.id] = chosen
                elif verdict == "lost":  # committed or not: a kill hid which
                    self.unknown.setdefault(question.id, []).append(chosen)
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
