"""Scores and answers for auditors: three tables, written as XLSX or CSV.

The export holds everything needed to recompute each published figure with
the method in docs/scoring.md: the unit scores, the group dimension means and
every answer of every completed response under its pseudonym, with the item
score it earned. Numbers are written unrounded (XLSX cells keep 16
significant digits, a spreadsheet's own precision; CSV keeps every digit).

Tables (XLSX sheet / CSV file):

* "Skor unit" / ``skor_unit.csv``: one row per unit.
* "Skor dimensi" / ``skor_dimensi.csv``: one row per unit, group and dimension
  with data, plus ``group = "all"`` rows: the unit-level dimension scores shown
  in `/skor` and its chart (group-weighted, k-anonymity applied).
* "Jawaban" / ``jawaban.csv``: one row per stored answer of a completed response.

CSV files are UTF-8 with a byte-order mark (so Excel detects the encoding),
comma-separated, with a dot as decimal mark. Free text that a spreadsheet
would run as a formula is neutralised: kept as text in XLSX, prefixed with
``'`` in CSV.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
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
    flag_counts,
    load_unit_aggregate,
)
from core.model import AnswerValue
from core.questionnaire import Questionnaire
from core.scoring import Band, group_index, item_score, score_unit
from core.storage import Transaction
from core.units import UnitRegistry

Cell = str | int | float | None
ALL_GROUPS = "all"
PSEUDONYM_LENGTH = 16  # enough to tell respondents apart, too short to match a full key
KNOWN_FLAGS = (FLAG_SPEEDER, FLAG_STRAIGHT, FLAG_BURST)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_WIDTH_SAMPLE = 500  # rows looked at to size columns


@dataclass
class Table:
    """One sheet / CSV file: a title, column names and rows of plain values."""

    title: str
    slug: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)


@dataclass
class ExportData:
    """The three tables of one period; ``responses`` = completed responses in "Jawaban"."""

    period: str
    units: Table
    dimensions: Table
    answers: Table
    responses: int = 0

    @property
    def tables(self) -> tuple[Table, Table, Table]:
        return (self.units, self.dimensions, self.answers)


def band_label(band: Band | None, questionnaire: Questionnaire) -> str | None:
    """The Indonesian band name as officials see it (the low band's label is configurable)."""
    if band is None:
        return None
    return questionnaire.bands.low_label.id if band == "riskan" else band


async def export_rows(
    tx: Transaction, questionnaire: Questionnaire, units: UnitRegistry, period: str
) -> ExportData:
    """Collect the three tables for one period inside one (read) transaction."""
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

    scored = []
    for code in unit_codes:
        aggregate = await load_unit_aggregate(tx, period, code)
        scored.append((code, aggregate, await flag_counts(tx, period, code)))
    seen_flags = {flag for _, _, counts in scored for flag in counts}
    flag_names = [*KNOWN_FLAGS, *sorted(seen_flags - set(KNOWN_FLAGS))]

    unit_rows: list[list[Cell]] = []
    dimension_rows: list[list[Cell]] = []
    for code, aggregate, flags in scored:
        score = score_unit(questionnaire, aggregate)
        n_completed, n_counted = completed.get(code, (0, 0))
        groups = [aggregate.groups.get(g) for g in group_codes]
        unit_rows.append(
            [
                period,
                code,
                names.get(code, ""),
                *[g.n if g else 0 for g in groups],
                score.n,
                n_completed - n_counted,
                *[group_index(questionnaire, g) if g else None for g in groups],
                score.index,
                score.deduction,
                score.corrected,
                score.ci[0] if score.ci else None,
                score.ci[1] if score.ci else None,
                band_label(score.band, questionnaire),
                int(score.provisional),
                *[flags.get(flag, 0) for flag in flag_names],
                "; ".join(aggregate.reasons),
            ]
        )
        for group_code, group in zip(group_codes, groups, strict=True):
            if group is None:
                continue
            for dimension in questionnaire.dimensions:
                tally = group.dimensions.get(dimension.code)
                if tally is not None:
                    dimension_rows.append(
                        [period, code, group_code, dimension.code, tally.n, tally.mean]
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

    answers, responses = await _answer_rows(tx, questionnaire, period)
    return ExportData(
        period=period,
        units=Table(
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
            ],
            rows=unit_rows,
        ),
        dimensions=Table(
            title="Skor dimensi",
            slug="skor_dimensi",
            columns=["period", "unit_code", "group", "dimension", "n", "mean"],
            rows=dimension_rows,
        ),
        answers=Table(
            title="Jawaban",
            slug="jawaban",
            columns=[
                "response_id",
                "pseudonym",
                "period",
                "group",
                "unit_code",
                "completed_on",
                "duration_seconds",
                "flags",
                "counted",
                "question_id",
                "dimension",
                "value",
                "item_score",
            ],
            rows=answers,
        ),
        responses=responses,
    )


async def _answer_rows(
    tx: Transaction, questionnaire: Questionnaire, period: str
) -> tuple[list[list[Cell]], int]:
    """Every answer of every completed response, in questionnaire order per response."""
    order = {q.id: i for i, q in enumerate(questionnaire.questions)}
    rows = await tx.fetchall(
        "SELECT r.id, r.respondent_key, r.group_code, r.unit_code, r.completed_on, "
        "r.duration_seconds, r.flags, r.counted, a.question_id, a.value "
        "FROM responses r JOIN answers a ON a.response_id = r.id "
        "WHERE r.period = ? AND r.status = 'completed'",
        (period,),
    )
    rows.sort(key=lambda r: (r["id"], order.get(r["question_id"], -1), r["question_id"]))
    result: list[list[Cell]] = []
    for row in rows:
        value: AnswerValue = json.loads(row["value"])
        question = questionnaire.question(row["question_id"])
        result.append(
            [
                row["id"],
                str(row["respondent_key"])[:PSEUDONYM_LENGTH],
                period,
                row["group_code"],
                row["unit_code"],
                row["completed_on"],
                row["duration_seconds"],
                row["flags"],
                row["counted"],
                row["question_id"],
                question.dimension if question else None,
                _plain(value),
                item_score(question, value) if question else None,
            ]
        )
    return result, len({row["id"] for row in rows})


def _plain(value: AnswerValue) -> Cell:
    """A multi-select answer becomes its codes joined by commas; the rest stays as is."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return value


def _widths(table: Table) -> list[float]:
    widths = [len(c) for c in table.columns]
    for row in table.rows[:_WIDTH_SAMPLE]:
        for i, value in enumerate(row):
            text = f"{value:.2f}" if isinstance(value, float) else str(value or "")
            widths[i] = max(widths[i], len(text))
    return [min(max(w + 2, 8), 60) for w in widths]


def write_xlsx(data: ExportData, path_or_buffer: Path | str | IO[bytes]) -> None:
    """Three sheets, bold frozen header, numbers as numbers (streamed: low memory)."""
    workbook = Workbook(write_only=True)
    bold = Font(bold=True)
    for table in data.tables:
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
    ``skor_dimensi.csv`` and ``jawaban.csv``; a path ``NAME.csv`` gives
    ``NAME_skor_unit.csv`` etc. beside it, since three tables with different
    columns cannot share one CSV file.
    """
    if target.suffix.lower() == ".csv":
        return [target.with_name(f"{target.stem}_{t.slug}.csv") for t in data.tables]
    return [target / f"{t.slug}.csv" for t in data.tables]


def write_csv(data: ExportData, directory_or_path: Path | str) -> list[Path]:
    """Three CSV files (UTF-8 with BOM); returns their paths."""
    paths = csv_paths(data, Path(directory_or_path))
    for table, path in zip(data.tables, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(table.columns)
            writer.writerows(_csv_row(row) for row in table.rows)
    return paths


def _csv_row(row: Sequence[Cell]) -> list[Cell]:
    return [_csv_cell(value) for value in row]


def _csv_cell(value: Cell) -> Cell:
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
