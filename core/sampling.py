"""KPK-style sampling: a reproducible random draw from a unit's staff roster.

The roster is the inspectorate's own list (csv or xlsx, any columns). The draw
depends only on the roster's rows and the seed, so the inspectorate (or an
auditor) can repeat it and get the same people; each gets one personal,
single-use invitation (core/invitations.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from core.population import PopulationError, read_table
from core.questionnaire import DataFileError, Issue


class RosterError(DataFileError):
    pass


@dataclass(frozen=True)
class Roster:
    columns: list[str]
    rows: list[list[str]]


def read_roster(path: Path) -> Roster:
    """Header and non-empty rows; duplicate rows or columns are errors (nothing drawn)."""
    try:
        table = read_table(path)
    except PopulationError as exc:
        raise RosterError(path, exc.issues) from None
    if not table or not any(cell.strip() for cell in table[0]):
        raise RosterError(path, [Issue(field="(file)", reason="no header row")])
    columns = [cell.strip() for cell in table[0]]
    issues: list[Issue] = []
    seen_columns: set[str] = set()
    for i, name in enumerate(columns, start=1):
        if not name:
            issues.append(Issue(field=f"(header) column {i}", reason="empty column name"))
        elif name.lower() in seen_columns:
            issues.append(Issue(field=f"(header) column {i}", reason=f"duplicate column '{name}'"))
        seen_columns.add(name.lower())
    rows: list[list[str]] = []
    first_seen: dict[tuple[str, ...], int] = {}
    for number, raw in enumerate(table[1:], start=2):
        cells = [cell.strip() for cell in raw] + [""] * (len(columns) - len(raw))
        if not any(cells):
            continue
        if len(cells) > len(columns) and any(cells[len(columns) :]):
            issues.append(Issue(field=f"row {number}", reason="more cells than header columns"))
            continue
        key = tuple(cells[: len(columns)])
        if key in first_seen:
            issues.append(
                Issue(field=f"row {number}", reason=f"duplicate of row {first_seen[key]}")
            )
            continue
        first_seen[key] = number
        rows.append(list(key))
    if not issues and not rows:
        issues.append(Issue(field="(file)", reason="no data rows"))
    if issues:
        raise RosterError(path, issues)
    return Roster(columns=columns, rows=rows)


def draw(population: int, n: int, seed: str) -> list[int]:
    """``n`` distinct row positions out of ``population``, the same for the same seed,
    in roster order."""
    if n < 1:
        raise ValueError(f"--n must be at least 1 (got {n})")
    if n > population:
        raise ValueError(f"--n {n} is larger than the roster ({population} people)")
    return sorted(random.Random(f"spi-sample:{seed}").sample(range(population), n))
