"""Fieldwork progress: responses against target and population, per unit and group.

Channel-neutral reads for the admins' daily progress table (`spi-bot progress`)
and for `/skor`, `/rekap` and the export once they show response rates.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.invitations import response_rates
from core.population import populations, target_sample
from core.questionnaire import Questionnaire
from core.scoring import CITY_UNIT
from core.storage import Transaction
from core.units import Unit, UnitRegistry


@dataclass(frozen=True)
class Progress:
    unit: str
    unit_name: str
    group: str
    responses: int
    target: int
    population: int | None  # None: no population frame row, the questionnaire's target applies
    sent: int = 0  # personal invitations issued
    used: int = 0  # personal invitations used

    @property
    def share(self) -> float:
        return self.responses / self.target if self.target else 1.0

    @property
    def shortfall(self) -> int:
        return max(0, self.target - self.responses)


def target_for(
    questionnaire: Questionnaire, group: str, population: int | None, margin: float
) -> int:
    """The population's target sample where it is known, else the questionnaire's target."""
    if population is not None:
        return target_sample(population, margin)
    found = questionnaire.group(group)
    return found.target if found is not None else 0


async def completed_counts(
    tx: Transaction, period: str, sampled_only: bool = False
) -> dict[tuple[str, str], int]:
    """Completed responses per unit and group; with ``sampled_only``, those that came by a
    personal invitation (SAMPLED_ONLY)."""
    rows = await tx.fetchall(
        "SELECT unit_code, group_code, COUNT(*) AS n FROM responses "
        "WHERE period = ? AND status = 'completed' AND (route = 'sample' OR NOT ?) "
        "GROUP BY unit_code, group_code",
        (period, int(sampled_only)),
    )
    return {(r["unit_code"], r["group_code"]): int(r["n"]) for r in rows}


async def progress(
    tx: Transaction,
    questionnaire: Questionnaire,
    units: UnitRegistry,
    margin: float,
    sampled_only: bool = False,
) -> list[Progress]:
    """Every unit and group, those furthest behind their target first."""
    period = questionnaire.period
    frame = await populations(tx, period)
    counts = await completed_counts(tx, period, sampled_only)
    rates = {(r.unit, r.group): r for r in await response_rates(tx, period)}

    def row(unit: Unit, group: str) -> Progress:
        population, rate = frame.get((unit.code, group)), rates.get((unit.code, group))
        return Progress(
            unit=unit.code,
            unit_name=unit.name,
            group=group,
            responses=counts.get((unit.code, group), 0),
            target=target_for(questionnaire, group, population, margin),
            population=population,
            sent=rate.sent if rate else 0,
            used=rate.used if rate else 0,
        )

    rows = [row(unit, group.code) for unit in units.units for group in questionnaire.groups]
    # experts who rate the government as a whole
    rows += [row(units.city, g.code) for g in questionnaire.groups if g.city_level]
    order = {CITY_UNIT: -1} | {u.code: i for i, u in enumerate(units.units)}
    groups: dict[str, int] = {g.code: i for i, g in enumerate(questionnaire.groups)}
    rows.sort(key=lambda r: (r.share, -r.shortfall, order[r.unit], groups[r.group]))
    return rows


@dataclass(frozen=True)
class ScreenOut:
    """Attempts screened out by one ineligible answer (e.g. a broker: *calo*)."""

    unit: str
    group: str
    question: str
    option: str
    attempts: int


async def count_screenout(
    tx: Transaction, period: str, unit: str, group: str, question: str, option: str
) -> None:
    """One more attempt screened out; a counter only, with nothing of who or when."""
    await tx.execute(
        "INSERT INTO screenouts(period, unit_code, group_code, question_id, option_code, n) "
        "VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT DO UPDATE SET n = n + 1",
        (period, unit, group, question, option),
    )


async def screenouts(tx: Transaction, period: str) -> list[ScreenOut]:
    rows = await tx.fetchall(
        "SELECT unit_code, group_code, question_id, option_code, n FROM screenouts "
        "WHERE period = ? ORDER BY unit_code, group_code, question_id, option_code",
        (period,),
    )
    return [
        ScreenOut(
            unit=r["unit_code"],
            group=r["group_code"],
            question=r["question_id"],
            option=r["option_code"],
            attempts=int(r["n"]),
        )
        for r in rows
    ]


def screenout_lines(outs: list[ScreenOut], rows: list[Progress]) -> list[str]:
    """Per ineligible answer: attempts, beside the unit and group's completed responses.

    The share of service users turned away for using a broker is itself an integrity
    signal; attempts are counted, not people (someone may try twice).
    """
    responses = {(r.unit, r.group): r.responses for r in rows}
    lines = []
    for out in outs:
        done = responses.get((out.unit, out.group), 0)
        share = out.attempts / (out.attempts + done)
        lines.append(
            f"{out.unit} {out.group}: {out.attempts} screened out at {out.question} = "
            f"{out.option} ({share * 100:.0f}% of {out.attempts + done} attempts and responses)"
        )
    return lines


def progress_table(rows: list[Progress]) -> str:
    """A fixed-width text table for the terminal or a monospace message."""
    header = ("unit", "group", "responses", "target", "population", "reached", "invited")
    lines = [header]
    for r in rows:
        lines.append(
            (
                r.unit,
                r.group,
                str(r.responses),
                str(r.target),
                "-" if r.population is None else str(r.population),
                f"{min(r.share, 9.99) * 100:.0f}%",
                f"{r.used}/{r.sent}" if r.sent else "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        cells = [
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
