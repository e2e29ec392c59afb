"""Skip logic and movement through a group's questions (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping

from core.model import AnswerValue
from core.questionnaire import Question, Questionnaire


def is_visible(question: Question, answers: Mapping[str, AnswerValue]) -> bool:
    """A question is shown unless its ``show_if`` condition is unmet."""
    rule = question.show_if
    if rule is None:
        return True
    given = answers.get(rule.question)
    if isinstance(given, list):
        return any(code in rule.any_of for code in given)
    return isinstance(given, str) and given in rule.any_of


def visible_questions(
    questionnaire: Questionnaire, group: str, answers: Mapping[str, AnswerValue]
) -> list[Question]:
    return [q for q in questionnaire.questions_for(group) if is_visible(q, answers)]


def first_unanswered(
    questionnaire: Questionnaire, group: str, answers: Mapping[str, AnswerValue]
) -> Question | None:
    return next(
        (q for q in visible_questions(questionnaire, group, answers) if q.id not in answers),
        None,
    )


def next_question(
    questionnaire: Questionnaire, group: str, current: str, answers: Mapping[str, AnswerValue]
) -> Question | None:
    """The next visible question after ``current`` in file order, or None at the end."""
    passed = False
    for question in questionnaire.questions_for(group):
        if passed and is_visible(question, answers):
            return question
        passed = passed or question.id == current
    return None


def previous_question(
    questionnaire: Questionnaire,
    group: str,
    current: str | None,
    answers: Mapping[str, AnswerValue],
) -> Question | None:
    """The visible question before ``current`` (before the end when ``current`` is None)."""
    previous: Question | None = None
    for question in visible_questions(questionnaire, group, answers):
        if question.id == current:
            return previous
        previous = question
    return previous if current is None else None


def hidden_answered(
    questionnaire: Questionnaire, group: str, answers: Mapping[str, AnswerValue]
) -> list[str]:
    """Answers left behind by a changed skip condition; dropped at submission."""
    shown = {q.id for q in visible_questions(questionnaire, group, answers)}
    return [qid for qid in answers if qid not in shown and not qid.startswith("screen_")]
