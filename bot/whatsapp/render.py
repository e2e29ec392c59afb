"""Engine replies → WhatsApp messages that stay within the Cloud API's limits.

Up to three buttons whose labels fit become reply buttons; anything else becomes a
list message (at most ten rows; a longer screen is split over several lists). A
label too long for a title uses the option's ``short`` label from the
questionnaire, else a truncation, and then carries the full label as the row's
description; titles are kept unique. Button tokens (``seq|action|arg``) become the
reply ids unchanged, so stale and forged replies are judged by the engine as on
Telegram. <b>/<i> become *bold*/_italic_ and HTML entities are unescaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from core.events import Button, Reply
from core.i18n import N_, gettext_for
from core.questionnaire import (
    WHATSAPP_BUTTON_TITLE_MAX,
    WHATSAPP_BUTTONS_MAX,
    WHATSAPP_ROW_DESCRIPTION_MAX,
    WHATSAPP_ROW_TITLE_MAX,
    WHATSAPP_ROWS_MAX,
    Questionnaire,
)

Payload = dict[str, Any]

# Cloud API limits (interactive messages reference, checked 2025).
MAX_BUTTONS = WHATSAPP_BUTTONS_MAX
BUTTON_TITLE = WHATSAPP_BUTTON_TITLE_MAX
LIST_ROWS = WHATSAPP_ROWS_MAX
ROW_TITLE = WHATSAPP_ROW_TITLE_MAX
ROW_DESCRIPTION = WHATSAPP_ROW_DESCRIPTION_MAX
LIST_BUTTON = 20
INTERACTIVE_BODY = 1024
FOOTER = 60
TEXT_BODY = 4096
IMAGE_CAPTION = 1024
ROW_ID = 200

_PREFIXES = ("✅ ", "☑️ ", "⬜ ")  # the engine's marks for a chosen / selectable option
_CHECKED, _UNCHECKED = "☑️ ", "⬜ "
_PAGE = re.compile(r"^\d+/\d+$")  # the engine's page indicator; shown as a footer instead
_BOLD = re.compile(r"<b>(.*?)</b>", re.DOTALL)
_ITALIC = re.compile(r"<i>(.*?)</i>", re.DOTALL)

CHOOSE = N_("Choose")
CHOOSE_BELOW = N_("Please choose:")
MORE = N_("More choices:")
SELECTED = N_("Selected so far: {items}")
NOTHING_SELECTED = N_("Nothing selected yet.")
PAGE = N_("Page {page}")


def whatsapp_text(text: str) -> str:
    """The engine's tiny HTML subset as WhatsApp formatting, entities unescaped."""
    text = _ITALIC.sub(lambda m: _wrap(m.group(1), "_"), text)
    text = _BOLD.sub(lambda m: _wrap(m.group(1), "*"), text)
    return html.unescape(text)


def _wrap(inner: str, mark: str) -> str:
    # WhatsApp only formats when the marks touch the text: keep spaces outside.
    core = inner.strip()
    if not core:
        return inner
    start = inner.index(core)
    return f"{inner[:start]}{mark}{core}{mark}{inner[start + len(core) :]}"


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def fit_titles(labels: list[str], limit: int) -> list[str]:
    """Titles within ``limit``; numbered when truncation would make two look alike."""
    titles = [cut(label, limit) for label in labels]
    if len(set(titles)) == len(titles):
        return titles
    return [cut(f"{n}. {label}", limit) for n, label in enumerate(labels, 1)]


class ShortLabels:
    """Full option label → its ``short`` label (both languages), from the questionnaire."""

    def __init__(self, mapping: dict[str, str] | None = None) -> None:
        self.mapping = mapping or {}

    @classmethod
    def from_questionnaire(cls, questionnaire: Questionnaire) -> ShortLabels:
        mapping: dict[str, str] = {}
        for question in questionnaire.questions:
            for option in question.options:
                if option.short is not None:
                    for locale in ("id", "en"):
                        mapping[option.text.get(locale)] = option.short.get(locale)
        return cls(mapping)

    def shorten(self, label: str) -> str:
        prefix = next((p for p in _PREFIXES if label.startswith(p)), "")
        bare = label[len(prefix) :]
        return prefix + self.mapping.get(bare, bare)


