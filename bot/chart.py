"""A unit's dimension scores as a small PNG bar chart for `/skor`.

Why a picture: officials see at a glance which dimensions fall below the
waspada and terjaga lines. The figure is built with matplotlib's object API
on the Agg canvas, not pyplot, so no global figure registry exists that could
leak memory in a long-running bot, and no display is needed.
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from core.i18n import gettext_for
from core.questionnaire import Questionnaire
from core.report import band_text, number
from core.scoring import Band, UnitScore, band_of

COLOURS: dict[Band, str] = {"terjaga": "#2e9e4f", "waspada": "#f2c12e", "riskan": "#d64541"}
SIZE_INCHES = (8.0, 5.0)
DPI = 100  # 800 × 500 pixels


def dimension_chart(
    score: UnitScore, questionnaire: Questionnaire, locale: str, unit_name: str
) -> bytes:
    """PNG bytes: one horizontal bar per dimension with a score, coloured by band."""
    tr = gettext_for(locale)
    bands = questionnaire.bands
    shown = [d for d in score.dimensions if d.score is not None]
    titles = []
    for dimension in shown:
        spec = questionnaire.dimension(dimension.code)
        titles.append(spec.title.get(locale) if spec else dimension.code)
    values = [d.score or 0.0 for d in shown]

    figure = Figure(figsize=SIZE_INCHES, dpi=DPI)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if shown:
        positions = list(range(len(shown)))[::-1]  # first dimension at the top
        axes.barh(
            positions,
            values,
            color=[COLOURS[band_of(v, bands)] for v in values],
            height=0.6,
        )
        axes.set_yticks(positions, labels=titles)
        for y, value in zip(positions, values, strict=True):
            axes.text(
                value + 1,
                y,
                number(value, locale),
                va="center",
                fontsize=9,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0, "alpha": 0.85},
            )
    else:
        axes.set_yticks([])
        axes.text(
            50,
            0.5,
            tr.gettext("Not enough respondents for dimension scores yet"),
            ha="center",
            va="center",
            transform=axes.transData,
        )
        axes.set_ylim(0, 1)
    lines: tuple[tuple[float, Band], ...] = (
        (bands.waspada_min, "waspada"),
        (bands.terjaga_min, "terjaga"),
    )
    for limit, band in lines:
        axes.axvline(limit, color=COLOURS[band], linestyle="--", linewidth=1.2)
        axes.text(
            limit,
            1.0,
            number(limit, locale, 0),
            transform=axes.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
            color="#555555",
        )
    axes.set_xlim(0, 100)
    axes.set_xlabel(tr.gettext("Dimension score (0–100)"))
    axes.spines[["top", "right"]].set_visible(False)

    title = unit_name
    if score.shown and score.corrected is not None and score.band is not None:
        title += " — " + tr.gettext("Index {period}: {index} ({band})").format(
            period=score.period,
            index=number(score.corrected, locale),
            band=band_text(score, questionnaire, locale),
        )
        if score.provisional:
            title += " " + tr.gettext("(provisional)")
    figure.suptitle(title, fontsize=11, wrap=True)
    # Margins from the measured label widths: an automatic layout pass
    # (tight/constrained) would draw the whole figure twice.
    renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]
    widest = max((t.get_window_extent(renderer).width for t in axes.get_yticklabels()), default=0)
    left = min(0.55, (widest + 16) / (SIZE_INCHES[0] * DPI))
    figure.subplots_adjust(left=left, right=0.95, top=0.86, bottom=0.12)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    figure.clear()
    return buffer.getvalue()
