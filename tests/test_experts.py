"""Experts where they can be found: the city as a whole, or up to N units they know.

An expert (a ``city_level`` group) chooses either the pseudo-unit ``kota`` (the
government as a whole) or units they know, one response per unit, one after
another. The city's experts count for every unit short of its own.
"""

from __future__ import annotations

import asyncio
import csv
import sqlite3
from pathlib import Path

import pytest

from core.engine import Engine
from core.events import Choice
from core.export import export_rows
from core.fieldwork import progress
from core.population import Population, replace_population, target_sample
from core.publish import published_unit_score
from core.questionnaire import Questionnaire
from core.report import UnitReport, render_recap, render_unit
from core.scoring import CITY_UNIT
from core.storage import Storage
from core.units import Unit, UnitRegistry, UnitsError, load_units
from tests.conftest import SECRET
from tests.support.fake_bot_api import FakeBotApi
from tests.support.fake_whatsapp_api import FakeWhatsAppApi
from tests.support.survey_driver import Clock, Respondent, answer_all
from tests.support.whatsapp_driver import WhatsAppUser, running_whatsapp
from tests.support.whatsapp_driver import settings_for as whatsapp_settings
from tests.test_fieldwork_cli import cli, run
from tests.test_fieldwork_engine import invite

__all__ = ["cli"]  # the command-line fixture: settings from the environment
from tests.support.telegram_driver import TelegramUser, running_bot, settings_for
from tests.test_fieldwork_wiring import publish_rows

CITY = "Pemerintah Kota Semarang secara keseluruhan"
EXPERT_SCREENING = ["Akademisi", "Ya"]


async def finish(r: Respondent) -> None:
    """Answer every question through the shared walker, and send."""
    await answer_all(r)
    await r.press("Kirim")
    assert "Terima kasih" in r.text, r.text


async def as_expert(r: Respondent) -> None:
    await r.command("start")
    await r.press("setuju")
    await r.press("Ahli")


async def rate(r: Respondent, label: str, query: str | None = None) -> None:
    """On the unit list: choose ``label`` (after typing ``query``), pass screening, answer."""
    if query is not None:
        await r.type(query)
    await r.press(label)
    for answer in EXPERT_SCREENING:
        await r.press(answer)
    assert "Pertanyaan 1 dari" in r.text, r.text
    await finish(r)


async def units_of(storage: Storage, group: str) -> list[str]:
    async with storage.read() as tx:
        rows = await tx.fetchall(
            "SELECT unit_code FROM responses WHERE group_code = ? AND status = 'completed' "
            "ORDER BY unit_code",
            (group,),
        )
    return [str(row["unit_code"]) for row in rows]


async def test_an_expert_rates_the_city_as_a_whole(engine: Engine, storage: Storage) -> None:
    r = Respondent(engine, user_id="1")
    await as_expert(r)
    assert r.labels()[0] == "🏙️ " + CITY  # the city first, then the units
    assert "hingga 3 unit" in r.text
    await r.press(CITY)
    assert CITY in r.text  # screening names what is assessed
    for answer in EXPERT_SCREENING:
        await r.press(answer)
    assert "“Unit ini” di sini berarti " + CITY in r.text  # the questions say "unit ini"
    await finish(r)
    assert CITY in r.text
    assert not any("sebagai ahli" in label for label in r.labels())  # the city was the choice
    assert await units_of(storage, "eksper") == [CITY_UNIT]


async def test_a_search_shows_the_city_only_when_it_matches(engine: Engine) -> None:
    r = Respondent(engine, user_id="11")
    await as_expert(r)
    await r.type("kesehatan")
    assert r.labels()[0] == "Dinas Kesehatan"  # searched for a unit: the units only
    await r.type("keseluruhan")
    assert r.labels()[0] == "🏙️ " + CITY


async def test_the_city_is_never_offered_to_other_groups(engine: Engine) -> None:
    r = Respondent(engine, user_id="2")
    await r.command("start")
    await r.press("setuju")
    await r.press("Pengguna layanan")
    assert not any("keseluruhan" in label for label in r.labels())
    await r.type("kota")
    assert not any("keseluruhan" in label for label in r.labels())
    city = r.labels()[0]
    forged = r.button(city).token.rsplit("|", 1)[0] + "|" + CITY_UNIT
    outcome = await r.send(Choice(token=forged))
    assert outcome.notice == "Tombol ini tidak dikenali."
    assert "Unit" in r.text and "Pertanyaan" not in r.text


