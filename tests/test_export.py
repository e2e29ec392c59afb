"""The auditor's export (XLSX/CSV, in-process and through the CLI) and the `/skor` chart."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook

from bot.chart import dimension_chart
from bot.export_cli import export_command
from core.aggregates import add_correction, load_unit_aggregate
from core.config import load_settings
from core.engine import Engine
from core.export import ExportData, Table, export_rows, write_csv, write_xlsx
from core.questionnaire import Questionnaire
from core.scoring import score_unit
from core.storage import Storage
from core.units import UnitRegistry
from tests.survey_driver import Clock
from tests.test_scoring import EKSPER, EKSTERNAL, INTERNAL, audit, take_survey

SHEETS = ["Skor unit", "Skor dimensi", "Jawaban"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def filled(engine: Engine, clock: Clock, storage: Storage) -> Storage:
    """Dinas Kesehatan with all three groups (experts under 5) and a correction."""
    for i in range(6):
        await take_survey(engine, clock, f"ex{i}", EKSTERNAL, shift=i)
    for i in range(5):
        await take_survey(engine, clock, f"in{i}", INTERNAL, shift=i + 2)
    for i in range(2):
        await take_survey(engine, clock, f"ek{i}", EKSPER, shift=i + 1)
    await take_survey(engine, clock, "fast", EKSTERNAL, shift=1, seconds=30)  # a speeder
    async with storage.transaction() as tx:
        await add_correction(tx, engine.period, "dinkes", 2.25, "pengarahan", clock.now)
    return storage


async def collect(
    storage: Storage, questionnaire: Questionnaire, units: UnitRegistry
) -> ExportData:
    async with storage.transaction() as tx:
        return await export_rows(tx, questionnaire, units, questionnaire.period)


def sheet_rows(path: Path | io.BytesIO, title: str) -> list[dict[str, object]]:
    sheet = load_workbook(path)[title]
    rows = list(sheet.iter_rows(values_only=True))
    header = [str(c) for c in rows[0]]
    return [dict(zip(header, row, strict=True)) for row in rows[1:]]


def recompute_from_answers(
    answers: list[dict[str, object]], questionnaire: Questionnaire, unit: str, deduction: float
) -> dict[str, object]:
    """docs/scoring.md applied to the "Jawaban" rows of one unit (counted responses only)."""
    rows = [r for r in answers if r["unit_code"] == unit and r["counted"] == 1]
    counted = {int(str(r["response_id"])): str(r["group"]) for r in rows}
    items = [
        (
            int(str(r["response_id"])),
            str(r["group"]),
            str(r["dimension"]) if r["dimension"] else None,
            float(str(r["item_score"])) if r["item_score"] is not None else None,
        )
        for r in rows
    ]
    result = audit(
        items,
        counted,
        {d.code: d.weight for d in questionnaire.dimensions},
        {g.code: g.weight for g in questionnaire.groups},
        deduction,
    )
    return {
        "index": result.index,
        "corrected": result.corrected,
        "ci_low": result.ci[0] if result.ci else None,
        "ci_high": result.ci[1] if result.ci else None,
        **{f"n_{g}": n for g, n in result.n.items()},
        **{f"index_{g}": i for g, i in result.group_indices.items()},
        "dimensions": result.dimension_means,
    }


async def test_xlsx_has_three_sheets_and_the_scores_recompute_from_the_answers(
    filled: Storage, questionnaire: Questionnaire, units: UnitRegistry, tmp_path: Path
) -> None:
    data = await collect(filled, questionnaire, units)
    out = tmp_path / "export.xlsx"
    write_xlsx(data, out)

    book = load_workbook(out)
    assert book.sheetnames == SHEETS
    for title in SHEETS:
        sheet = book[title]
        assert sheet.freeze_panes == "A2"
        assert all(cell.font.b for cell in sheet[1])
        assert sheet.column_dimensions["A"].width >= 8

    unit_rows = {r["unit_code"]: r for r in sheet_rows(out, "Skor unit")}
    assert len(unit_rows) == len(units)
    dinkes = unit_rows["dinkes"]
    assert dinkes["unit_name"] == "Dinas Kesehatan"
    assert (dinkes["n_internal"], dinkes["n_eksternal"], dinkes["n_eksper"]) == (5, 7, 2)
    assert dinkes["flag_speeder"] == 1 and dinkes["n_excluded"] == 0
    assert dinkes["deduction"] == 2.25 and dinkes["correction_reasons"] == "pengarahan"
    assert isinstance(dinkes["index"], float) and isinstance(dinkes["n_total"], int)
    assert dinkes["provisional"] == 1  # internal 5 and eksternal 7 of min 10, eksper 2 of 5
    empty = unit_rows["setda"]
    assert empty["n_total"] == 0 and empty["index"] is None and empty["band"] is None

    answers = sheet_rows(out, "Jawaban")
    assert {len(str(r["pseudonym"])) for r in answers} == {16}
    assert len({r["response_id"] for r in answers}) == data.responses == 14
    expected = recompute_from_answers(answers, questionnaire, "dinkes", 2.25)
    for column in ("index", "corrected", "ci_low", "ci_high"):
        assert dinkes[column] == pytest.approx(expected[column], abs=1e-4), column
    for group in questionnaire.groups:
        assert dinkes[f"n_{group.code}"] == expected[f"n_{group.code}"]
        assert dinkes[f"index_{group.code}"] == pytest.approx(expected[f"index_{group.code}"])
    # 2 experts: no dimension reaches k = 5 answers, so the group has no index (and is
    # not in the unit index); their answers are still in the Jawaban sheet
    assert dinkes["index_eksper"] is None
    internal, eksternal = dinkes["index_internal"], dinkes["index_eksternal"]
    assert isinstance(internal, float) and isinstance(eksternal, float)
    assert dinkes["index"] == pytest.approx((0.35 * internal + 0.45 * eksternal) / 0.8)

    # the sheet holds what /skor computes, unrounded (XLSX keeps 16 significant digits)
    async with filled.transaction() as tx:
        score = score_unit(questionnaire, await load_unit_aggregate(tx, "2025", "dinkes"))
    assert dinkes["index"] == pytest.approx(score.index, rel=1e-15)
    assert dinkes["corrected"] == pytest.approx(score.corrected, rel=1e-15)
    assert dinkes["band"] == score.band

    dimensions = sheet_rows(out, "Skor dimensi")
    by_group = {
        (r["group"], r["dimension"]): (r["n"], r["mean"])
        for r in dimensions
        if r["unit_code"] == "dinkes" and r["group"] != "all"
    }
    audited = expected["dimensions"]
    assert isinstance(audited, dict) and set(by_group) == set(audited)
    for key, (n, mean) in audited.items():
        assert by_group[key] == (n, pytest.approx(mean))
    overall = {r["dimension"]: r["mean"] for r in dimensions if r["group"] == "all"}
    shown = {d.code: d.score for d in score.dimensions if d.score is not None}
    assert overall == pytest.approx(shown, rel=1e-15)


async def test_csv_files_have_bom_and_full_precision(
    filled: Storage, questionnaire: Questionnaire, units: UnitRegistry, tmp_path: Path
) -> None:
    data = await collect(filled, questionnaire, units)
    written = write_csv(data, tmp_path / "out")
    assert [p.name for p in written] == ["skor_unit.csv", "skor_dimensi.csv", "jawaban.csv"]
    for path in written:
        assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    with written[0].open(encoding="utf-8-sig", newline="") as fh:
        rows = {r["unit_code"]: r for r in csv.DictReader(fh)}
    index = data.units.rows[[r[1] for r in data.units.rows].index("dinkes")][
        data.units.columns.index("index")
    ]
    assert float(rows["dinkes"]["index"]) == index  # repr round-trips exactly
    assert rows["setda"]["index"] == ""
    named = write_csv(data, tmp_path / "laporan.csv")
    assert [p.name for p in named] == [
        "laporan_skor_unit.csv",
        "laporan_skor_dimensi.csv",
        "laporan_jawaban.csv",
    ]


def test_spreadsheet_formulas_in_free_text_stay_text(tmp_path: Path) -> None:
    hostile = '=HYPERLINK("http://example.invalid","klik")'
    table = Table(title="Jawaban", slug="jawaban", columns=["value", "n"], rows=[[hostile, -3]])
    data = ExportData(period="2025", units=table, dimensions=table, answers=table)
    buffer = io.BytesIO()
    write_xlsx(data, buffer)
    cell = load_workbook(io.BytesIO(buffer.getvalue()))["Jawaban"]["A2"]
    assert (cell.value, cell.data_type) == (hostile, "s")
    path = write_csv(data, tmp_path)[2]
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    assert lines[1].startswith("\"'=HYPERLINK") and lines[1].endswith(",-3")


async def test_export_command_in_process_needs_no_secret(
    filled: Storage, db_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(database_path=db_path, spi_secret_key=None)
    assert await export_command(settings, "csv", tmp_path / "e.csv") == 0
    assert (tmp_path / "e_jawaban.csv").exists()
    assert "14 responses" in capsys.readouterr().out
    missing = load_settings(database_path=tmp_path / "none.sqlite3")
    assert await export_command(missing, "xlsx", tmp_path / "x.xlsx") == 1
    assert not (tmp_path / "none.sqlite3").exists()


async def test_cli_export_subprocess(filled: Storage, db_path: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPI_", "TELEGRAM_"))}
    env["DATABASE_PATH"] = str(db_path)
    out = tmp_path / "cli" / "skor.xlsx"
    done = subprocess.run(
        [sys.executable, "-m", "bot", "export", "--format", "xlsx", "--out", str(out)],
        cwd=tmp_path,  # no .env from the working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "14 responses" in done.stdout and str(out) in done.stdout
    assert load_workbook(out).sheetnames == SHEETS


async def test_chart_is_a_small_png_and_leaks_no_figure(
    filled: Storage, questionnaire: Questionnaire
) -> None:
    from matplotlib import _pylab_helpers

    async with filled.transaction() as tx:
        score = score_unit(questionnaire, await load_unit_aggregate(tx, "2025", "dinkes"))
    assert any(d.score is not None for d in score.dimensions)
    png = dimension_chart(score, questionnaire, "id", "Dinas Kesehatan")
    assert png.startswith(PNG_SIGNATURE)
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (800, 500)
    for locale in ("id", "en"):  # its speed is measured in bench/skor.py, not asserted here
        assert dimension_chart(score, questionnaire, locale, "Dinas Kesehatan").startswith(
            PNG_SIGNATURE
        )
    assert _pylab_helpers.Gcf.get_num_fig_managers() == 0
    async with filled.transaction() as tx:
        empty = score_unit(questionnaire, await load_unit_aggregate(tx, "2025", "setda"))
    assert dimension_chart(empty, questionnaire, "en", "Sekretariat Daerah").startswith(
        PNG_SIGNATURE
    )
