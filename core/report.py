"""Scores as text for officials and the inspectorate: one clear answer first, then why.

Figures are rounded only here, for display, with the locale's decimal mark.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from babel.numbers import format_decimal

from core.i18n import gettext_for
from core.questionnaire import Questionnaire
from core.scoring import K_ANONYMITY, Band, UnitScore
from core.units import Unit

BAND_ICON: dict[Band, str] = {"terjaga": "🟢", "waspada": "🟡", "riskan": "🔴"}


def number(value: float, locale: str, digits: int = 2) -> str:
    """Truncated, not rounded: 72.996 shows as 72,99 and stays below the 73 line,
    as its band (decided on the unrounded value) says."""
    exponent = Decimal(1).scaleb(-digits)
    truncated = Decimal(repr(value)).quantize(exponent, rounding=ROUND_DOWN)
    pattern = "#,##0." + "0" * digits if digits else "#,##0"
    return str(
        format_decimal(truncated, format=pattern, locale="id_ID" if locale == "id" else "en")
    )


def band_label(band: Band, questionnaire: Questionnaire, locale: str) -> str:
    if band == "riskan":
        return questionnaire.bands.low_label.get(locale)
    return band


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
        return tr.gettext("not enough respondents yet ({n} of at least {k})").format(
            n=score.n, k=K_ANONYMITY
        )
    label = band_label(score.band, questionnaire, locale)
    text = f"{BAND_ICON[score.band]} {number(score.corrected, locale)} – {label}"
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
    if score.deduction and score.index is not None:
        lines.append(
            tr.gettext("Before correction: {before}; correction −{deduction}").format(
                before=number(score.index, locale), deduction=number(score.deduction, locale)
            )
        )
    if score.provisional:
        missing = ", ".join(
            tr.gettext("{group} {n} more").format(group=_group_title(questionnaire, g, locale), n=n)
            for g, n in score.missing.items()
        )
        lines.append(
            tr.gettext(
                "Provisional: the band is not final until the minimum sample "
                "is reached ({missing})."
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
            f"n={group.n}/{group.target} – {value}"
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
) -> str:
    """The city: mean of unit indices, bands, participation by group against targets."""
    tr = gettext_for(locale)
    shown = [r.score for r in reports if r.score.shown and r.score.corrected is not None]
    lines = ["<b>{}</b>".format(html.escape(f"{government} – {questionnaire.period}"))]
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
    lines += ["", "<b>{}</b>".format(tr.gettext("Participation"))]
    for group in questionnaire.groups:
        done = sum(next((g.n for g in r.score.groups if g.code == group.code), 0) for r in reports)
        target = group.target * len(reports)
        lines.append(
            f"• {group.title.get(locale)}: {done}/{target} "
            f"({number(100 * done / target if target else 0.0, locale, 0)}%)"
        )
    lines += ["", tr.gettext("Data-quality flags: {flags}").format(flags=flag_text(flags, locale))]
    return "\n".join(lines)


def _group_title(questionnaire: Questionnaire, code: str, locale: str) -> str:
    group = questionnaire.group(code)
    return group.title.get(locale) if group else code


def _dimension_title(questionnaire: Questionnaire, code: str, locale: str) -> str:
    dimension = questionnaire.dimension(code)
    return dimension.title.get(locale) if dimension else code


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
