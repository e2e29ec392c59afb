"""Scores as text for officials and the inspectorate: one clear answer first, then why.

Figures are rounded only for display, by one formatter (``number``) that text and
chart share, at the precision the band is decided on. Counts are shown in ranges.
"""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from babel.numbers import format_decimal
from pydantic import BaseModel, ConfigDict, Field

from core.config import PROJECT_ROOT
from core.fieldwork import ScreenOut
from core.i18n import gettext_for
from core.questionnaire import (
    DataFileError,
    Issue,
    Questionnaire,
    read_model,
)
from core.scoring import (
    K_ANONYMITY,
    Band,
    GroupScore,
    UnitScore,
    shown_value,
    undecided_bands,
)
from core.units import Unit

BAND_ICON: dict[Band, str] = {"terjaga": "🟢", "waspada": "🟡", "riskan": "🔴"}
UNDECIDED_ICON = "⚪"
KPK_RESULTS_PATH = PROJECT_ROOT / "surveys" / "kpk-results.toml"
# n is shown in these ranges, never exactly: (lowest, label)
N_RANGES: tuple[tuple[int, str], ...] = (
    (100, "100+"),
    (50, "50–99"),
    (20, "20–49"),
    (10, "10–19"),
    (K_ANONYMITY, f"{K_ANONYMITY}–9"),
)


def number(value: float, locale: str, digits: int = 2) -> str:
    """The one number formatter of text and chart (core.scoring.shown_value).

    At two decimals this is exactly the value the band is decided on, so 72.995
    shows as 73,00 and is waspada.
    """
    pattern = "#,##0." + "0" * digits if digits else "#,##0"
    return str(
        format_decimal(
            shown_value(value, digits), format=pattern, locale="id_ID" if locale == "id" else "en"
        )
    )


def n_range(n: int) -> str:
    """A count as shown to officials: "5–9", "10–19", "20–49", "50–99", "100+"."""
    for lowest, label in N_RANGES:
        if n >= lowest:
            return label
    return f"<{K_ANONYMITY}"


def _n_bounds(n: int) -> tuple[int, int | None]:
    """The lowest and highest count of the range ``n`` is shown in (None: open-ended)."""
    upper: int | None = None
    for lowest, _label in N_RANGES:
        if n >= lowest:
            return lowest, upper
        upper = lowest - 1
    return 0, upper


def share_range(n: int, target: int) -> str:
    """The share of the target reached, from the range ``n`` is shown in, widened outward
    to whole tens of percent: it moves only when the count's range does, so it cannot be
    differenced any finer than the count itself ("20–50%", "≥100%")."""
    if target <= 0:
        return "–"
    low, high = _n_bounds(n)
    low_pct = math.floor(low * 10 / target) * 10
    if high is None or high * 10 > 10 * target:
        return f"≥{min(low_pct, 100)}%"
    high_pct = math.ceil(high * 10 / target) * 10
    return f"{low_pct}–{high_pct}%"


def band_label(band: Band, questionnaire: Questionnaire, locale: str) -> str:
    if band == "riskan":
        return questionnaire.bands.low_label.get(locale)
    return band


def band_text(score: UnitScore, questionnaire: Questionnaire, locale: str) -> str:
    """The band, or the bands the interval cannot yet tell apart."""
    tr = gettext_for(locale)
    assert score.band is not None
    spanned = undecided_bands(score, questionnaire.bands)
    if not spanned:
        return band_label(score.band, questionnaire, locale)
    names = [band_label(b, questionnaire, locale) for b in spanned]
    if len(names) == 2:
        return tr.gettext("{first} or {second}, not yet distinguishable").format(
            first=names[0], second=names[1]
        )
    return tr.gettext("{first}, {second} or {third}, not yet distinguishable").format(
        first=names[0], second=names[1], third=names[2]
    )


def borrowed_scale(questionnaire: Questionnaire, locale: str) -> str:
    """One line: whose cut-offs the bands are."""
    bands = questionnaire.bands
    return (
        gettext_for(locale)
        .gettext(
            "Bands use KPK's cut-offs (terjaga from {high}, waspada from {low}), borrowed: "
            "this index is the inspectorate's own 0–100 scale, not KPK's index."
        )
        .format(high=number(bands.terjaga_min, locale, 0), low=number(bands.waspada_min, locale, 0))
    )


# -- KPK's official results ------------------------------------------------------------


class KpkResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: Annotated[str, Field(min_length=1, max_length=16)]
    index: Annotated[float, Field(ge=0, le=100)]
    source: Annotated[str, Field(min_length=1)]


