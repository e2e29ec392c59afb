"""`spi-bot population import`, `links`, `sample` and `progress`, run as the command line
runs them: real settings from the environment, a real SQLite file, files on disk."""

from __future__ import annotations

import csv
import socket
import sqlite3
from pathlib import Path

import pytest
from openpyxl import Workbook

from bot.cli import main
from core.invitations import token_hash
from core.population import target_sample
from tests.conftest import SECRET

GOOD = "unit,group,size\ndinkes,internal,120\ndinkes,eksternal,5000\nkec_tugu,internal,25\n"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings as an operator would set them; the working folder is the test's own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_PATH", str(tmp_path / "spi.sqlite3"))
    monkeypatch.setenv("SPI_SECRET_KEY", SECRET.decode())
    monkeypatch.setenv("TELEGRAM_BOT_USERNAME", "spi_semarang_bot")
    monkeypatch.delenv("WHATSAPP_NUMBER", raising=False)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    return tmp_path


def run(*argv: str) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    return int(exit_.value.code or 0)


def frame(db: Path) -> list[tuple[str, str, int]]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute("SELECT unit_code, group_code, size FROM populations"))


# -- population ------------------------------------------------------------------
def test_target_sample_formula() -> None:
    # n0 = 1.96² · 0.25 / 0.1² = 96.04; n = n0 / (1 + (n0 − 1) / N)
    assert target_sample(120, 0.10) == 54
    assert target_sample(25, 0.10) == 21
    assert target_sample(5000, 0.10) == 95
    assert target_sample(10**9, 0.10) == 97  # ceil(96.04): no correction left
    assert target_sample(3, 0.10) == 3  # never more than the population
    assert target_sample(0, 0.10) == 0
    assert target_sample(120, 0.05) > target_sample(120, 0.10)


def test_population_import_csv(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cli / "pop.csv").write_text(GOOD)
    assert run("population", "import", "pop.csv") == 0
    assert frame(cli / "spi.sqlite3") == [
        ("dinkes", "eksternal", 5000),
        ("dinkes", "internal", 120),
        ("kec_tugu", "internal", 25),
    ]
    out = capsys.readouterr().out
    assert "3 rows" in out and "N=120" in out and "n=54" in out


def test_population_import_xlsx_with_semicolon_free_header_names(cli: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Kode_Unit", "Kelompok", "Populasi", "catatan"])
    sheet.append(["dinkes", "internal", 120.0, "data BKPP"])
    sheet.append([None, None, None, None])
    sheet.append(["DPU", "Eksternal", 800, ""])
    book.save(cli / "pop.xlsx")
    assert run("population", "import", "pop.xlsx") == 0
    assert frame(cli / "spi.sqlite3") == [("dinkes", "internal", 120), ("dpu", "eksternal", 800)]


def test_population_import_semicolon_csv(cli: Path) -> None:
    (cli / "pop.csv").write_text("unit;group;size\ndinkes;internal;120\n")
    assert run("population", "import", "pop.csv") == 0
    assert frame(cli / "spi.sqlite3") == [("dinkes", "internal", 120)]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("unit,size\ndinkes,120\n", ["missing column 'group'"]),
        (
            "unit,group,size\ndinkes,internal,120\nnope,internal,10\nkec_tugu,pegawai,3\n",
            ["row 3, column 'unit': unknown unit code 'nope'", "row 4, column 'group'"],
        ),
        (
            "unit,group,size\ndinkes,internal,-4\ndpu,internal,1.5\ndlh,internal,banyak\n",
            [
                "row 2, column 'size': negative size -4",
                "row 3, column 'size': '1.5' is not a whole number",
                "row 4, column 'size': 'banyak' is not a whole number",
            ],
        ),
        (
            "unit,group,size\ndinkes,internal,120\ndpu,internal,80\ndinkes,internal,121\n",
            ["row 4: duplicate of row 2 (dinkes, internal)"],
        ),
        ("unit,group,size\n", ["no data rows"]),
        ("", ["no header row"]),
    ],
)
def test_bad_population_file_loads_nothing(
    cli: Path, capsys: pytest.CaptureFixture[str], content: str, expected: list[str]
) -> None:
    (cli / "good.csv").write_text(GOOD)
    assert run("population", "import", "good.csv") == 0
    before = frame(cli / "spi.sqlite3")
    (cli / "bad.csv").write_text(content)
    capsys.readouterr()
    assert run("population", "import", "bad.csv") == 1
    err = capsys.readouterr().err
    assert "not loaded, nothing changed" in err
    for line in expected:
        assert line in err
    assert "Traceback" not in err
    assert frame(cli / "spi.sqlite3") == before