async def test_a_city_link_screened_out_chooses_a_unit_for_another_group(
    engine: Engine, storage: Storage
) -> None:
    [code] = await invite(storage, CITY_UNIT, "eksper", "link")
    r = Respondent(engine, user_id="6")
    await r.command("start", code)
    assert CITY in r.text
    await r.press("setuju")
    await r.press("Lainnya")  # not an expert's role: another group is offered
    await r.press("Pilih kelompok lain")
    await r.press("Pengguna layanan")
    assert "Unit mana" in r.text and not any("keseluruhan" in b for b in r.labels())


async def test_an_expert_rates_up_to_three_units_one_after_another(
    engine: Engine, storage: Storage
) -> None:
    r = Respondent(engine, user_id="3")
    await as_expert(r)
    await r.type("kesehatan")
    await r.press("Dinas Kesehatan")
    for answer in EXPERT_SCREENING:
        await r.press(answer)
    assert "Pertanyaan 1 dari" in r.text and "di sini berarti" not in r.text
    await finish(r)
    await r.press("Nilai unit lain yang Anda kenal sebagai ahli")
    assert "Unit mana" in r.text  # straight to the units: no consent, no group again
    await rate(r, "Bappeda", "bappeda")
    await r.press("sebagai ahli")
    await r.press(CITY)  # units chosen: the city is no longer the choice
    assert "Anda sudah menilai: Badan Perencanaan" in r.transcript[-2]
    await rate(r, "Dinas Kependudukan", "kependudukan")
    assert not any("sebagai ahli" in label for label in r.labels())  # three: the most
    assert len(await units_of(storage, "eksper")) == 3
    # Coming back as an expert later in the period is refused at the group choice.
    await as_expert(r)
    refusal = r.transcript[-2]
    assert "hingga 3 unit" in refusal and "Anda sudah menilai: Badan Perencanaan" in refusal
    assert "kelompok" in r.text.lower()
    assert len(await units_of(storage, "eksper")) == 3
    # As a service user the same person may still answer.
    await r.press("Pengguna layanan")
    assert "Unit mana" in r.text


async def test_an_expert_who_rated_the_city_rates_no_unit(engine: Engine, storage: Storage) -> None:
    r = Respondent(engine, user_id="4")
    await as_expert(r)
    await rate(r, CITY)
    await as_expert(r)
    assert "Anda sudah menilai: " + CITY in r.transcript[-2]
    assert "kelompok" in r.text.lower()
    assert await units_of(storage, "eksper") == [CITY_UNIT]


async def test_the_limit_is_a_questionnaire_option(
    questionnaire: Questionnaire, units: UnitRegistry, storage: Storage, clock: Clock
) -> None:
    groups = [
        g.model_copy(update={"max_units": 1}) if g.code == "eksper" else g
        for g in questionnaire.groups
    ]
    one = Engine(
        questionnaire.model_copy(update={"groups": groups}), units, storage, SECRET, clock=clock
    )
    r = Respondent(one, user_id="5")
    await as_expert(r)
    assert "hingga 1 unit" in r.text
    await rate(r, "Dinas Kesehatan", "kesehatan")
    assert not any("sebagai ahli" in label for label in r.labels())


def test_the_city_code_is_reserved_in_the_units_file(tmp_path: Path) -> None:
    path = tmp_path / "units.toml"
    path.write_text(
        'government = "Kota Contoh"\n'
        '[[units]]\ncode = "kota"\nname = "Sekretariat Kota"\nkind = "setda"\n',
        encoding="utf-8",
    )
    with pytest.raises(UnitsError, match="reserved"):
        load_units(path)


