"""The auditor's export (XLSX/CSV, in-process and through the CLI) and the `/skor` chart.

What the export must not reveal is attacked in tests/test_export_privacy.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pwd
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from openpyxl import load_workbook

from bot.chart import dimension_chart
from bot.export_cli import export_command
from core.aggregates import add_correction, load_unit_aggregate
from core.config import PROJECT_ROOT, load_settings
from core.engine import Engine
from core.export import SUPPRESSED, ExportData, Table, export_rows, write_csv, write_xlsx
from core.questionnaire import Questionnaire
from core.scoring import K_ANONYMITY, score_unit
from core.storage import Storage
from core.units import UnitRegistry
from tests.support.survey_driver import Clock
from tests.test_editions import answered_on
from tests.test_export_privacy import close_period
from tests.test_scoring import EKSPER, EKSTERNAL, INTERNAL, audit, take_survey

SHEETS = ["Skor unit", "Skor dimensi", "Jawaban", "Buku kode", "Audit"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def filled(engine: Engine, clock: Clock, storage: Storage) -> Storage:
    """Dinas Kesehatan with all three groups (experts under 5) and a correction; closed."""
    for i in range(6):
        await take_survey(engine, clock, f"ex{i}", EKSTERNAL, shift=i)
    for i in range(5):
        await take_survey(engine, clock, f"in{i}", INTERNAL, shift=i + 2)
    for i in range(2):
        await take_survey(engine, clock, f"ek{i}", EKSPER, shift=i + 1)
    await take_survey(engine, clock, "fast", EKSTERNAL, shift=1, seconds=30)  # a speeder
    async with storage.transaction() as tx:
        await add_correction(tx, engine.period, "dinkes", 2.25, "pengarahan", clock.now)
        await tx.audit("admin:7", "correction", "dinkes 2.25 pengarahan", clock.now)
    await close_period(storage, engine.period)
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
    # the two experts (under k) are withheld; everyone else is there
    assert len({r["response_id"] for r in answers}) == data.responses == 12
    assert data.withheld == 2 and {r["group"] for r in answers} == {"internal", "eksternal"}
    expected = recompute_from_answers(answers, questionnaire, "dinkes", 2.25)
    for column in ("index", "corrected", "ci_low", "ci_high"):
        assert dinkes[column] == pytest.approx(expected[column], abs=1e-4), column
    for group in ("internal", "eksternal"):
        assert dinkes[f"n_{group}"] == expected[f"n_{group}"]
        assert dinkes[f"index_{group}"] == pytest.approx(expected[f"index_{group}"])
    # two experts: counted, but neither their index nor their answers are shown, and
    # they are not in the unit index
    assert expected["n_eksper"] == 0 and dinkes["index_eksper"] is None
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
    assert isinstance(audited, dict)
    assert {key for key, (_, mean) in by_group.items() if mean is not None} == {
        key for key, (n, _) in audited.items() if n >= K_ANONYMITY
    }
    for key, (n, mean) in audited.items():
        assert by_group[key] == (n, pytest.approx(mean) if n >= K_ANONYMITY else None)
    assert by_group[("eksper", "transparansi")] == (2, None)
    overall = {r["dimension"]: r["mean"] for r in dimensions if r["group"] == "all"}
    shown = {d.code: d.score for d in score.dimensions if d.score is not None}
    assert overall == pytest.approx(shown, rel=1e-15)


async def test_csv_files_have_bom_and_full_precision(
    filled: Storage, questionnaire: Questionnaire, units: UnitRegistry, tmp_path: Path
) -> None:
    data = await collect(filled, questionnaire, units)
    written = write_csv(data, tmp_path / "out")
    assert (
        [p.name for p in written]
        == [f"{t.slug}.csv" for t in data.tables]
        == [
            "skor_unit.csv",
            "skor_dimensi.csv",
            "jawaban.csv",
            "buku_kode.csv",
            "audit.csv",
        ]
    )
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
    assert [p.name for p in named][:3] == [
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
    assert "12 responses" in capsys.readouterr().out
    missing = load_settings(database_path=tmp_path / "none.sqlite3")
    assert await export_command(missing, "xlsx", tmp_path / "x.xlsx") == 1
    assert not (tmp_path / "none.sqlite3").exists()


async def test_cli_export_subprocess(filled: Storage, db_path: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPI_", "TELEGRAM_"))}
    env["DATABASE_PATH"] = str(db_path)
    env["PYTHONPATH"] = str(PROJECT_ROOT)  # this checkout, not another installed copy
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
    assert "12 responses" in done.stdout and str(out) in done.stdout
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


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_every_export_file_is_created_0600(
    filled: Storage, db_path: Path, tmp_path: Path
) -> None:
    settings = load_settings(database_path=db_path, spi_secret_key=None)
    stale = tmp_path / "old.xlsx"
    stale.write_bytes(b"an earlier export, world-readable")
    stale.chmod(0o644)
    previous = os.umask(0o022)  # the usual umask makes new files 0644
    try:
        assert await export_command(settings, "xlsx", stale, free_text=tmp_path / "t.xlsx") == 0
        assert (
            await export_command(settings, "csv", tmp_path / "csv", free_text=tmp_path / "t.csv")
            == 0
        )
    finally:
        os.umask(previous)
    written = [stale, tmp_path / "t.xlsx", tmp_path / "t.csv", *(tmp_path / "csv").iterdir()]
    assert len(written) == 3 + len(SHEETS)
    assert {p.name: mode(p) for p in written} == {p.name: 0o600 for p in written}
    assert load_workbook(stale).sheetnames == SHEETS
    assert not [p for p in tmp_path.rglob(".*.tmp")]  # no temporary file left behind


async def test_every_export_is_in_the_audit_log_and_its_sheet(
    filled: Storage,
    db_path: Path,
    tmp_path: Path,
    questionnaire: Questionnaire,
    units: UnitRegistry,
) -> None:
    settings = load_settings(database_path=db_path, spi_secret_key=None)
    assert await export_command(settings, "xlsx", tmp_path / "a.xlsx") == 0
    assert await export_command(settings, "csv", None, free_text=tmp_path / "t.csv") == 0
    later = await export_command(settings, "csv", tmp_path / "b", open_period=True, actor="cli:ana")
    assert later == 0
    async with filled.transaction() as tx:
        logged = await tx.fetchall("SELECT at, actor, action, detail FROM audit_log ORDER BY id")
    assert [r["action"] for r in logged] == ["correction", "export", "export_free_text", "export"]
    _, first, free, last = logged
    assert first["actor"] == f"cli:{pwd.getpwuid(os.getuid()).pw_name}" == free["actor"]
    assert last["actor"] == "cli:ana"
    assert first["at"].startswith("20")
    assert json.loads(first["detail"]) == {
        "period": "2025",
        "format": "xlsx",
        "sheets": SHEETS,
        "open_period": False,
    }
    assert json.loads(free["detail"]) == {"period": "2025", "format": "csv"}
    assert json.loads(last["detail"])["open_period"] is True
    # the export's own sheet shows the corrections and every earlier export, itself included
    audit_rows = sheet_rows(tmp_path / "a.xlsx", "Audit")
    assert [(r["actor"], r["action"]) for r in audit_rows] == [
        ("admin:7", "correction"),
        (first["actor"], "export"),
    ]
    assert audit_rows[0]["detail"] == "dinkes 2.25 pengarahan"


def decode_with_codebook(
    book: list[dict[str, object]], answers: list[dict[str, object]]
) -> list[dict[str, object]]:
    """Look every answer up in the codebook by edition, question and option code, as an
    auditor without the questionnaire file would; the option rows each score used."""
    options = {
        (r["edition"], r["code"], r["option_code"]): r
        for r in book
        if r["kind"] in ("question", "screening") and r["option_code"] is not None
    }
    questions = {
        (r["edition"], r["code"]): r for r in book if r["kind"] in ("question", "screening")
    }
    used = []
    for row in answers:
        entry = questions[(row["edition"], row["question_id"])]
        assert entry["text_id"] and entry["text_en"]
        assert entry["dimension"] == row["dimension"]
        if row["item_score"] is not None:
            option = options[(row["edition"], row["question_id"], row["value"])]
            assert option["score"] == row["item_score"], (row, option)
            assert option["option_id"] and option["option_en"]
            used.append(option)
    return used


async def test_the_codebook_alone_scores_and_labels_every_answer(
    filled: Storage, questionnaire: Questionnaire, units: UnitRegistry, tmp_path: Path
) -> None:
    out = tmp_path / "e.xlsx"
    write_xlsx(await collect(filled, questionnaire, units), out)
    book = sheet_rows(out, "Buku kode")
    answers = sheet_rows(out, "Jawaban")
    assert answers and {r["edition"] for r in answers} == {questionnaire.version_label}
    options = decode_with_codebook(book, answers)
    current = [r for r in book if r["edition"] == questionnaire.version_label]
    book = [r for r in book if r["edition"] in (questionnaire.version_label, None)]
    assert {r["code"] for r in book if r["kind"] == "dimension"} == {
        d.code for d in questionnaire.dimensions
    }
    weights = {r["code"]: r["weight"] for r in book if r["kind"] == "group"}
    assert weights == {g.code: g.weight for g in questionnaire.groups}
    assert {r["code"] for r in book if r["kind"] == "column"} == set(answers[0])
    assert {r["code"]: r["score"] for r in book if r["kind"] == "band"} == {
        "terjaga": 78.0,
        "waspada": 73.0,
        "riskan": 0.0,
    }
    assert "ragu" in {r["option_code"] for r in current}  # every option, answered or not
    assert options


async def test_answers_of_two_editions_decode_with_their_own_codebook_rows(
    storage: Storage, questionnaire: Questionnaire, units: UnitRegistry, tmp_path: Path
) -> None:
    """Version 2 kept `in_balasan` but made it a statement: "jarang" (75 on version 1)
    exists only in version 1's rows, and "setuju" only in version 2's."""
    await answered_on(storage, questionnaire, "2025/1", "jarang", K_ANONYMITY)
    await answered_on(storage, questionnaire, questionnaire.version_label, "setuju", K_ANONYMITY)
    await close_period(storage, "2025")
    out = tmp_path / "e.xlsx"
    write_xlsx(await collect(storage, questionnaire, units), out)
    answers = sheet_rows(out, "Jawaban")
    used = decode_with_codebook(sheet_rows(out, "Buku kode"), answers)
    assert (
        sorted((r["edition"], r["option_code"], r["score"]) for r in used)
        == [("2025/1", "jarang", 75.0)] * K_ANONYMITY + [("2025/2", "setuju", 25.0)] * K_ANONYMITY
    )


async def test_a_lone_response_of_another_edition_does_not_show_its_edition(
    storage: Storage, questionnaire: Questionnaire, units: UnitRegistry
) -> None:
    await answered_on(storage, questionnaire, "2025/1", "jarang", 1)
    await answered_on(storage, questionnaire, questionnaire.version_label, "setuju", K_ANONYMITY)
    await close_period(storage, "2025")
    data = await collect(storage, questionnaire, units)
    assert data.answers is not None
    editions = Counter(row[data.answers.columns.index("edition")] for row in data.answers.rows)
    assert editions[SUPPRESSED] >= 1 and "2025/1" not in editions
    assert all(n >= K_ANONYMITY for n in editions.values())
