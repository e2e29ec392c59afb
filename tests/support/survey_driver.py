"""Drive the engine like a respondent would: press buttons by label or token, type text."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from core.engine import Engine
from core.events import Button, Choice, Command, Event, Incoming, Outcome, Reply, Sender, Text
from tests.support import walker


class Clock:
    """A controllable clock so time-dependent rules are tested without sleeping."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@dataclass
class Respondent:
    engine: Engine
    user_id: str = "1001"
    channel: str = "telegram"
    screen: Reply | None = None
    transcript: list[str] = field(default_factory=list)
    last: Outcome | None = None
    _event_counter: int = 0

    @property
    def sender(self) -> Sender:
        return Sender(channel=self.channel, user_id=self.user_id, address=f"chat{self.user_id}")

    async def send(self, event: Event, event_id: str | None = None) -> Outcome:
        self._event_counter += 1
        outcome = await self.engine.handle(
            Incoming(
                sender=self.sender, event=event, event_id=event_id or f"test:{uuid.uuid4().hex}"
            )
        )
        self.last = outcome
        for reply in outcome.replies:
            self.transcript.append(reply.text)
            if reply.buttons or self.screen is None:
                self.screen = reply
        return outcome

    async def command(self, name: str, args: str = "") -> Outcome:
        return await self.send(Command(name=name, args=args))

    async def type(self, text: str) -> Outcome:
        return await self.send(Text(text=text))

    def button(self, label: str) -> Button:
        assert self.screen is not None, "no screen yet"
        found = [b for row in self.screen.buttons for b in row if label in b.label]
        assert found, f"no button {label!r} in {[b.label for r in self.screen.buttons for b in r]}"
        return found[0]

    def labels(self) -> list[str]:
        assert self.screen is not None
        return [b.label for row in self.screen.buttons for b in row]

    async def press(self, label: str) -> Outcome:
        return await self.send(Choice(token=self.button(label).token))

    async def press_nth(self, index: int) -> Outcome:
        assert self.screen is not None
        buttons = [b for row in self.screen.buttons for b in row]
        return await self.send(Choice(token=buttons[index].token))

    @property
    def text(self) -> str:
        return self.screen.text if self.screen else ""

    def current(self) -> walker.Screen:
        """The current screen for the walker: its buttons as (label, token)."""
        buttons = self.screen.buttons if self.screen else []
        return walker.Screen(self.text, tuple((b.label, b.token) for r in buttons for b in r))

    async def press_button(self, button: walker.ButtonPair) -> Outcome:
        return await self.send(Choice(token=button[1]))


async def start_as(r: Respondent, group_label: str, screening: list[str], unit_query: str) -> None:
    """From /start to the first question, for the given group, unit and screening answers."""
    await r.command("start")
    await r.press("setuju")
    await r.press(group_label)
    await r.type(unit_query)
    await r.press_nth(0)
    for label in screening:
        await r.press(label)


async def answer_all(r: Respondent, choose: walker.Choose = walker.never_or_first) -> int:
    """Answer every question up to the review screen (see tests.support.walker)."""
    return await walker.answer_all(r, choose)