@dataclass(frozen=True)
class Words:
    """Channel-side words in the respondent's language."""

    choose: str
    choose_below: str
    more: str
    selected: str
    nothing_selected: str
    page: str

    @classmethod
    def for_locale(cls, locale: str) -> Words:
        tr: Callable[[str], str] = gettext_for(locale).gettext
        return cls(
            tr(CHOOSE),
            tr(CHOOSE_BELOW),
            tr(MORE),
            tr(SELECTED),
            tr(NOTHING_SELECTED),
            tr(PAGE),
        )


def text_message(body: str) -> Payload:
    return {"type": "text", "text": {"body": body, "preview_url": False}}


def image_message(media_id: str, caption: str) -> Payload:
    """An uploaded image (see CloudApi.upload_media) with a short caption."""
    return {"type": "image", "image": {"id": media_id, "caption": cut(caption, IMAGE_CAPTION)}}


def button_message(body: str, buttons: list[Button], titles: list[str]) -> Payload:
    return {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": body},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": b.token, "title": title}}
                    for b, title in zip(buttons, titles, strict=True)
                ]
            },
        },
    }


def list_message(body: str, rows: list[Payload], button: str, footer: str | None) -> Payload:
    interactive: Payload = {
        "type": "list",
        "body": {"text": body},
        "action": {"button": cut(button, LIST_BUTTON), "sections": [{"rows": rows}]},
    }
    if footer:
        interactive["footer"] = {"text": cut(footer, FOOTER)}
    return {"type": "interactive", "interactive": interactive}


def split_text(text: str, limit: int) -> list[str]:
    """Split at line breaks (hard-cut only a single over-long line)."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts.append(current)
            current = line
        else:
            current = candidate
    if current.strip():
        parts.append(current)
    return parts or [text[:limit]]


def interactive_body(text: str, fallback: str) -> tuple[str, str]:
    """(text sent before, body of the interactive message): the body keeps the last
    paragraphs that fit, so the question stays next to its choices."""
    if len(text) <= INTERACTIVE_BODY:
        return "", text
    paragraphs = text.split("\n\n")
    body = ""
    while paragraphs:
        candidate = paragraphs[-1] + ("\n\n" + body if body else "")
        if len(candidate) > INTERACTIVE_BODY:
            break
        body = candidate
        paragraphs.pop()
    return "\n\n".join(paragraphs), body or fallback


def _rows(buttons: list[Button], labels: list[str]) -> list[Payload]:
    titles = fit_titles(labels, ROW_TITLE)
    rows: list[Payload] = []
    for button, title in zip(buttons, titles, strict=True):
        row: Payload = {"id": button.token[:ROW_ID], "title": title}
        full = button.label
        if title != full:
            row["description"] = cut(full, ROW_DESCRIPTION)
        rows.append(row)
    return rows


def _chunks(items: list[Payload], size: int) -> Iterable[list[Payload]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def render_reply(reply: Reply, words: Words, shorts: ShortLabels) -> list[Payload]:
    """One engine reply as one or more Cloud API messages (without recipient)."""
    text = whatsapp_text(reply.text)
    buttons = [b for row in reply.buttons for b in row]
    page = next((b.label for b in buttons if _PAGE.match(b.label)), None)
    buttons = [b for b in buttons if not _PAGE.match(b.label)]
    if not buttons:
        return [text_message(part) for part in split_text(text, TEXT_BODY)]
    labels = [shorts.shorten(b.label) for b in buttons]
    if any(b.label.startswith((_CHECKED, _UNCHECKED)) for b in buttons):
        # A multi-select list hides its marks behind the list button: say what is chosen.
        chosen = [
            whatsapp_text(b.label[len(_CHECKED) :]) for b in buttons if b.label.startswith(_CHECKED)
        ]
        text += "\n\n" + (
            words.selected.format(items=", ".join(chosen)) if chosen else words.nothing_selected
        )
    head, body = interactive_body(text, words.choose_below)
    messages = [text_message(part) for part in split_text(head, TEXT_BODY)] if head else []
    if (
        len(buttons) <= MAX_BUTTONS
        and all(len(label) <= BUTTON_TITLE for label in labels)
        and len(set(labels)) == len(labels)
    ):
        messages.append(button_message(body, buttons, labels))
        return messages
    footer = words.page.format(page=page) if page else None
    for number, rows in enumerate(_chunks(_rows(buttons, labels), LIST_ROWS)):
        messages.append(
            list_message(body if number == 0 else words.more, rows, words.choose, footer)
        )
    return messages