async def test_five_experts_on_the_city_give_every_unit_its_expert_figure(
    engine: Engine, storage: Storage, questionnaire: Questionnaire
) -> None:
    await publish_rows(storage, "dinkes", "internal", 12, 80.0)
    await publish_rows(storage, "dinkes", "eksternal", 25, 80.0)
    async with storage.read() as tx:
        before = await published_unit_score(tx, questionnaire, "2025", "dinkes")
    assert before.provisional and set(before.missing) == {"eksper"}

    for i in range(5):
        r = Respondent(engine, user_id=f"90{i}")
        await as_expert(r)
        await rate(r, CITY)
    async with storage.read() as tx:
        after = await published_unit_score(tx, questionnaire, "2025", "dinkes")
        city = await published_unit_score(tx, questionnaire, "2025", CITY_UNIT)
    assert not after.provisional and after.missing == {}
    experts = next(g for g in after.groups if g.code == "eksper")
    assert experts.city_level and experts.shown and experts.n == 5
    assert not next(g for g in city.groups if g.code == "eksper").city_level

    dinkes = Unit(code="dinkes", name="Dinas Kesehatan", kind="dinas")
    skor = render_unit(UnitReport(unit=dinkes, score=after), questionnaire, "id")
    assert "tingkat kota" in skor
    bappeda = Unit(code="bappeda", name="Bappeda", kind="badan")
    both = [UnitReport(unit=dinkes, score=after), UnitReport(unit=bappeda, score=after)]
    rekap = render_recap(both, questionnaire, "id", "Kota", {}, city_scores=city)
    expert_line = next(line for line in rekap.splitlines() if "Ahli/pemangku" in line)
    assert "n 5–9 " in expert_line  # the city's five, counted once, not once per unit
    assert "menilai pemerintah kota secara keseluruhan: n 5–9" in rekap
    assert "dipakai untuk 2 unit" in rekap


