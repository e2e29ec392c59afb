"""Scores, answers and a codebook for auditors, without exposing any respondent.

The export lets an auditor recompute each published figure with the method in
docs/scoring.md, and nothing in it points back to a person (docs/EXPORT.md says
what each sheet holds, why, and what a reader can still learn):

* the answers carry a random id drawn for this export alone, in random order:
  no stored id, no pseudonym, nothing that links two responses of one person
  or two exports of one response;
* the day a response was completed (or its month, see below), never a time,
  and its duration in buckets;
* a unit × group with fewer than k = 5 completed responses gives no answer
  rows at all; in the others, which conditional questions a response saw, the
  completion day, the duration bucket, the quality flags and the profile items
  (screening answers and unscored questions: position, ASN status, years in
  the unit...) are released only where every combination of released values
  is shared by at least k responses;
* free text never appears here: ``free_text_rows`` writes it apart, unlinked,
  shuffled and pre-redacted, for a person to review;
* answer rows only for a closed period (``spi-bot close-period``), unless an
  open period is asked for explicitly: two exports of an open period differ by
  exactly the new responses;
* every file is created with mode 0600, and every export is written to the
  append-only audit log (who, when, what).

Numbers are written unrounded (XLSX cells keep 16 significant digits; CSV keeps
every digit). CSV files are UTF-8 with a byte-order mark (so Excel detects the
encoding), comma-separated, with a dot as decimal mark. Text that a spreadsheet
would run as a formula is neutralised: kept as text in XLSX, prefixed with
``'`` in CSV.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import os
import random
import secrets
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from core.aggregates import (
    FLAG_BURST,
    FLAG_SPEEDER,
    FLAG_STRAIGHT,
    active_corrections,
    flag_counts,
    load_unit_aggregate,
)
from core.fieldwork import completed_counts
from core.invitations import response_rates
from core.model import AnswerValue, utcnow
from core.population import populations, target_sample
from core.publish import load_published_aggregate
from core.questionnaire import Question, Questionnaire
from core.redaction import redact
from core.retention import is_closed
from core.scoring import (
    CITY_UNIT,
    K_ANONYMITY,
    Band,
    GroupFrame,
    UnitAggregate,
    group_index,
    item_score,
    score_unit,
    with_city_level,
)
from core.storage import Transaction
from core.units import UnitRegistry

Cell = str | int | float | None
ALL_GROUPS = "all"
SUPPRESSED = "(suppressed)"
SCREENING_PREFIX = "screen_"
EXPORT_ACTION = "export"
FREE_TEXT_ACTION = "export_free_text"
KNOWN_FLAGS = (FLAG_SPEEDER, FLAG_STRAIGHT, FLAG_BURST)
# Upper bounds in seconds, and the label of each duration bucket.
DURATION_BUCKETS: tuple[tuple[int | None, str], ...] = (
    (5 * 60, "<5 min"),
    (10 * 60, "5–10 min"),
    (20 * 60, "10–20 min"),
    (40 * 60, "20–40 min"),
    (None, "40+ min"),
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_WIDTH_SAMPLE = 500  # rows looked at to size columns
_DAY, _MONTH, _DURATION, _FLAGS = "completed_on", "completed_month", "duration", "flags"
_EDITION = "edition"
_RANGE = ":range"
# Upper bounds and labels of the ranges a number answer falls back to.
NUMBER_RANGES: tuple[tuple[int | None, str], ...] = (
    (1, "1"),
    (3, "2–3"),
    (10, "4–10"),
    (30, "11–30"),
    (None, "31+"),
)

ANSWER_COLUMNS = (
    ("response_id", "Random id of one response, drawn for this export alone"),
    ("period", "Survey period"),
    ("group", "Respondent group (see the group rows)"),
    ("unit_code", "Unit assessed (see the Skor unit sheet for its name)"),
    (
        "completed_on",
        f"Day completed (YYYY-MM-DD); the month (YYYY-MM) or {SUPPRESSED} where fewer "
        f"than {K_ANONYMITY} responses of the unit and group share it; empty after erasure",
    ),
    (
        "duration",
        "Time taken, in buckets: "
        + ", ".join(label for _, label in DURATION_BUCKETS)
        + f"; {SUPPRESSED} where a bucket would set a response apart",
    ),
    (
        "flags",
        "Data-quality flags: "
        + ", ".join(KNOWN_FLAGS)
        + f"; {SUPPRESSED} where they would set a response apart",
    ),
    ("counted", "1 if the response counts in the scores, 0 if excluded as flagged"),
    (
        "edition",
        "Questionnaire edition the response was answered on: its question and option "
        f"rows carry the same edition; {SUPPRESSED} where it would set a response apart",
    ),
    ("question_id", "Question (see the question and screening rows)"),
    ("dimension", "Dimension the item scores in; empty for unscored items"),
    (
        "value",
        "Option code (several joined by commas), or a number (for a profile item, "
        "possibly its range: " + ", ".join(label for _, label in NUMBER_RANGES) + "); "
        f"{SUPPRESSED} for a profile item withheld for anonymity",
    ),
    ("item_score", "Score 0–100 of the answer (higher = lower risk); empty if unscored"),
)


@dataclass
class Table:
    """One sheet / CSV file: a title, column names and rows of plain values."""

    title: str
    slug: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)


@dataclass
class ExportData:
    """The tables of one export.

    ``answers`` is None when the period is open and answer rows were not asked
    for; ``responses`` counts the responses in it and ``withheld`` those left out
    because their unit × group has fewer than k responses.
    """

    period: str
    units: Table
    dimensions: Table
    answers: Table | None = None
    codebook: Table | None = None
    audit: Table | None = None
    responses: int = 0
    withheld: int = 0
    period_closed: bool = False

    @property
    def tables(self) -> list[Table]:
        optional = (self.answers, self.codebook, self.audit)
        return [self.units, self.dimensions, *(t for t in optional if t is not None)]


def band_label(band: Band | None, questionnaire: Questionnaire) -> str | None:
    """The Indonesian band name as officials see it (the low band's label is configurable)."""
    if band is None:
        return None
    return questionnaire.bands.low_label.id if band == "riskan" else band


def duration_bucket(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return next(label for bound, label in DURATION_BUCKETS if bound is None or seconds < bound)


def sheet_titles(microdata: bool) -> list[str]:
    """The sheets an export holds, as recorded in the audit log."""
    answers = ["Jawaban"] if microdata else []
    return ["Skor unit", "Skor dimensi", *answers, "Buku kode", "Audit"]


async def record_export(
    tx: Transaction,
    actor: str,
    now: dt.datetime,
    period: str,
    fmt: str,
    microdata: bool,
    open_period: bool,
) -> None:
    """One audit line per export: who, when, and which period, format and sheets."""
    detail = {
        "period": period,
        "format": fmt,
        "sheets": sheet_titles(microdata),
        "open_period": open_period,
    }
    await tx.audit(actor, EXPORT_ACTION, json.dumps(detail, ensure_ascii=False), now)


async def export_rows(
    tx: Transaction,
    questionnaire: Questionnaire,
    units: UnitRegistry,
    period: str,
    *,
    open_period: bool = False,
    actor: str | None = None,
    fmt: str = "xlsx",
    now: dt.datetime | None = None,
    k: int = K_ANONYMITY,
    rng: random.Random | None = None,
    margin: float | None = None,
) -> ExportData:
    """Collect every table of one period inside one transaction.

    Answer rows are included when the period is closed, or when ``open_period``
    is given. With ``actor`` the export is also recorded in the audit log in
    this transaction (which must then be a write transaction); callers reading
    through a read-only snapshot call :func:`record_export` themselves first.
    ``margin`` (SAMPLE_MARGIN_OF_ERROR) turns known populations into target samples;
    without it every group's target is the questionnaire's.
    """
    closed = await is_closed(tx, period)
    microdata = closed or open_period
    if actor is not None:
        await record_export(tx, actor, now or utcnow(), period, fmt, microdata, open_period)
    units_table, dimensions_table = await _score_tables(
        tx, questionnaire, units, period, k, margin, published=not microdata
    )
    data = ExportData(
        period=period,
        units=units_table,
        dimensions=dimensions_table,
        codebook=codebook(questionnaire),
        audit=await audit_table(tx),
        period_closed=closed,
    )
    if microdata:
        data.answers, data.responses, data.withheld = await _answer_table(
            tx, questionnaire, period, k, rng or random.SystemRandom()
        )
    return data


# -- scores ----------------------------------------------------------------
async def _score_tables(
    tx: Transaction,
    questionnaire: Questionnaire,
    units: UnitRegistry,
    period: str,
    k: int,
    margin: float | None,
    *,
    published: bool = False,
) -> tuple[Table, Table]:
    """Unit scores and group dimension means; figures of fewer than k people stay empty.

    Per group also the fieldwork: completed responses, target, population and the
    personal invitations used / sent (the response rate).

    ``published``: the figures as `/skor` shows them (core/publish.py), for an open
    period exported without its answers. Live tallies move with every response, so
    two such exports would give the one person who answered in between by
    subtraction; published ones move only after k informative changes. With answer
    rows in the file (a closed period, or ``--open-period``) the sheets are live, so
    that they recompute from those rows."""
    frame = await populations(tx, period)
    done = await completed_counts(tx, period)
    rates = {(r.unit, r.group): r for r in await response_rates(tx, period)}
    group_codes = [g.code for g in questionnaire.groups]
    completed = {
        str(row["unit_code"]): (int(row["completed"]), int(row["counted"]))
        for row in await tx.fetchall(
            "SELECT unit_code, COUNT(*) AS completed, SUM(counted) AS counted FROM responses "
            "WHERE period = ? AND status = 'completed' GROUP BY unit_code",
            (period,),
        )
    }
    names = {u.code: u.name for u in units.units}
    unit_codes = [u.code for u in units.units] + sorted(set(completed) - set(names))

    async def load(unit: str) -> UnitAggregate:
        if not published:
            return await load_unit_aggregate(tx, period, unit)
        aggregate = await load_published_aggregate(tx, period, unit)
        aggregate.reasons = [c.reason for c in await active_corrections(tx, period, unit)]
        return aggregate

    city = await load(CITY_UNIT)
    scored = []
    for code in unit_codes:
        aggregate = await load(code)
        scored.append((code, aggregate, await flag_counts(tx, period, code)))
    seen_flags = {flag for _, _, counts in scored for flag in counts}
    flag_names = [*KNOWN_FLAGS, *sorted(seen_flags - set(KNOWN_FLAGS))]

    unit_rows: list[list[Cell]] = []
    dimension_rows: list[list[Cell]] = []
    for code, aggregate, flags in scored:
        frames = {
            g: GroupFrame(size, target_sample(size, margin))
            for (unit, g), size in frame.items()
            if unit == code and margin is not None
        }
        borrowed, replaced = (
            with_city_level(questionnaire, aggregate, city)
            if code != CITY_UNIT
            else (aggregate, frozenset[str]())
        )
        score = score_unit(questionnaire, borrowed, frames, replaced)
        targets = {g.code: g.target for g in score.groups}
        n_completed, n_counted = completed.get(code, (0, 0))
        groups = [aggregate.groups.get(g) for g in group_codes]
        unit_rows.append(
            [
                period,
                code,
                names.get(code, units.city.name if code == CITY_UNIT else ""),
                *[g.n if g else 0 for g in groups],
                score.n,
                n_completed - n_counted,
                *[group_index(questionnaire, g) if g and g.n >= k else None for g in groups],
                score.index,
                score.deduction,
                score.corrected,
                score.ci[0] if score.ci else None,
                score.ci[1] if score.ci else None,
                band_label(score.band, questionnaire),
                int(score.provisional),
                *[flags.get(flag, 0) for flag in flag_names],
                "; ".join(aggregate.reasons),
                *[
                    cell
                    for g in group_codes
                    for cell in (
                        done.get((code, g), 0),
                        targets.get(g),
                        frame.get((code, g)),
                        rates[(code, g)].sent if (code, g) in rates else 0,
                        rates[(code, g)].used if (code, g) in rates else 0,
                    )
                ],
            ]
        )
        for group_code, group in zip(group_codes, groups, strict=True):
            if group is None:
                continue
            for dimension in questionnaire.dimensions:
                tally = group.dimensions.get(dimension.code)
                if tally is not None:
                    shown = tally.n >= k and group.n >= k
                    dimension_rows.append(
                        [
                            period,
                            code,
                            group_code,
                            dimension.code,
                            tally.n,
                            tally.mean if shown else None,
                        ]
                    )
        for unit_dimension in score.dimensions:
            if unit_dimension.score is not None:
                dimension_rows.append(
                    [
                        period,
                        code,
                        ALL_GROUPS,
                        unit_dimension.code,
                        unit_dimension.n,
                        unit_dimension.score,
                    ]
                )
    units_table = Table(
        title="Skor unit",
        slug="skor_unit",
        columns=[
            "period",
            "unit_code",
            "unit_name",
            *[f"n_{g}" for g in group_codes],
            "n_total",
            "n_excluded",
            *[f"index_{g}" for g in group_codes],
            "index",
            "deduction",
            "corrected",
            "ci_low",
            "ci_high",
            "band",
            "provisional",
            *[f"flag_{f}" for f in flag_names],
            "correction_reasons",
            *[
                f"{column}_{g}"
                for g in group_codes
                for column in ("completed", "target", "population", "invited", "invited_used")
            ],
        ],
        rows=unit_rows,
    )
    dimensions_table = Table(
        title="Skor dimensi",
        slug="skor_dimensi",
        columns=["period", "unit_code", "group", "dimension", "n", "mean"],
        rows=dimension_rows,
    )
    return units_table, dimensions_table


# -- answers ---------------------------------------------------------------
@dataclass
class _Response:
    group: str
    unit: str
    completed_on: str | None
    duration_seconds: int | None
    flags: str
    counted: int
    version: str = ""  # the questionnaire version it was answered on
    edition: str = ""  # that version's label, "" (before versions were kept) resolved
    answers: dict[str, AnswerValue] = field(default_factory=dict)


def is_free_text(questionnaire: Questionnaire, question_id: str) -> bool:
    question = questionnaire.question(question_id)
    return question is not None and question.type == "text"


def is_profile_item(questionnaire: Questionnaire, question_id: str) -> bool:
    """Screening answers and unscored, non-text questions (and any question unknown
    to this questionnaire): they describe the person rather than the unit."""
    question = questionnaire.question(question_id)
    if question is None:
        return True
    return question.dimension is None and question.type != "text"


def _is_conditional(question: Question) -> bool:
    """Whether a response saw or answered it says something about the respondent."""
    return question.type != "text" and (question.show_if is not None or question.optional)


def _item_order(questionnaire: Questionnaire, group: str) -> list[str]:
    screening = next((g.screening for g in questionnaire.groups if g.code == group), [])
    return [f"{SCREENING_PREFIX}{s.id}" for s in screening] + [
        q.id for q in questionnaire.questions_for(group) if q.type != "text"
    ]


def anonymise(
    records: Sequence[Mapping[str, object]], attributes: Sequence[Sequence[str]], k: int
) -> list[dict[str, object]]:
    """k-anonymity for the records of one unit × group: generalise, then suppress locally.

    ``attributes`` lists, per attribute, its alternatives from finest to coarsest
    (the day, then the month); the first names the attribute. Going down the
    list, each attribute is released at the alternative that hides the fewest
    records (the finer on a tie): a value that would leave fewer than ``k``
    records sharing the combination of values released so far becomes
    ``SUPPRESSED``, and where the suppressed records of a combination are
    themselves fewer than ``k``, the smallest visible value of it is suppressed
    too. Every combination of released values, the mark included, is then
    shared by at least ``k`` records. Returns, per record, the released value
    of each attribute; for fewer than ``k`` records everything is suppressed.
    """
    names = [alternatives[0] for alternatives in attributes]
    if len(records) < k:
        return [dict.fromkeys(names, SUPPRESSED) for _ in records]
    released: list[dict[str, object]] = [{} for _ in records]
    prefixes: list[tuple[object, ...]] = [() for _ in records]
    for name, alternatives in zip(names, attributes, strict=True):
        best: list[object] | None = None
        for key in alternatives:
            shown = _suppress(prefixes, [_hashable(r.get(key)) for r in records], k)
            if best is None or shown.count(SUPPRESSED) < best.count(SUPPRESSED):
                best = shown
        assert best is not None
        for i, value in enumerate(best):
            released[i][name] = value
            prefixes[i] = (*prefixes[i], value)
    return released


def _suppress(prefixes: list[tuple[object, ...]], values: list[object], k: int) -> list[object]:
    """Suppress values until every (prefix, value) class has at least k records.

    Every prefix class already has at least k records, so suppressing all of a
    class always ends the loop; each round suppresses at least one more value.
    """
    shown = list(values)
    while True:
        classes = Counter(zip(prefixes, shown, strict=True))
        small = {key for key, size in classes.items() if size < k}
        if not small:
            return shown
        widen: set[tuple[object, ...]] = set()
        for i, key in enumerate(zip(prefixes, shown, strict=True)):
            if key in small:
                if shown[i] == SUPPRESSED:
                    widen.add(prefixes[i])
                shown[i] = SUPPRESSED
        for prefix in widen:
            visible = Counter(
                v for p, v in zip(prefixes, shown, strict=True) if p == prefix and v != SUPPRESSED
            )
            smallest = min(visible, key=lambda v: (visible[v], repr(v)))
            for i, (p, v) in enumerate(zip(prefixes, shown, strict=True)):
                if p == prefix and v == smallest:
                    shown[i] = SUPPRESSED


def _hashable(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _record(response: _Response, conditional: list[str], profile: list[str]) -> dict[str, object]:
    day = response.completed_on
    record: dict[str, object] = {
        _EDITION: response.edition,
        _DAY: day,
        _MONTH: day[:7] if day else None,
        _DURATION: duration_bucket(response.duration_seconds),
        _FLAGS: response.flags,
    }
    record.update({f"has:{q}": q in response.answers for q in conditional})
    for q in profile:
        value = response.answers.get(q)
        record[q] = value
        if isinstance(value, int | float):
            record[f"{q}{_RANGE}"] = number_range(value)
    return record


def _is_number(questionnaire: Questionnaire, question_id: str) -> bool:
    question = questionnaire.question(question_id)
    return question is not None and question.type == "number"


def number_range(value: float) -> str:
    """A count such as the number of visits, coarsened when the exact number is rare."""
    return next(label for bound, label in NUMBER_RANGES if bound is None or value <= bound)


async def _answer_table(
    tx: Transaction, questionnaire: Questionnaire, period: str, k: int, rng: random.Random
) -> tuple[Table, int, int]:
    """Answer rows of every unit × group of at least k, under ids drawn for this export."""
    responses: dict[int, _Response] = {}
    for row in await tx.fetchall(
        "SELECT r.id, r.group_code, r.unit_code, r.completed_on, r.duration_seconds, "
        "r.flags, r.counted, r.questionnaire_version, a.question_id, a.value "
        "FROM responses r LEFT JOIN answers a ON a.response_id = r.id "
        "WHERE r.period = ? AND r.status = 'completed'",
        (period,),
    ):
        response = responses.setdefault(
            int(row["id"]),
            _Response(
                group=str(row["group_code"]),
                unit=str(row["unit_code"]),
                completed_on=row["completed_on"],
                duration_seconds=row["duration_seconds"],
                flags=str(row["flags"]),
                counted=int(row["counted"]),
                version=str(row["questionnaire_version"]),
            ),
        )
        if row["question_id"] is not None and not is_free_text(questionnaire, row["question_id"]):
            response.answers[str(row["question_id"])] = json.loads(row["value"])

    cells: dict[tuple[str, str], list[_Response]] = {}
    for response in responses.values():
        cells.setdefault((response.unit, response.group), []).append(response)

    blocks: list[list[list[Cell]]] = []
    withheld = 0
    for (_, group), members in cells.items():
        if len(members) < k:
            withheld += len(members)
            continue
        blocks.extend(_cell_blocks(questionnaire, period, group, members, k))
    rng.shuffle(blocks)
    rows: list[list[Cell]] = []
    for export_id, block in enumerate(blocks, start=1):
        rows.extend([export_id, *row] for row in block)
    table = Table(
        title="Jawaban",
        slug="jawaban",
        columns=[name for name, _ in ANSWER_COLUMNS],
        rows=rows,
    )
    return table, len(blocks), withheld


def _cell_blocks(
    questionnaire: Questionnaire, period: str, group: str, members: list[_Response], k: int
) -> list[list[list[Cell]]]:
    """The rows (without id) of each response of one unit × group, k-anonymity applied."""
    order = _item_order(questionnaire, group)
    extra = sorted({q for m in members for q in m.answers} - set(order))
    order += extra
    conditional = [q.id for q in questionnaire.questions_for(group) if _is_conditional(q)]
    profile = [q for q in order if is_profile_item(questionnaire, q)]
    for member in members:
        member.edition = questionnaire.edition(member.version).version_label
    records = [_record(m, conditional, profile) for m in members]
    attributes = [
        [_EDITION],
        *([f"has:{q}"] for q in conditional),
        [_DAY, _MONTH],
        [_DURATION],
        [_FLAGS],
        *([q, f"{q}{_RANGE}"] if _is_number(questionnaire, q) else [q] for q in profile),
    ]
    released = anonymise(records, attributes, k)

    blocks = []
    for member, shown in zip(members, released, strict=True):
        block: list[list[Cell]] = []
        for question_id in order:
            if question_id not in member.answers:
                continue
            if shown.get(f"has:{question_id}") == SUPPRESSED:
                continue  # which conditional questions it saw would set it apart
            value = member.answers[question_id]
            # scored with the edition it was answered on (docs/scoring.md)
            question = questionnaire.edition(member.version).question(question_id)
            score = None
            if question_id not in profile:
                cell = _plain(value)
                score = item_score(question, value) if question else None
            else:
                cell = _plain(shown[question_id])  # the value, its range or the mark
            block.append(
                [
                    period,
                    group,
                    member.unit,
                    _plain(shown[_DAY]),
                    _plain(shown[_DURATION]),
                    _plain(shown[_FLAGS]),
                    member.counted,
                    _plain(shown[_EDITION]),
                    question_id,
                    question.dimension if question else None,
                    cell,
                    score,
                ]
            )
        blocks.append(block)
    return blocks


def _plain(value: object) -> Cell:
    """A value as written: numbers stay numbers, several codes join with commas."""
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


# -- codebook and audit ----------------------------------------------------
CODEBOOK_COLUMNS = [
    "edition",
    "kind",
    "code",
    "groups",
    "dimension",
    "type",
    "text_id",
    "text_en",
    "option_code",
    "option_id",
    "option_en",
    "score",
    "weight",
    "in_export",
]


def _code_row(kind: str, code: str, **cells: Cell) -> list[Cell]:
    """One codebook row; columns not given stay empty."""
    named = {"kind": kind, "code": code, **cells}
    return [named.get(column) for column in CODEBOOK_COLUMNS]


def codebook(questionnaire: Questionnaire) -> Table:
    """Groups, dimensions, bands, every question and option of every edition, and the
    answer columns, so the file reads without the questionnaire file.

    Editions reuse question ids with other options and scores, so every row but the
    answer columns names its edition, as the answer rows do."""
    rows: list[list[Cell]] = []
    for edition in questionnaire.editions():
        label = edition.version_label
        rows.extend([label, *row[1:]] for row in _edition_rows(edition))
    for name, meaning in ANSWER_COLUMNS:
        rows.append(_code_row("column", name, text_en=meaning))
    return Table(title="Buku kode", slug="buku_kode", columns=CODEBOOK_COLUMNS, rows=rows)


def _edition_rows(questionnaire: Questionnaire) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for group in questionnaire.groups:
        rows.append(
            _code_row(
                "group",
                group.code,
                text_id=group.title.id,
                text_en=group.title.en,
                weight=group.weight,
                in_export=f"min_sample={group.min_sample}",
            )
        )
    for dimension in questionnaire.dimensions:
        rows.append(
            _code_row(
                "dimension",
                dimension.code,
                groups=",".join(dimension.groups),
                text_id=dimension.title.id,
                text_en=dimension.title.en,
                weight=dimension.weight,
            )
        )
    bands = questionnaire.bands
    for code, label, minimum in (
        ("terjaga", None, bands.terjaga_min),
        ("waspada", None, bands.waspada_min),
        ("riskan", bands.low_label, 0.0),
    ):
        rows.append(
            _code_row(
                "band",
                code,
                text_id=label.id if label else code,
                text_en=label.en if label else code,
                score=minimum,
                in_export="lowest corrected index of the band",
            )
        )
    for group in questionnaire.groups:
        for screen in group.screening:
            code = f"{SCREENING_PREFIX}{screen.id}"
            for choice in screen.options:
                rows.append(
                    _code_row(
                        "screening",
                        code,
                        groups=group.code,
                        type="single",
                        text_id=screen.text.id,
                        text_en=screen.text.en,
                        option_code=choice.code,
                        option_id=choice.text.id,
                        option_en=choice.text.en,
                        in_export=_release_note(questionnaire, code),
                    )
                )
    for question in questionnaire.questions:
        base: dict[str, Cell] = {
            "groups": ",".join(question.groups),
            "dimension": question.dimension,
            "type": question.type,
            "text_id": question.text.id,
            "text_en": question.text.en,
            "in_export": _release_note(questionnaire, question.id),
        }
        if not question.options:
            rows.append(_code_row("question", question.id, **base))
        for option in question.options:
            rows.append(
                _code_row(
                    "question",
                    question.id,
                    **base,
                    option_code=option.code,
                    option_id=option.text.id,
                    option_en=option.text.en,
                    score=option.score,
                )
            )
    return rows


def _release_note(questionnaire: Questionnaire, question_id: str) -> str:
    if is_free_text(questionnaire, question_id):
        return "no: free text, only in the reviewed free-text file"
    if is_profile_item(questionnaire, question_id):
        return f"profile: only where at least {K_ANONYMITY} responses share the values"
    return "yes"


async def audit_table(tx: Transaction) -> Table:
    """The append-only audit log: corrections, flag decisions, admin actions, exports."""
    rows = await tx.fetchall("SELECT id, at, actor, action, detail FROM audit_log ORDER BY id")
    return Table(
        title="Audit",
        slug="audit",
        columns=["id", "at", "actor", "action", "detail"],
        rows=[[r["id"], r["at"], r["actor"], r["action"], r["detail"]] for r in rows],
    )


# -- free text ---------------------------------------------------------------
async def free_text_rows(
    tx: Transaction,
    questionnaire: Questionnaire,
    period: str,
    *,
    k: int = K_ANONYMITY,
    rng: random.Random | None = None,
) -> Table:
    """Every free-text answer of the period, for manual review before it goes anywhere.

    No response id, no day, no other answer: only the unit and group (the unit
    is left out where its group has fewer than k responses), the question and
    the text after an automatic redaction pass, in random order.
    """
    sizes = {
        (str(r["unit_code"]), str(r["group_code"])): int(r["n"])
        for r in await tx.fetchall(
            "SELECT unit_code, group_code, COUNT(*) AS n FROM responses "
            "WHERE period = ? AND status = 'completed' GROUP BY unit_code, group_code",
            (period,),
        )
    }
    text_ids = [q.id for q in questionnaire.questions if q.type == "text"] or [""]
    marks = ",".join("?" for _ in text_ids)
    found = await tx.fetchall(
        "SELECT r.unit_code, r.group_code, a.question_id, a.value "
        "FROM responses r JOIN answers a ON a.response_id = r.id "
        f"WHERE r.period = ? AND r.status = 'completed' AND a.question_id IN ({marks})",
        (period, *text_ids),
    )
    rows: list[list[Cell]] = []
    for row in found:
        value = json.loads(row["value"])
        if not isinstance(value, str) or not value.strip():
            continue
        text, masked = redact(value)
        unit, group = str(row["unit_code"]), str(row["group_code"])
        shown_unit = unit if sizes.get((unit, group), 0) >= k else SUPPRESSED
        rows.append([period, shown_unit, group, row["question_id"], text, masked, None])
    (rng or random.SystemRandom()).shuffle(rows)
    return Table(
        title="Teks bebas",
        slug="teks_bebas",
        columns=[
            "period",
            "unit_code",
            "group",
            "question_id",
            "text",
            "auto_redactions",
            "reviewed_by",
        ],
        rows=rows,
    )


# -- writing -----------------------------------------------------------------
@contextlib.contextmanager
def private_file(path: Path) -> Iterator[IO[bytes]]:
    """Write a file readable by its owner only (0600), whatever the umask.

    The content goes to a temporary 0600 file beside it that replaces the target
    once complete, so no reader ever sees a partial export, and an older file
    with a wider mode is replaced rather than reused.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _widths(table: Table) -> list[float]:
    widths = [len(c) for c in table.columns]
    for row in table.rows[:_WIDTH_SAMPLE]:
        for i, value in enumerate(row):
            text = f"{value:.2f}" if isinstance(value, float) else str(value or "")
            widths[i] = max(widths[i], len(text))
    return [min(max(w + 2, 8), 60) for w in widths]


def write_xlsx(data: ExportData, path_or_buffer: Path | str | IO[bytes]) -> None:
    """One sheet per table, bold frozen header, numbers as numbers (streamed: low memory)."""
    write_tables(data.tables, path_or_buffer)


def write_tables(tables: Sequence[Table], path_or_buffer: Path | str | IO[bytes]) -> None:
    workbook = Workbook(write_only=True)
    bold = Font(bold=True)
    for table in tables:
        sheet = workbook.create_sheet(table.title)
        sheet.freeze_panes = "A2"
        for i, width in enumerate(_widths(table), start=1):
            sheet.column_dimensions[get_column_letter(i)].width = width
        header = []
        for name in table.columns:
            cell = WriteOnlyCell(sheet, value=name)
            cell.font = bold
            header.append(cell)
        sheet.append(header)
        for row in table.rows:
            sheet.append([_xlsx_cell(sheet, value) for value in row])
    if isinstance(path_or_buffer, str | Path):
        with private_file(Path(path_or_buffer)) as fh:
            workbook.save(fh)
    else:
        workbook.save(path_or_buffer)


def _xlsx_cell(sheet: object, value: Cell) -> object:
    if not isinstance(value, str):
        return value
    text = str(ILLEGAL_CHARACTERS_RE.sub("", value))  # openpyxl refuses control characters
    if text.startswith(_FORMULA_START):
        cell = WriteOnlyCell(sheet, value=text)
        cell.data_type = "s"  # text, never a formula
        return cell
    return text


def csv_paths(data: ExportData, target: Path) -> list[Path]:
    """Where write_csv puts the files.

    A directory (or a path without ``.csv``) receives ``skor_unit.csv``,
    ``skor_dimensi.csv``, ``jawaban.csv`` (closed periods), ``buku_kode.csv``
    and ``audit.csv``; a path ``NAME.csv`` gives ``NAME_skor_unit.csv`` etc.
    beside it, since tables with different columns cannot share one CSV file.
    """
    return [_csv_path(table, target) for table in data.tables]


def _csv_path(table: Table, target: Path) -> Path:
    if target.suffix.lower() == ".csv":
        return target.with_name(f"{target.stem}_{table.slug}.csv")
    return target / f"{table.slug}.csv"


def write_csv(data: ExportData, directory_or_path: Path | str) -> list[Path]:
    """One CSV file per table (UTF-8 with BOM, mode 0600); returns their paths."""
    paths = csv_paths(data, Path(directory_or_path))
    for table, path in zip(data.tables, paths, strict=True):
        write_csv_table(table, path)
    return paths


def write_csv_table(table: Table, path: Path) -> None:
    with private_file(path) as raw:
        fh = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        writer = csv.writer(fh)
        writer.writerow(table.columns)
        writer.writerows(_csv_row(row) for row in table.rows)
        fh.flush()
        fh.detach()  # the binary file is closed by private_file


def _csv_row(row: Sequence[Cell]) -> list[Cell]:
    return [_csv_cell(value) for value in row]


def _csv_cell(value: Cell) -> Cell:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
