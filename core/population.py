"""Population frames: how many staff and yearly service users each unit has, per group.

The inspectorate supplies one spreadsheet (xlsx or csv) per period with a row per
unit and group. It is validated like the questionnaire: every problem is reported
with its row and column, and a file with any problem loads nothing.

Each known population gets a target sample from a precision goal: the margin of
error of a proportion at 95 % confidence, with the finite-population correction
(docs/scoring.md, "Target sample").
"""

from __future__ import annotations

import csv
import math
import zipfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from core.questionnaire import DataFileError, Issue
from core.scoring import CITY_UNIT, GroupFrame
from core.storage import Transaction
from core.units import UnitRegistry

Z_95 = 1.959964  # two-sided 95 % normal quantile
COLUMNS: dict[str, tuple[str, ...]] = {
    "unit": ("unit", "unit_code", "kode_unit", "kode"),
    "group": ("group", "kelompok"),
    "size": ("size", "population", "populasi", "jumlah"),
}


class PopulationError(DataFileError):
    pass


@dataclass(frozen=True)
class Population:
    unit: str
    group: str
    size: int


def target_sample(population: int, margin: float, z: float = Z_95, p: float = 0.5) -> int:
    """Respondents needed for ±``margin`` at 95 % in a population of ``population``.

    n0 = z² p (1 − p) / e², then the finite-population correction
    n = n0 / (1 + (n0 − 1) / N), rounded up and never more than N.
    """
    if population <= 0:
        return 0
    n0 = z * z * p * (1 - p) / (margin * margin)
    n = n0 / (1 + (n0 - 1) / population)
    return min(population, math.ceil(n - 1e-9))


def read_population(
    path: Path, units: UnitRegistry, groups: list[str], city_groups: Collection[str] = ()
) -> list[Population]:
    """All rows of a population file, or :class:`PopulationError` listing every problem.

    The unit code ``kota`` (the government as a whole) is accepted for ``city_groups``:
    the experts, counted per government."""
    table = read_table(path)
    if not table or not any(cell.strip() for cell in table[0]):
        raise PopulationError(path, [Issue(field="(file)", reason="no header row")])
    header = [cell.strip().lower() for cell in table[0]]
    where: dict[str, int] = {}
    issues: list[Issue] = []
    for name, aliases in COLUMNS.items():
        found = next((i for i, h in enumerate(header) if h in aliases), None)
        if found is None:
            issues.append(
                Issue(
                    field="(header)",
                    reason=f"missing column '{name}' (accepted names: {', '.join(aliases)})",
                )
            )
        else:
            where[name] = found
    if issues:
        raise PopulationError(path, issues)
    rows: list[Population] = []
    first_seen: dict[tuple[str, str], int] = {}
    for number, raw in enumerate(table[1:], start=2):
        if not any(cell.strip() for cell in raw):
            continue
        cells = {name: (raw[i].strip() if i < len(raw) else "") for name, i in where.items()}
        unit, group = cells["unit"].lower(), cells["group"].lower()
        before = len(issues)
        if units.get(unit) is None and not (unit == CITY_UNIT and group in city_groups):
            issues.append(
                Issue(field=f"row {number}, column 'unit'", reason=f"unknown unit code '{unit}'")
            )
        if group not in groups:
            issues.append(
                Issue(
                    field=f"row {number}, column 'group'",
                    reason=f"unknown group '{group}' (expected one of: {', '.join(groups)})",
                )
            )
        size = _whole_number(cells["size"])
        if size is None:
            issues.append(
                Issue(
                    field=f"row {number}, column 'size'",
                    reason=f"'{cells['size']}' is not a whole number",
                )
            )
        elif size < 0:
            issues.append(
                Issue(field=f"row {number}, column 'size'", reason=f"negative size {size}")
            )
        if (unit, group) in first_seen:
            issues.append(
                Issue(
                    field=f"row {number}",
                    reason=f"duplicate of row {first_seen[(unit, group)]} ({unit}, {group})",
                )
            )
        else:
            first_seen[(unit, group)] = number
        if len(issues) == before and size is not None:
            rows.append(Population(unit=unit, group=group, size=size))
    if not issues and not rows:
        issues.append(Issue(field="(file)", reason="no data rows"))
    if issues:
        raise PopulationError(path, issues)
    return rows


def _whole_number(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or value != int(value):
        return None
    return int(value)


def read_table(path: Path) -> list[list[str]]:
    """The first sheet of an xlsx file or a csv file (comma, semicolon or tab) as text."""
    try:
        if path.suffix.lower() == ".xlsx":
            return _read_xlsx(path)
        if path.suffix.lower() == ".csv":
            return _read_csv(path)
    except FileNotFoundError:
        raise PopulationError(path, [Issue(field="(file)", reason="file not found")]) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PopulationError(path, [Issue(field="(file)", reason=str(exc))]) from None
    raise PopulationError(path, [Issue(field="(file)", reason="expected a .xlsx or .csv file")])


def _read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        text = fh.read()
    first = text.splitlines()[0] if text else ""
    delimiter = max(",;\t", key=first.count)
    return [list(row) for row in csv.reader(text.splitlines(), delimiter=delimiter)]


def _read_xlsx(path: Path) -> list[list[str]]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise PopulationError(
            path, [Issue(field="(file)", reason=f"not a readable xlsx file ({exc})")]
        ) from None
    try:
        sheet = workbook.worksheets[0]
        return [
            ["" if cell is None else _cell_text(cell) for cell in row]
            for row in sheet.iter_rows(values_only=True)
        ]
    finally:
        workbook.close()


def _cell_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


async def replace_population(tx: Transaction, period: str, rows: list[Population]) -> None:
    """The period's frame becomes exactly ``rows`` (call inside one transaction)."""
    await tx.execute("DELETE FROM populations WHERE period = ?", (period,))
    await tx.executemany(
        "INSERT INTO populations(period, unit_code, group_code, size) VALUES (?, ?, ?, ?)",
        [(period, r.unit, r.group, r.size) for r in rows],
    )


async def populations(tx: Transaction, period: str) -> dict[tuple[str, str], int]:
    rows = await tx.fetchall(
        "SELECT unit_code, group_code, size FROM populations WHERE period = ?", (period,)
    )
    return {(r["unit_code"], r["group_code"]): int(r["size"]) for r in rows}


async def unit_frames(
    tx: Transaction, period: str, unit: str, margin: float
) -> dict[str, GroupFrame]:
    """Per group of ``unit`` with a known population: size and target sample.

    The target replaces the questionnaire's fixed ``min_sample`` for the
    "provisional" decision (docs/scoring.md, "Target sample").
    """
    rows = await tx.fetchall(
        "SELECT group_code, size FROM populations WHERE period = ? AND unit_code = ?",
        (period, unit),
    )
    return {
        str(r["group_code"]): GroupFrame(int(r["size"]), target_sample(int(r["size"]), margin))
        for r in rows
    }


def with_city_frames(
    frames: Mapping[str, GroupFrame],
    city_frames: Mapping[str, GroupFrame],
    replaced: Collection[str],
) -> dict[str, GroupFrame]:
    """A unit's frames where each group whose figure is the city-level one (``replaced``)
    takes the city's frame, or none: the target applies where the group is counted."""
    result = {g: f for g, f in frames.items() if g not in replaced}
    result.update({g: city_frames[g] for g in replaced if g in city_frames})
    return result
