"""QR codes (segno) and a printable A4 poster per unit for service counters.

Both are drawn locally: no network and no Bot API call. The poster is built
with matplotlib's object API on the Agg canvas (as bot/chart.py), at 300 dpi:
the unit's name, the QR code of its poster link, and one line of explanation
in Indonesian, the language of the counters it hangs at.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import segno
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

A4_INCHES = (8.27, 11.69)
POSTER_DPI = 300  # 2481 × 3507 pixels
QR_SCALE = 10  # pixels per module in the stand-alone QR image
EXPLANATION = (
    "Pindai kode QR ini dengan kamera ponsel Anda untuk menilai integritas layanan unit ini "
    "lewat {channels}: anonim, sukarela, sekitar 10 menit."
)
ONE_CODE = "Telegram"
TWO_CODES = "Telegram (kiri) atau WhatsApp (kanan)"


def qr_code(url: str) -> segno.QRCode:
    return segno.make(url, error="m", micro=False)


def write_qr(url: str, path: Path) -> None:
    """A PNG of the link's QR code, large enough to print at 3 × 3 cm."""
    path.parent.mkdir(parents=True, exist_ok=True)
    qr_code(url).save(str(path), kind="png", scale=QR_SCALE, border=4)


def write_poster(
    path: Path,
    unit_name: str,
    government: str,
    title: str,
    telegram_url: str,
    whatsapp_url: str | None = None,
) -> None:
    """An A4 PNG: the survey's title, the unit's name, its QR code (a second one for
    WhatsApp when there is a number), one line of explanation."""
    codes = [telegram_url] + ([whatsapp_url] if whatsapp_url else [])
    explanation = EXPLANATION.format(channels=TWO_CODES if whatsapp_url else ONE_CODE)
    figure = Figure(figsize=A4_INCHES, facecolor="white")
    FigureCanvasAgg(figure)
    figure.text(0.5, 0.94, government, ha="center", va="center", fontsize=16, color="#444444")
    figure.text(
        0.5, 0.895, "\n".join(textwrap.wrap(title, 40)), ha="center", va="center", fontsize=22
    )
    figure.text(
        0.5,
        0.80,
        "\n".join(textwrap.wrap(unit_name, 30)),
        ha="center",
        va="center",
        fontsize=30,
        fontweight="bold",
    )
    # One large code, or two side by side; each square, filling the page's width.
    width, bottom = (0.6, 0.30) if len(codes) == 1 else (0.4, 0.40)
    for i, url in enumerate(codes):
        left = 0.2 if len(codes) == 1 else 0.07 + i * 0.46
        axes = figure.add_axes((left, bottom, width, width * A4_INCHES[0] / A4_INCHES[1]))
        axes.imshow(_modules(url), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes.set_axis_off()
        if len(codes) > 1:
            label = "Telegram" if i == 0 else "WhatsApp"
            figure.text(left + width / 2, bottom - 0.01, label, ha="center", va="top", fontsize=18)
    figure.text(
        0.5,
        0.22,
        "\n".join(textwrap.wrap(explanation, 52)),
        ha="center",
        va="center",
        fontsize=17,
        linespacing=1.5,
    )
    links = [telegram_url] + ([whatsapp_url] if whatsapp_url else [])
    figure.text(0.5, 0.11, "\n".join(links), ha="center", va="center", fontsize=10, color="#666666")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(str(path), dpi=POSTER_DPI, format="png", facecolor="white")


def _modules(url: str) -> list[list[float]]:
    """The QR code's modules with its quiet zone: 0 dark, 1 light."""
    return [
        [0.0 if dark else 1.0 for dark in row]
        for row in qr_code(url).matrix_iter(scale=1, border=4)
    ]
