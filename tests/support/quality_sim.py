"""Simulated respondents for the data-quality flags: honest, speeding and coached.

Seeded, so the rates in docs/QUALITY.md can be reproduced (`python -m bench.flags`).

- honest: a personal view of the unit's integrity, each scored item answered
  near that view with noise (reverse-keyed items read and answered the right
  way round), "tidak tahu" and "tidak ingin menjawab" now and then; a share
  thinks everything is perfect and another answers "tidak tahu" throughout.
  Reading at 120–250 words a minute plus a few seconds a tap.
- speeding: random or first-option answers in a fraction of the honest time.
- coached: told to press "Tidak pernah" and "Setuju" (the nearest equivalent
  elsewhere), at an honest pace.
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from core.model import AnswerValue
from core.navigation import is_visible
from core.quality import (
    FLAG_BURST,
    FLAG_SPEEDER,
    FLAG_STRAIGHT,
    BurstWatch,
    burst_threshold,
    quality_flags,
    speeder_threshold,
    words_on_screen,
)
from core.questionnaire import Question, Questionnaire

GROUP_SHARE = {"internal": 0.40, "eksternal": 0.45, "eksper": 0.15}
Chooser = Callable[[Question, random.Random], AnswerValue]


@dataclass
class Simulated:
    kind: str
    group: str
    answers: dict[str, AnswerValue]
    seconds: float


def _other(question: Question, rng: random.Random) -> AnswerValue:
    """An answer to an unscored question (profile, follow-up, number, text)."""
    if question.type == "number":
        return rng.randint(int(question.min_value or 1), int(min(question.max_value or 5, 5)))
    if question.type == "text":
        return None
    choices = [o.code for o in question.options if o.code != "tm"]
    if question.type == "multi":
        return [rng.choice(choices)]
    return rng.choice(choices)


def walk(
    questionnaire: Questionnaire, group: str, scored: Chooser, rng: random.Random
) -> dict[str, AnswerValue]:
    answers: dict[str, AnswerValue] = {}
    for question in questionnaire.questions_for(group):
        if not is_visible(question, answers):
            continue
        is_scored = question.dimension is not None and question.is_choice
        answers[question.id] = scored(question, rng) if is_scored else _other(question, rng)
    return answers


def _nearest(question: Question, target: float) -> str:
    scored = [o for o in question.options if o.score is not None]
    return min(scored, key=lambda o: abs((o.score or 0.0) - target)).code


def honest_seconds(questionnaire: Questionnaire, group: str, rng: random.Random) -> float:
    words = words_on_screen(questionnaire, group)
    taps = len(questionnaire.questions_for(group))
    return words * 60.0 / rng.uniform(120, 250) + taps * rng.uniform(2.0, 5.0)


def honest(questionnaire: Questionnaire, group: str, rng: random.Random) -> Simulated:
    style = rng.random()
    if style < 0.08:  # everything is fine, and they read every item
        view, noise, dont_know = 100.0, 0.0, 0.0
    elif style < 0.11:  # knows nothing about any item
        view, noise, dont_know = 0.0, 0.0, 1.0
    else:
        view = 100 * rng.betavariate(5, 2)
        noise, dont_know = rng.uniform(10, 30), rng.uniform(0.0, 0.15)

    def choose(question: Question, r: random.Random) -> AnswerValue:
        codes = {o.code for o in question.options}
        if "tt" in codes and r.random() < dont_know:
            return "tt"
        if "tm" in codes and r.random() < 0.02 * (dont_know < 1):
            return "tm"
        return _nearest(question, max(0.0, min(100.0, r.gauss(view, noise))))

    answers = walk(questionnaire, group, choose, rng)
    return Simulated("honest", group, answers, honest_seconds(questionnaire, group, rng))


def speeding(questionnaire: Questionnaire, group: str, rng: random.Random) -> Simulated:
    first = rng.random() < 0.3

    def choose(question: Question, r: random.Random) -> AnswerValue:
        return question.options[0].code if first else r.choice(question.options).code

    answers = walk(questionnaire, group, choose, rng)
    seconds = honest_seconds(questionnaire, group, rng) * rng.uniform(0.1, 0.4)
    return Simulated("speeding", group, answers, seconds)


def coached(questionnaire: Questionnaire, group: str, rng: random.Random) -> Simulated:
    """ "Isi 'Tidak pernah' dan 'Setuju' saja": the second option where there is no
    "Tidak pernah" (Setuju, Jelas, Sebagian kecil), "Tidak" for the bribe question."""

    def choose(question: Question, r: random.Random) -> AnswerValue:
        labels = {o.text.id: o.code for o in question.options}
        for wanted in ("Tidak pernah", "Setuju", "Tidak"):
            if wanted in labels:
                return labels[wanted]
        return question.options[1].code

    answers = walk(questionnaire, group, choose, rng)
    return Simulated("coached", group, answers, honest_seconds(questionnaire, group, rng))


MAKERS = {"honest": honest, "speeding": speeding, "coached": coached}


@dataclass
class Rates:
    counts: dict[str, int] = field(default_factory=dict)
    flagged: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> flag -> n
    any_flag: dict[str, int] = field(default_factory=dict)

    def rate(self, kind: str, flag: str | None = None) -> float:
        hits = self.any_flag.get(kind, 0) if flag is None else self.flagged[kind].get(flag, 0)
        return hits / self.counts[kind]


def simulate(questionnaire: Questionnaire, seed: int, population: dict[str, int]) -> Rates:
    """Flag a shuffled stream of simulated responses the way record_completion does:
    the speeder threshold from the earlier, unflagged durations of the group."""
    rng = random.Random(seed)
    stream = [
        maker(questionnaire, rng.choices(list(GROUP_SHARE), list(GROUP_SHARE.values()))[0], rng)
        for kind, maker in MAKERS.items()
        for _ in range(population.get(kind, 0))
    ]
    rng.shuffle(stream)
    durations: dict[str, list[int]] = {g: [] for g in GROUP_SHARE}
    rates = Rates()
    for item in stream:
        threshold = speeder_threshold(questionnaire, item.group, durations[item.group])
        flags = quality_flags(questionnaire, item.group, item.answers, item.seconds, threshold)
        if FLAG_SPEEDER not in flags:
            bisect.insort(durations[item.group], int(item.seconds))
        rates.counts[item.kind] = rates.counts.get(item.kind, 0) + 1
        per_kind = rates.flagged.setdefault(item.kind, {})
        for flag in flags:
            per_kind[flag] = per_kind.get(flag, 0) + 1
        if flags:
            rates.any_flag[item.kind] = rates.any_flag.get(item.kind, 0) + 1
    for kind in rates.counts:
        rates.flagged.setdefault(kind, {})
    return rates


def burst_days(
    questionnaire: Questionnaire,
    seed: int,
    unit: str,
    group: str,
    per_day: int,
    days: int,
    session: int = 0,
) -> tuple[int, int]:
    """Completions arriving at random through 8-hour service days, plus on the last day
    a coached session of ``session`` people finishing within 10 minutes.

    Returns (organic completions flagged as a burst, session completions flagged)."""
    rng = random.Random(seed)
    start = dt.datetime(2025, 6, 2, 1, 0, tzinfo=dt.UTC)
    events: list[tuple[dt.datetime, bool]] = []
    for day in range(days):
        opening = start + dt.timedelta(days=day)
        for _ in range(per_day):
            events.append((opening + dt.timedelta(seconds=rng.uniform(0, 8 * 3600)), False))
    session_start = start + dt.timedelta(days=days - 1, hours=3)
    for _ in range(session):
        events.append((session_start + dt.timedelta(seconds=rng.uniform(0, 600)), True))
    events.sort(key=lambda e: e[0])
    watch = BurstWatch()
    window = dt.timedelta(minutes=questionnaire.quality.burst_minutes)
    threshold = burst_threshold(questionnaire.quality, unit, group)
    flagged: set[int] = set()
    for rid, (moment, _) in enumerate(events):
        recent = watch.completed("2025", unit, group, rid, moment, window)
        if len(recent) >= threshold:
            flagged.update(recent)
    organic = sum(1 for rid in flagged if not events[rid][1])
    coached_hits = sum(1 for rid in flagged if events[rid][1])
    return organic, coached_hits


KINDS = tuple(MAKERS)
FLAGS = (FLAG_SPEEDER, FLAG_STRAIGHT, FLAG_BURST)
