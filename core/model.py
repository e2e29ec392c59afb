"""The survey's vocabulary, below storage: answers, stages, conversation state, time.

Scoring, navigation, the engine and storage all import these names from here,
so that pure domain modules never import the database module.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

AnswerValue = str | float | int | list[str] | None
Stage = Literal[
    "new",
    "consent",
    "declined",
    "group",
    "screening",
    "ineligible",
    "unit",
    "question",
    "review",
    "cancel",
    "erase",
    "done",
]
SurveyStatus = Literal["none", "started", "completed"]
# How a respondent reached the survey: chose group and unit themselves, or came by a
# unit link, a unit poster's QR code, or a personal (sampled) single-use invitation.
Route = Literal["self", "link", "poster", "sample"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds")


class SessionState(BaseModel):
    """Where one pseudonymous respondent is in the conversation.

    Nothing here is a time: a session row must not be joinable with anything
    kept about a chat (see docs/PRIVACY.md).
    """

    respondent_key: str
    locale: str = "id"
    stage: Stage = "new"
    seq: int = 0
    consented: bool = False
    group: str | None = None
    screening: dict[str, str] = Field(default_factory=dict)
    unit: str | None = None
    unit_query: str | None = None
    unit_page: int = 0
    response_id: int | None = None
    question_id: str | None = None
    route: Route = "self"  # an invitation's unit is then in ``unit`` before a response exists
