"""Channel-neutral conversation messages: what comes in, what goes out.

Telegram, the terminal and (later) WhatsApp translate their own updates into
these events and render these replies; the engine knows none of them.
Reply text uses a tiny HTML subset (<b>, <i>) that every channel can render or strip.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sender:
    """Who sent an event. ``address`` is where to reach them later (None: unreachable)."""

    channel: str
    user_id: str
    address: str | None = None
    language_code: str | None = None


@dataclass(frozen=True)
class Command:
    name: str
    args: str = ""


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Choice:
    """A pressed button: the opaque token the engine put on it."""

    token: str


@dataclass(frozen=True)
class Unsupported:
    """Stickers, photos, voice and the like: things a survey cannot use."""

    kind: str


Event = Command | Text | Choice | Unsupported


@dataclass(frozen=True)
class Incoming:
    sender: Sender
    event: Event
    event_id: str | None = None  # channel-unique; a redelivered event is ignored


@dataclass(frozen=True)
class Button:
    label: str
    token: str


@dataclass
class Reply:
    text: str
    buttons: list[list[Button]] = field(default_factory=list)
    # Replace the message whose button was pressed, if the channel can. Only the first
    # such reply of an outcome edits; any later one is sent as a new message.
    edit: bool = False


@dataclass
class Outcome:
    replies: list[Reply] = field(default_factory=list)
    notice: str | None = None  # short acknowledgement of a button press (a toast)
    duplicate: bool = False
    locale: str | None = None  # the respondent's language, for channel-side words