def test_population_file_missing_or_wrong_type(
    cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("population", "import", "absent.csv") == 1
    assert "file not found" in capsys.readouterr().err
    (cli / "pop.txt").write_text(GOOD)
    assert run("population", "import", "pop.txt") == 1
    assert "expected a .xlsx or .csv file" in capsys.readouterr().err
    (cli / "fake.xlsx").write_text("not a zip")
    assert run("population", "import", "fake.xlsx") == 1
    assert "not a readable xlsx file" in capsys.readouterr().err


# -- links, QR codes and posters -------------------------------------------------------
@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any network connection attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the command tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_links_print_deep_links_and_write_a_qr_code_offline(
    cli: Path, offline: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WHATSAPP_NUMBER", "+6281234567890")
    assert run("links", "--unit", "dinkes", "--group", "eksternal") == 0
    out = capsys.readouterr().out
    [telegram] = [w for w in out.split() if w.startswith("https://t.me/")]
    [whatsapp] = [w for w in out.split() if w.startswith("https://wa.me/")]
    assert telegram.startswith("https://t.me/spi_semarang_bot?start=spi")
    token = telegram.rsplit("=", 1)[1]
    assert whatsapp == f"https://wa.me/6281234567890?text={token}"
    assert (cli / "qr-dinkes-eksternal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with sqlite3.connect(cli / "spi.sqlite3") as db:
        rows = db.execute("SELECT token_hash, unit_code, group_code, kind FROM invitations")
        assert list(rows) == [(token_hash(SECRET, token), "dinkes", "eksternal", "link")]
        assert token not in str(list(db.execute("SELECT * FROM invitations")))
    # Printed again, the same link: posters and messages already sent keep working.
    assert run("links", "--unit", "dinkes", "--group", "eksternal") == 0
    assert telegram in capsys.readouterr().out


def test_poster_is_an_a4_png(cli: Path, offline: None) -> None:
    from PIL import Image

    assert run("links", "--unit", "dinkes", "--poster", "--out", "posters") == 0
    with Image.open(cli / "posters" / "poster-dinkes-eksternal.png") as poster:
        width, height = poster.size
    assert (width, height) == (2481, 3507)  # A4 at 300 dpi
    assert (cli / "posters" / "poster-qr-dinkes-eksternal.png").exists()


def test_links_refuse_unknown_unit_and_group(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("links", "--unit", "nope") == 1
    assert "unknown unit code 'nope'" in capsys.readouterr().err
    assert run("links", "--unit", "dinkes", "--group", "warga") == 1
    assert "unknown group 'warga'" in capsys.readouterr().err


def test_links_need_the_bot_username(
    cli: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_USERNAME")
    assert run("links", "--unit", "dinkes") == 2
    err = capsys.readouterr().err
    assert "TELEGRAM_BOT_USERNAME" in err and len(err.strip().splitlines()) == 1


# -- sampling ----------------------------------------------------------------------
def write_roster(path: Path, n: int) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["nip", "nama", "whatsapp"])
        for i in range(n):
            writer.writerow([f"19800101{i:04d}", f"Pegawai {i}", f"62812000{i:04d}"])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_sample_is_reproducible_for_a_seed(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_roster(cli / "staff.csv", 120)
    args = ["sample", "--roster", "staff.csv", "--unit", "dinkes", "--n", "30", "--seed", "s1"]
    assert run(*args, "--out", "a.csv") == 0
    first = read_csv(cli / "a.csv")
    assert len(first) == 30 and len({r["nip"] for r in first}) == 30
    assert set(first[0]) == {"nip", "nama", "whatsapp", "link"}  # roster columns kept
    assert all(r["link"].startswith("https://t.me/spi_semarang_bot?start=spi") for r in first)
    assert (cli / "a.csv").stat().st_mode & 0o077 == 0  # live links: owner only
    assert "delete the list" in capsys.readouterr().out

    # A second draw for the same unit and group is refused unless it replaces the first.
    assert run(*args, "--out", "b.csv") == 1
    assert "already has 30 personal invitations (0 used)" in capsys.readouterr().err
    assert not (cli / "b.csv").exists()
    assert run(*args, "--out", "b.csv", "--replace") == 0
    again = read_csv(cli / "b.csv")
    assert [r["nip"] for r in again] == [r["nip"] for r in first]  # the same people
    assert not {r["link"] for r in again} & {r["link"] for r in first}  # fresh random links
    assert run(*args[:-1], "s2", "--out", "c.csv", "--replace") == 0
    other = read_csv(cli / "c.csv")
    assert [r["nip"] for r in other] != [r["nip"] for r in first]
    with sqlite3.connect(cli / "spi.sqlite3") as db:
        sent = db.execute("SELECT COUNT(*) FROM invitations WHERE kind = 'sample'").fetchone()
        stored = {row[0] for row in db.execute("SELECT token_hash FROM invitations")}
    assert sent == (30,)  # the unused links of earlier draws were withdrawn
    assert stored == {token_hash(SECRET, r["link"].rsplit("=", 1)[1]) for r in other}


def test_sample_refuses_bad_rosters_and_sizes(
    cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_roster(cli / "staff.csv", 10)
    base = ["sample", "--roster", "staff.csv", "--unit", "dinkes", "--seed", "s"]
    assert run(*base, "--n", "11") == 1
    assert "larger than the roster (10 people)" in capsys.readouterr().err
    assert run(*base, "--n", "0") == 1
    assert "at least 1" in capsys.readouterr().err
    assert run("sample", "--roster", "staff.csv", "--unit", "x", "--seed", "s", "--n", "2") == 1
    assert "unknown unit code 'x'" in capsys.readouterr().err
    (cli / "dup.csv").write_text("nip,nama\n1,A\n2,B\n1,A\n")
    assert run("sample", "--roster", "dup.csv", "--unit", "dinkes", "--seed", "s", "--n", "1") == 1
    assert "row 4: duplicate of row 2" in capsys.readouterr().err
    assert not (cli / "spi.sqlite3").exists()  # nothing issued, not even a database


# -- progress ----------------------------------------------------------------------
def test_progress_table_puts_units_furthest_behind_first(
    cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cli / "pop.csv").write_text(GOOD)
    assert run("population", "import", "pop.csv") == 0
    db = sqlite3.connect(cli / "spi.sqlite3")
    with db:
        for i, (unit, group, n) in enumerate(
            [("dinkes", "internal", 50), ("kec_tugu", "internal", 3), ("dpu", "eksternal", 30)]
        ):
            db.executemany(
                "INSERT INTO responses(id, respondent_key, period, group_code, unit_code, "
                "status, channel, completed_on) VALUES (?, ?, '2025', ?, ?, 'completed', 't', "
                "'2025-06-10')",
                [(i * 1000 + j + 1, f"k{i}-{j}", group, unit) for j in range(n)],
            )
        db.execute(
            "INSERT INTO screenouts VALUES ('2025', 'dpu', 'eksternal', 'ex_s_urus', "
            "'perantara', 10)"
        )
    db.close()
    capsys.readouterr()
    assert run("progress") == 0
    lines = capsys.readouterr().out.splitlines()
    table = [line.split() for line in lines[2:] if line[:1] not in (" ", "s")]
    assert "  dpu eksternal: 10 screened out at ex_s_urus = perantara (25% of 40" in "\n".join(
        lines
    )
    by_key = {(row[0], row[1]): row[2:] for row in table}
    assert by_key[("dinkes", "internal")] == ["50", "54", "120", "93%", "-"]
    assert by_key[("kec_tugu", "internal")] == ["3", "21", "25", "14%", "-"]
    assert by_key[("dpu", "eksternal")] == ["30", "30", "-", "100%", "-"]
    order = [(row[0], row[1]) for row in table]
    assert order.index(("kec_tugu", "internal")) < order.index(("dinkes", "internal"))
    assert order.index(("dinkes", "internal")) < order.index(("dpu", "eksternal"))
    assert order[-1] == ("dpu", "eksternal")  # the only one at its target
    assert order[0] == ("dinkes", "eksternal")  # 0 of 95: furthest behind


def test_progress_under_sampled_only_counts_personal_invitations(
    cli: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("progress", "--unit", "dinkes") == 0  # creates the database
    with sqlite3.connect(cli / "spi.sqlite3") as db:
        db.executemany(
            "INSERT INTO responses(id, respondent_key, period, group_code, unit_code, status, "
            "channel, completed_on, route) VALUES (?, ?, '2025', 'internal', 'dinkes', "
            "'completed', 't', '2025-06-10', ?)",
            [(i + 1, f"k{i}", "sample" if i < 4 else "self") for i in range(10)],
        )
    capsys.readouterr()
    assert run("progress", "--unit", "dinkes") == 0
    assert internal_row(capsys.readouterr().out)[2:4] == ["10", "30"]
    monkeypatch.setenv("SAMPLED_ONLY", "true")
    assert run("progress", "--unit", "dinkes") == 0
    out = capsys.readouterr().out
    assert "SAMPLED_ONLY" in out
    assert internal_row(out)[2:4] == ["4", "30"]


def internal_row(out: str) -> list[str]:
    [row] = [line.split() for line in out.splitlines() if line.startswith("dinkes  internal")]
    return row


def test_links_for_all_units(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("links", "--unit", "all", "--group", "eksternal", "--out", "qr") == 0
    out = capsys.readouterr().out
    tokens = {w.rsplit("=", 1)[1] for w in out.split() if w.startswith("https://t.me/")}
    assert len(tokens) == 52 == len(list((cli / "qr").glob("qr-*-eksternal.png")))
    with sqlite3.connect(cli / "spi.sqlite3") as db:
        assert db.execute("SELECT COUNT(DISTINCT unit_code) FROM invitations").fetchone() == (52,)
