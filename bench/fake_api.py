"""The benchmarks' fake Bot API: every reaction of the bot time-stamped as it arrives."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from bench.paths import TOKEN
from tests.support.fake_bot_api import FakeBotApi, JSONDict


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