async def test_an_expert_chooses_the_city_on_telegram(tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with FakeBotApi() as api, running_bot(settings_for(api, db_path)):
        user = TelegramUser(api, 88001)
        await user.send("/start", expect="sukarela")
        await user.press("setuju", expect="kelompok")
        await user.press("Ahli", expect="Unit mana")
        assert user.labels()[0] == "🏙️ " + CITY
        await user.press("🏙️ " + CITY, expect="peran profesional")
        await user.press("Akademisi")
        await user.press("Ya", expect="Pertanyaan 1 dari")
        await user.answer_all()
        assert CITY in (user.screen().text or "")  # the review names the city
        await user.press("Kirim", expect="Terima kasih")
    storage = await Storage.open(db_path)
    try:
        assert await units_of(storage, "eksper") == [CITY_UNIT]
    finally:
        await storage.close()


def test_experts_sampled_per_government_are_invited_to_rate_the_city(
    cli: Path,
    capsys: pytest.CaptureFixture[str],
    questionnaire: Questionnaire,
    units: UnitRegistry,
    clock: Clock,
) -> None:
    with (cli / "experts.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["nama", "lembaga"])
        writer.writerows([f"Ahli {i}", "Universitas"] for i in range(12))
    args = ["sample", "--roster", "experts.csv", "--unit", "kota", "--n", "5", "--seed", "s"]
    assert run(*args, "--group", "eksternal", "--out", "x.csv") == 1  # the city: experts only
    assert "unknown unit code 'kota'" in capsys.readouterr().err
    assert run(*args, "--group", "eksper", "--out", "e.csv") == 0
    assert "5 single-use links for kota/eksper" in capsys.readouterr().out
    with (cli / "e.csv").open(newline="") as fh:
        links = [row["link"] for row in csv.DictReader(fh)]
    assert len(links) == 5

    async def arrive() -> list[str]:
        storage = await Storage.open(cli / "spi.sqlite3")
        try:
            engine = Engine(questionnaire, units, storage, SECRET, clock=clock)
            r = Respondent(engine, user_id="70")
            await r.command("start", links[0].rsplit("=", 1)[1])
            assert CITY in r.text
            await r.press("setuju")
            for answer in EXPERT_SCREENING:
                await r.press(answer)
            await finish(r)
            return await units_of(storage, "eksper")
        finally:
            await storage.close()

    assert asyncio.run(arrive()) == [CITY_UNIT]


async def test_the_city_population_sets_the_target_where_experts_are_counted(
    storage: Storage, questionnaire: Questionnaire
) -> None:
    await publish_rows(storage, "dinkes", "internal", 12, 80.0)
    await publish_rows(storage, "dinkes", "eksternal", 25, 80.0)
    await publish_rows(storage, CITY_UNIT, "eksper", 9, 60.0)
    unit_only = [Population("dinkes", "eksper", 3)]
    async with storage.transaction() as tx:
        await replace_population(tx, "2025", unit_only)
    async with storage.read() as tx:
        score = await published_unit_score(tx, questionnaire, "2025", "dinkes", 0.10)
    experts = next(g for g in score.groups if g.code == "eksper")
    # The unit's own frame does not judge the city's figure: the group's minimum does.
    assert experts.city_level and experts.min_sample == 5 and experts.population is None
    assert not score.provisional

    async with storage.transaction() as tx:
        await replace_population(tx, "2025", [*unit_only, Population(CITY_UNIT, "eksper", 40)])
    async with storage.read() as tx:
        score = await published_unit_score(tx, questionnaire, "2025", "dinkes", 0.10)
    experts = next(g for g in score.groups if g.code == "eksper")
    target = target_sample(40, 0.10)
    assert (experts.population, experts.min_sample) == (40, target) and target > 9
    assert score.provisional and score.missing == {"eksper": target - 9}


def test_population_import_accepts_the_city_for_experts_only(
    cli: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (cli / "pop.csv").write_text("unit,group,size\nkota,internal,10\n", encoding="utf-8")
    assert run("population", "import", "pop.csv") == 1
    assert "unknown unit code 'kota'" in capsys.readouterr().err
    (cli / "pop.csv").write_text("unit,group,size\nkota,eksper,40\n", encoding="utf-8")
    assert run("population", "import", "pop.csv") == 0
    assert "kota" in capsys.readouterr().out


async def test_the_progress_table_has_a_row_for_the_city_experts(
    engine: Engine, storage: Storage, questionnaire: Questionnaire, units: UnitRegistry
) -> None:
    r = Respondent(engine, user_id="12")
    await as_expert(r)
    await rate(r, CITY)
    async with storage.read() as tx:
        rows = await progress(tx, questionnaire, units, 0.10)
    city = [row for row in rows if row.unit == CITY_UNIT]
    assert [(row.group, row.responses, row.target) for row in city] == [("eksper", 1, 8)]
    assert city[0].unit_name == CITY
    assert len(rows) == len(units) * len(questionnaire.groups) + 1


def test_progress_command_shows_the_city_row(cli: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("progress", "--unit", "kota") == 0
    out = capsys.readouterr().out
    assert "1 of 1 unit groups behind" in out
    assert any(line.split()[:3] == ["kota", "eksper", "0"] for line in out.splitlines())


async def test_the_city_fits_whatsapp_lists(tmp_path: Path) -> None:
    db_path = tmp_path / "spi.sqlite3"
    async with (
        FakeWhatsAppApi() as api,
        running_whatsapp(api, whatsapp_settings(api, db_path)) as runtime,
    ):
        user = WhatsAppUser(api, runtime, "6281234567891")
        await user.send("/start", expect="sukarela")
        await user.press("setuju", expect="kelompok")
        await user.press("Ahli", expect="Unit mana")
        await user.press("keseluruhan", expect="peran profesional")
        await user.press("Akademisi")
        await user.press("Ya", expect="Pertanyaan 1 dari")
        assert not api.refused, api.refused  # every screen fitted WhatsApp's limits
    with sqlite3.connect(db_path) as db:
        assert list(db.execute("SELECT group_code, unit_code FROM responses")) == [
            ("eksper", CITY_UNIT)
        ]


async def test_the_export_names_the_city_row(
    engine: Engine, storage: Storage, questionnaire: Questionnaire, units: UnitRegistry
) -> None:
    r = Respondent(engine, user_id="13")
    await as_expert(r)
    await rate(r, CITY)
    async with storage.read() as tx:
        data = await export_rows(tx, questionnaire, units, questionnaire.period)
    columns = data.units.columns
    [row] = [row for row in data.units.rows if row[columns.index("unit_code")] == CITY_UNIT]
    assert row[columns.index("unit_name")] == CITY
    assert len(data.units.rows) == len(units) + 1