class KpkResults(BaseModel):
    """KPK's official SPI result for the city, per survey period."""

    model_config = ConfigDict(extra="forbid")

    government: Annotated[str, Field(min_length=1)]
    results: list[KpkResult] = Field(default_factory=list)

    def latest(self, period: str) -> KpkResult | None:
        """The result of ``period``, else the latest one before it."""
        earlier = [r for r in self.results if _period_key(r.period) <= _period_key(period)]
        return max(earlier, key=lambda r: _period_key(r.period), default=None)


class KpkResultsError(DataFileError):
    pass


def _period_key(period: str) -> tuple[int, str]:
    return (int(period), "") if period.isdigit() else (0, period)


def load_kpk_results(path: Path) -> KpkResults:
    """Read and check the file; any problem raises KpkResultsError naming the field."""
    parsed = read_model(path, KpkResults, KpkResultsError)
    seen: set[str] = set()
    for i, result in enumerate(parsed.results):
        if result.period in seen:
            raise KpkResultsError(
                path, [Issue(field=f"results[{i}].period", reason=f"duplicate '{result.period}'")]
            )
        seen.add(result.period)
    return parsed


@functools.cache
def default_kpk_results() -> KpkResults:
    return load_kpk_results(KPK_RESULTS_PATH)


@dataclass
class UnitReport:
    unit: Unit
    score: UnitScore
    previous: UnitScore | None = None
    flags: dict[str, int] | None = None  # shown to admins only


def headline(report: UnitReport, questionnaire: Questionnaire, locale: str) -> str:
    """Index, band and colour in one line (or why there is none yet)."""
    tr = gettext_for(locale)
    score = report.score
    if not score.shown or score.corrected is None or score.band is None:
        return tr.gettext("not enough respondents yet (at least {k} per group)").format(
            k=K_ANONYMITY
        )
    icon = UNDECIDED_ICON if undecided_bands(score, questionnaire.bands) else BAND_ICON[score.band]
    text = f"{icon} {number(score.corrected, locale)} – {band_text(score, questionnaire, locale)}"
    if score.provisional:
        text += " " + tr.gettext("(provisional)")
    return text


def render_unit(report: UnitReport, questionnaire: Questionnaire, locale: str) -> str:
    tr = gettext_for(locale)
    score = report.score
    lines = [
        f"<b>{html.escape(report.unit.name)}</b>",
        tr.gettext("Integrity index {period}: {headline}").format(
            period=score.period, headline=headline(report, questionnaire, locale)
        ),
    ]
    if not score.shown or score.corrected is None:
        return "\n".join(lines)
    if score.ci is not None:
        lines.append(
            tr.gettext("95% confidence interval: {low}–{high}").format(
                low=number(score.ci[0], locale), high=number(score.ci[1], locale)
            )
        )
    lines.append(borrowed_scale(questionnaire, locale))
    if score.deduction and score.index is not None:
        lines.append(
            tr.gettext("Before correction: {before}; correction −{deduction}").format(
                before=number(score.index, locale), deduction=number(score.deduction, locale)
            )
        )
    if score.provisional:
        needed = {g.code: g.min_sample for g in score.groups}
        missing = ", ".join(
            tr.gettext("{group} at least {n}").format(
                group=_group_title(questionnaire, g, locale),
                n=max(K_ANONYMITY, needed.get(g, _min_sample(questionnaire, g))),
            )
            for g in score.missing
        )
        lines.append(
            tr.gettext(
                "Provisional: the band is not final until each group reaches its minimum "
                "sample ({missing})."
            ).format(missing=missing)
        )
    if (
        report.previous is not None
        and report.previous.shown
        and report.previous.corrected is not None
    ):
        delta = score.corrected - report.previous.corrected
        lines.append(
            tr.gettext("Change since {period}: {delta}").format(
                period=report.previous.period,
                delta=("+" if delta >= 0 else "−") + number(abs(delta), locale),
            )
        )
    lines += ["", "<b>{}</b>".format(tr.gettext("Respondents"))]
    for group in score.groups:
        value = (
            number(group.index, locale)
            if group.shown and group.index is not None
            else tr.gettext("hidden (fewer than {k})").format(k=K_ANONYMITY)
        )
        lines.append(
            f"• {_group_title(questionnaire, group.code, locale)}: "
            f"n {html.escape(n_range(group.n))} – {value}"
        )
        lines.append("   " + html.escape(reach_text(group, locale)))
        if group.city_level:
            lines.append(
                "   "
                + html.escape(
                    tr.gettext(
                        "city-level figure: fewer than {n} of the unit's own, so the experts' "
                        "assessment of the whole government is used"
                    ).format(n=group.min_sample)
                )
            )
    lines += ["", "<b>{}</b>".format(tr.gettext("Dimensions"))]
    for dimension in score.dimensions:
        if dimension.score is None:
            continue
        title = _dimension_title(questionnaire, dimension.code, locale)
        lines.append(f"• {html.escape(title)}: {number(dimension.score, locale)}")
    if score.priorities:
        lines += ["", "<b>{}</b>".format(tr.gettext("Priority areas"))]
        for priority in score.priorities:
            title = _dimension_title(questionnaire, priority.dimension, locale)
            lines.append(f"• {html.escape(title)} ({number(priority.score, locale)})")
            for qid, item_score in priority.weakest_items:
                question = questionnaire.question(qid)
                text = question.text.get(locale) if question else qid
                lines.append(f"   – {html.escape(_short(text))} ({number(item_score, locale)})")
    if report.flags is not None:
        lines += [
            "",
            tr.gettext("Data-quality flags: {flags}").format(flags=flag_text(report.flags, locale)),
        ]
    return "\n".join(lines)


