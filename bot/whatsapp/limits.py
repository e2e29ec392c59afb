"""Questionnaire labels measured against WhatsApp's title limits, with field paths.

The renderer never breaks a limit (it truncates and puts the full label in the row
description), but a truncated label reads worse than a chosen ``short`` one. This
lists every label that would be cut, in the field-path style of the loader's
errors, for `spi-bot check-questionnaire` to print.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.whatsapp.render import BUTTON_TITLE, ROW_DESCRIPTION, ROW_TITLE
from core.questionnaire import LocalizedText, Questionnaire

LOCALES = ("id", "en")


@dataclass(frozen=True)
class LabelIssue:
    field: str
    reason: str


def _title(field: str, text: LocalizedText, limit: int, hint: str) -> list[LabelIssue]:
    return [
        LabelIssue(
            f"{field}.{locale}",
            f"{len(text.get(locale))} characters; WhatsApp shows {limit} ({hint})",
        )
        for locale in LOCALES
        if len(text.get(locale)) > limit
    ]


def label_issues(questionnaire: Questionnaire) -> list[LabelIssue]:
    issues: list[LabelIssue] = []
    for g, group in enumerate(questionnaire.groups):
        base = f"groups[{g}](code={group.code})"
        issues += _title(f"{base}.title", group.title, ROW_TITLE, "list row title; truncated")
        for s, screen in enumerate(group.screening):
            for o, choice in enumerate(screen.options):
                field = f"{base}.screening[{s}](id={screen.id}).options[{o}](code={choice.code})"
                issues += _title(f"{field}.text", choice.text, ROW_TITLE, "truncated")
    for q, question in enumerate(questionnaire.questions):
        for o, option in enumerate(question.options):
            field = f"questions[{q}](id={question.id}).options[{o}](code={option.code})"
            if option.short is None:
                issues += _title(f"{field}.text", option.text, ROW_TITLE, "add a 'short' label")
            else:
                issues += _title(f"{field}.short", option.short, BUTTON_TITLE, "button title")
            issues += _title(f"{field}.text", option.text, ROW_DESCRIPTION, "row description; cut")
    return issues
