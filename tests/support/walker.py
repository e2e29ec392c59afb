"""One survey walker for every driver: answer every question by the engine's action codes.

Every driver (the engine's ``Respondent``, the Telegram and the WhatsApp user) shows
the current screen as its text and its buttons as ``(label, token)`` pairs, where the
token is the engine's ``seq|action|arg`` (Telegram's callback data, WhatsApp's reply
id). The walker reads only the action codes, never the wording, so a change of
translation or of questionnaire text cannot break it:

- ``a`` answer an option, ``m`` toggle an option of a multi-select, ``md`` done;
- ``sk`` skip an optional question, ``kp`` keep a typed answer, ``b`` back;
- ``send`` submit, on the review screen, where the walker stops.

A question without option buttons is typed. The default typed answer, ``"3"``, is
valid for both kinds of typed question: a number question (every number range in the
questionnaire includes 3) and a free-text one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

ButtonPair = tuple[str, str]  # (label, token)

ANSWER, TOGGLE, MULTI_DONE, SKIP, KEEP, BACK, SEND = "a", "m", "md", "sk", "kp", "b", "send"
QUESTION_ACTIONS = frozenset({ANSWER, TOGGLE, MULTI_DONE, SKIP, KEEP, BACK})
TYPED_ANSWER = "3"  # a valid number (all ranges include it) and a valid free text
NEVER = "tidak_pernah"
MAX_QUESTIONS = 100


@dataclass(frozen=True)
class Screen:
    """What the respondent sees: the text and the buttons as (label, token) pairs."""

    text: str
    buttons: tuple[ButtonPair, ...]


class Survey(Protocol):
    """A respondent in one channel, as the walker drives it."""

    def current(self) -> Screen: ...

    async def press_button(self, button: ButtonPair) -> object: ...

    async def type(self, text: str) -> object: ...


@dataclass(frozen=True)
class Step:
    """One question to answer, as ``choose`` sees it.

    ``index`` counts the questions answered before it in this walk; ``codes`` are the
    option codes offered (empty for a typed question); ``multi`` marks a multi-select.
    """

    index: int
    text: str
    codes: tuple[str, ...]
    multi: bool
    skippable: bool

    @property
    def typed(self) -> bool:
        return not self.codes


Choose = Callable[[Step], str | None]
"""The option code to press, the text to type (typed question), or None to skip."""


def action(token: str) -> str:
    """The action code of a ``seq|action|arg`` token ("" for anything else)."""
    parts = token.split("|")
    return parts[1] if len(parts) == 3 else ""


def argument(token: str) -> str:
    parts = token.split("|")
    return parts[2] if len(parts) == 3 else ""


def is_question(screen: Screen) -> bool:
    """A question screen: its buttons are answers and navigation only.

    A typed question without any button (a required first question) would not be
    recognised; the questionnaire opens every group with a choice question.
    """
    actions = {action(token) for _, token in screen.buttons}
    return bool(actions) and actions <= QUESTION_ACTIONS


def never_or_first(step: Step) -> str | None:
    """The default: "Never" where offered, else the first option; typed questions get
    the typed answer unless they may be skipped."""
    if step.typed:
        return None if step.skippable else TYPED_ANSWER
    return NEVER if NEVER in step.codes else step.codes[0]


def step_of(screen: Screen, index: int) -> Step:
    actions = [action(token) for _, token in screen.buttons]
    codes = tuple(
        argument(token) for _, token in screen.buttons if action(token) in (ANSWER, TOGGLE)
    )
    return Step(
        index=index,
        text=screen.text,
        codes=codes,
        multi=MULTI_DONE in actions,
        skippable=SKIP in actions,
    )


def find(screen: Screen, wanted_action: str, arg: str | None = None) -> ButtonPair:
    """The button with this action code (and argument), or an AssertionError naming both."""
    for button in screen.buttons:
        if action(button[1]) == wanted_action and (arg is None or argument(button[1]) == arg):
            return button
    offered = [token for _, token in screen.buttons]
    raise AssertionError(f"no button {wanted_action}|{arg or ''} on this screen: {offered}")


async def answer_one(survey: Survey, choose: Choose = never_or_first, index: int = 0) -> None:
    """Answer the question on the current screen as ``choose`` says."""
    screen = survey.current()
    step = step_of(screen, index)
    picked = choose(step)
    if picked is None:
        await survey.press_button(find(screen, SKIP))
    elif step.typed:
        await survey.type(picked)
    elif step.multi:
        await survey.press_button(find(screen, TOGGLE, picked))
        await survey.press_button(find(survey.current(), MULTI_DONE))
    else:
        await survey.press_button(find(screen, ANSWER, picked))


async def answer_all(survey: Survey, choose: Choose = never_or_first) -> int:
    """Answer every question up to the review screen (not sent); returns how many."""
    answered = 0
    while is_question(survey.current()):
        await answer_one(survey, choose, answered)
        answered += 1
        assert answered < MAX_QUESTIONS, "survey does not end"
    return answered


async def submit(survey: Survey) -> None:
    """Press Send on the review screen."""
    await survey.press_button(find(survey.current(), SEND))


def cycling(codes: Sequence[str], shift: int) -> Choose:
    """Answers that differ from question to question: the ``(shift + i)``-th of ``codes``
    where offered, else the first or second option in turn; a typed number of 2."""

    def choose(step: Step) -> str | None:
        turn = shift + step.index
        if step.typed:
            return None if step.skippable else "2"
        if step.multi:
            return step.codes[0]
        wanted = codes[turn % len(codes)]
        return wanted if wanted in step.codes else step.codes[(turn + 1) % 2]

    return choose