def reach_text(group: GroupScore, locale: str) -> str:
    """Target and population exactly, the share reached as a range (core.report.share_range)."""
    tr = gettext_for(locale)
    share = share_range(group.n, group.target)
    if group.population is None:
        return tr.gettext("target {target}, reached {share}").format(
            target=group.target, share=share
        )
    return tr.gettext("target {target} of a population of {population}, reached {share}").format(
        target=group.target, population=group.population, share=share
    )


def flag_text(flags: dict[str, int], locale: str) -> str:
    tr = gettext_for(locale)
    if not flags:
        return tr.gettext("none")
    names = {
        "speeder": tr.gettext("too fast"),
        "straightline": tr.gettext("same answer throughout"),
        "burst": tr.gettext("burst of completions"),
    }
    return ", ".join(f"{names.get(k, k)} {v}" for k, v in sorted(flags.items()))


def render_ranking(
    reports: list[UnitReport], questionnaire: Questionnaire, locale: str, page: int, per_page: int
) -> str:
    """All units, best first; units without a shown score at the end."""
    tr = gettext_for(locale)
    ordered = sorted(
        reports,
        key=lambda r: (
            r.score.shown and r.score.corrected is not None,
            r.score.corrected if r.score.shown and r.score.corrected is not None else 0.0,
        ),
        reverse=True,
    )
    pages = max(1, -(-len(ordered) // per_page))
    page = min(max(page, 0), pages - 1)
    lines = [
        "<b>{}</b>".format(
            tr.gettext("Ranking {period} (page {page}/{pages})").format(
                period=questionnaire.period, page=page + 1, pages=pages
            )
        )
    ]
    for position, report in enumerate(
        ordered[page * per_page : (page + 1) * per_page], page * per_page + 1
    ):
        lines.append(
            f"{position}. {html.escape(report.unit.name)}: "
            f"{headline(report, questionnaire, locale)}"
        )
    return "\n".join(lines)


def render_recap(
    reports: list[UnitReport],
    questionnaire: Questionnaire,
    locale: str,
    government: str,
    flags: dict[str, int],
    city_index: float | None = None,
    kpk: KpkResults | None = None,
    screened: Sequence[ScreenOut] = (),
    completed: Mapping[str, int] | None = None,
    city_scores: UnitScore | None = None,
) -> str:
    """The city: pooled index beside KPK's official result, bands, participation.

    ``city_index`` is the pooled index (core.publish.published_city_index); without
    it the mean of the unit indices is shown, as before. ``screened`` are the attempts
    screened out (core.fieldwork.screenouts) beside ``completed`` responses per group.
    ``city_scores`` is the pseudo-unit ``kota`` (experts rating the whole government):
    a city-level group counts its people once, not once per unit that uses the figure.
    """
    tr = gettext_for(locale)
    shown = [r.score for r in reports if r.score.shown and r.score.corrected is not None]
    lines = ["<b>{}</b>".format(html.escape(f"{government} – {questionnaire.period}"))]
    if city_index is not None:
        lines.append(
            tr.gettext("City index, all respondents pooled: {index}").format(
                index=number(city_index, locale)
            )
        )
    kpk_result = (kpk if kpk is not None else default_kpk_results()).latest(questionnaire.period)
    if kpk_result is not None:
        lines.append(
            tr.gettext("KPK's official SPI result for the city ({period}): {index}").format(
                period=html.escape(kpk_result.period), index=number(kpk_result.index, locale, 1)
            )
        )
    if shown:
        city = sum(s.corrected or 0.0 for s in shown) / len(shown)
        lines.append(
            tr.gettext("Mean index of {n} units with a score: {index}").format(
                n=len(shown), index=number(city, locale)
            )
        )
        counts = {band: sum(1 for s in shown if s.band == band) for band in BAND_ICON}
        lines.append(
            " ".join(
                f"{BAND_ICON[b]} {band_label(b, questionnaire, locale)} {n}"
                for b, n in counts.items()
            )
        )
    else:
        lines.append(tr.gettext("No unit has enough respondents yet."))
    lines.append(borrowed_scale(questionnaire, locale))
    lines += ["", "<b>{}</b>".format(tr.gettext("Participation"))]
    for group in questionnaire.groups:
        scores = [g for r in reports for g in r.score.groups if g.code == group.code]
        city_group = _city_group(city_scores, group.code) if group.city_level else None
        done = sum(g.n for g in scores if not g.city_level) + (city_group.n if city_group else 0)
        target = sum(g.target for g in scores)
        line = tr.gettext("• {group}: n {n} of a target of {target}").format(
            group=group.title.get(locale), n=html.escape(n_range(done)), target=target
        )
        line += ", " + tr.gettext("reached {share}").format(share=share_range(done, target))
        framed = [g.population for g in scores if g.population is not None]
        if framed:
            line += "; " + tr.gettext("population {population} in {units} of {total} units").format(
                population=sum(framed), units=len(framed), total=len(scores)
            )
        lines.append(line)
        if city_group is not None and city_group.n > 0:
            lines.append(
                "   "
                + tr.gettext(
                    "assessing the government as a whole: n {n}, used for {units} units "
                    "without enough of their own"
                ).format(
                    n=html.escape(n_range(city_group.n)),
                    units=sum(1 for g in scores if g.city_level),
                )
            )
    if screened:
        lines += ["", "<b>{}</b>".format(tr.gettext("Screened out (attempts)"))]
        lines += screenout_text(screened, completed or {}, questionnaire, locale)
    lines += ["", tr.gettext("Data-quality flags: {flags}").format(flags=flag_text(flags, locale))]
    return "\n".join(lines)


def screenout_text(
    screened: Sequence[ScreenOut],
    completed: Mapping[str, int],
    questionnaire: Questionnaire,
    locale: str,
) -> list[str]:
    """Per group and ineligible answer: attempts turned away, and their share of the group's
    attempts and completed responses. The share turned away for using a broker (*calo*) is
    itself an integrity signal; attempts are counted, not people."""
    tr = gettext_for(locale)
    per_group: dict[str, int] = {}
    per_answer: dict[tuple[str, str, str], int] = {}
    for out in screened:
        per_group[out.group] = per_group.get(out.group, 0) + out.attempts
        key = (out.group, out.question, out.option)
        per_answer[key] = per_answer.get(key, 0) + out.attempts
    lines = []
    for (group_code, question_id, option_code), attempts in sorted(per_answer.items()):
        group = questionnaire.group(group_code)
        screen = next((q for q in group.screening if q.id == question_id), None) if group else None
        option = screen.option(option_code) if screen else None
        label = option.text.get(locale) if option else f"{question_id} = {option_code}"
        base = per_group[group_code] + completed.get(group_code, 0)
        lines.append(
            html.escape(
                tr.gettext(
                    "• {group}, “{answer}”: {attempts} ({share}% of {base} attempts)"
                ).format(
                    group=_group_title(questionnaire, group_code, locale),
                    answer=label,
                    attempts=attempts,
                    share=round(100 * attempts / base),
                    base=base,
                )
            )
        )
    return lines


def _city_group(city: UnitScore | None, code: str) -> GroupScore | None:
    return next((g for g in city.groups if g.code == code), None) if city else None


def _min_sample(questionnaire: Questionnaire, code: str) -> int:
    group = questionnaire.group(code)
    return group.min_sample if group else K_ANONYMITY


def _group_title(questionnaire: Questionnaire, code: str, locale: str) -> str:
    group = questionnaire.group(code)
    return group.title.get(locale) if group else code


def _dimension_title(questionnaire: Questionnaire, code: str, locale: str) -> str:
    dimension = questionnaire.dimension(code)
    return dimension.title.get(locale) if dimension else code


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
