"""Response rates and populations wired into the index: /skor, /rekap, /progres, the
export, the "provisional" decision, and SAMPLED_ONLY."""

from __future__ import annotations

import asyncio
import io
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import openpyxl
import pytest

from core.engine import Engine
from core.export import export_rows
from core.fieldwork import screenouts
from core.invitations import issue, personal_token
from core.population import Population, replace_population, target_sample
from core.publish import published_unit_score
from core.questionnaire import Dimension, Questionnaire, load_questionnaire
from core.report import UnitReport, render_unit, share_range
from core.scoring import (
    CITY_UNIT,
    GroupAggregate,
    GroupFrame,
    Tally,
    UnitAggregate,
    score_unit,
    with_city_level,
)
from core.storage import Storage
from core.units import Unit, UnitRegistry
from tests.conftest import QUESTIONNAIRE_PATH, SECRET
from tests.support.fake_bot_api import FakeBotApi
from tests.support.survey_driver import Clock, Respondent, answer_all, start_as
from tests.support.telegram_driver import (
    TelegramUser,
    running_bot,
    settings_for,
    start_as_service_user,
)

ADMIN = 910001
STRANGER = 910003
INTERNAL_SCREENING = ["Ya, ASN", "Lebih dari 2 tahun"]


async def frame(storage: Storage, *rows: tuple[str, str, int]) -> None:
    async with storage.transaction() as tx:
        await replace_population(tx, "2025", [Population(u, g, n) for u, g, n in rows])


# -- the share reached cannot be differenced ---------------------------------------------
def test_share_reached_moves_only_with_the_count_range() -> None:
    # Every count shown as "10–19" gives the same share: one more respondent is invisible.
    assert {share_range(n, 38) for n in range(10, 20)} == {"20–50%"}
    assert {share_range(n, 38) for n in range(5, 10)} == {"10–30%"}
    assert share_range(25, 38) == "≥50%"  # 20–49 reaches beyond the target
    assert share_range(120, 400) == "≥20%"
    assert share_range(3, 0) == "–"


# -- a known population's target decides "provisional" -----------------------------------
def test_a_known_population_target_replaces_min_sample(questionnaire: Questionnaire) -> None:
    aggregate = UnitAggregate(unit="dinkes", period="2025")
    for group in questionnaire.groups:
        aggregate.groups[group.code] = GroupAggregate(n=12, n_indexed=12)
    plain = score_unit(questionnaire, aggregate)
    assert not plain.provisional  # 12 ≥ every group's min_sample
    framed = score_unit(
        questionnaire, aggregate, {"internal": GroupFrame(120, target_sample(120, 0.10))}
    )
    assert framed.provisional and framed.missing == {"internal": 54 - 12}
    internal = next(g for g in framed.groups if g.code == "internal")
    assert (internal.target, internal.min_sample, internal.population) == (54, 54, 120)
    eksternal = next(g for g in framed.groups if g.code == "eksternal")
    assert eksternal.population is None
    assert eksternal.min_sample == questionnaire.group("eksternal").min_sample  # type: ignore[union-attr]


async def test_published_score_reads_the_population_frame(
    storage: Storage, questionnaire: Questionnaire
) -> None:
    await frame(storage, ("dinkes", "eksternal", 5000), ("dinkes", "internal", 3))
    async with storage.read() as tx:
        score = await published_unit_score(tx, questionnaire, "2025", "dinkes", 0.10)
        without = await published_unit_score(tx, questionnaire, "2025", "dinkes")
    groups = {g.code: g for g in score.groups}
    assert (groups["eksternal"].target, groups["eksternal"].population) == (95, 5000)
    assert score.missing["eksternal"] == 95
    # A population smaller than k still needs k: nothing is shown below k anyway.
    assert (groups["internal"].target, score.missing["internal"]) == (3, 5)
    assert {g.code: g.population for g in without.groups} == dict.fromkeys(groups)
    assert without.missing["eksternal"] == questionnaire.group("eksternal").min_sample  # type: ignore[union-attr]


# -- SAMPLED_ONLY ------------------------------------------------------------------------
async def complete_internal(respondent: Respondent, token: str | None) -> None:
    if token is None:
        await start_as(respondent, "Pegawai unit", INTERNAL_SCREENING, "kesehatan")
    else:
        await respondent.command("start", token)
        await respondent.press("setuju")
        for label in INTERNAL_SCREENING:
            await respondent.press(label)
    await answer_all(respondent)
    await respondent.press("Kirim")
    assert "Terima kasih" in respondent.text


@pytest.mark.parametrize("sampled_only", [True, False])
async def test_sampled_only_keeps_self_selected_responses_out_of_the_index(
    questionnaire: Questionnaire,
    units: UnitRegistry,
    storage: Storage,
    clock: Clock,
    db_path: Path,
    sampled_only: bool,
) -> None:
    engine = Engine(questionnaire, units, storage, SECRET, clock=clock, sampled_only=sampled_only)
    tokens = [personal_token() for _ in range(2)]
    async with storage.transaction() as tx:
        await issue(tx, SECRET, tokens, "2025", "dinkes", "internal", "sample")
    for i, token in enumerate([tokens[0], None, tokens[1], None, None]):
        await complete_internal(Respondent(engine, user_id=str(100 + i)), token)
    with sqlite3.connect(db_path) as db:
        counted = dict(
            db.execute("SELECT route, SUM(counted) FROM responses GROUP BY route").fetchall()
        )
        n = db.execute(
            "SELECT n FROM agg_group WHERE unit_code = 'dinkes' AND group_code = 'internal'"
        ).fetchone()[0]
    if sampled_only:
        assert counted == {"sample": 2, "self": 0} and n == 2
    else:
        assert counted == {"sample": 2, "self": 3} and n == 5


# -- the export's unit sheet -------------------------------------------------------------
async def test_export_unit_sheet_has_responses_target_population_and_invitations(
    engine: Engine, storage: Storage, questionnaire: Questionnaire, units: UnitRegistry
) -> None:
    await frame(storage, ("dinkes", "internal", 120))
    tokens = [personal_token() for _ in range(4)]
    async with storage.transaction() as tx:
        await issue(tx, SECRET, tokens, "2025", "dinkes", "internal", "sample")
    await complete_internal(Respondent(engine, user_id="200"), tokens[0])
    await complete_internal(Respondent(engine, user_id="201"), None)
    async with storage.read() as tx:
        data = await export_rows(tx, questionnaire, units, "2025", margin=0.10)
    columns = data.units.columns
    row = next(r for r in data.units.rows if r[1] == "dinkes")
    cell = {c: row[columns.index(c)] for c in columns}
    assert cell["completed_internal"] == 2
    assert (cell["target_internal"], cell["population_internal"]) == (54, 120)
    assert (cell["invited_internal"], cell["invited_used_internal"]) == (4, 1)
    assert cell["provisional"] == 1
    assert (cell["target_eksternal"], cell["population_eksternal"]) == (
        questionnaire.group("eksternal").target,  # type: ignore[union-attr]
        None,
    )


# -- /skor, /rekap and /progres through Telegram -----------------------------------------
@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as server:
        yield server


async def command(api: FakeBotApi, user_id: int, text: str) -> str:
    mark = api.mark()
    api.send_text(user_id, text)
    call = await api.wait_for_call(
        "sendMessage", predicate=lambda c: c.params.get("chat_id") == user_id, after=mark
    )
    return str(call.params.get("text") or "")


async def service_user(user: TelegramUser) -> None:
    await start_as_service_user(user)
    await user.answer_all()
    await user.press("Kirim", expect="Terima kasih")


async def test_skor_rekap_and_progres_show_response_rates(
    api: FakeBotApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    storage = await Storage.open(db_path)
    try:
        await frame(storage, ("dinkes", "eksternal", 5000), ("dinkes", "internal", 120))
    finally:
        await storage.close()
    settings = settings_for(api, db_path, admin_ids=[ADMIN])
    async with running_bot(settings):
        await asyncio.gather(*(service_user(TelegramUser(api, 710000 + i)) for i in range(6)))
        broker = TelegramUser(api, 719999)
        await broker.send("/start", expect="sukarela")
        await broker.press("setuju", expect="kelompok")
        await broker.press("Pengguna layanan", expect="Unit mana")
        await broker.send("kesehatan", expect="cocok")
        await broker.press("Dinas Kesehatan", expect="12 bulan")
        await broker.press("Ya, pernah")
        await broker.press("Lewat calo/perantara", expect="perantara")

        skor = await command(api, ADMIN, "/skor dinkes")
        assert "target 95 dari populasi 5000, tercapai 0–10%" in skor, skor
        assert "target 54 dari populasi 120, tercapai 0–10%" in skor  # nobody yet: "<5"
        assert "(eksternal) minimal 95" in skor  # the target, not min_sample
        assert "sementara" in skor

        recap = await command(api, ADMIN, "/rekap")
        assert "populasi 5000 di 1 dari" in recap, recap
        assert "Tidak lolos penyaringan" in recap
        assert "“Lewat calo/perantara”: 1 (14% dari 7 percobaan)" in recap

        table = await command(api, ADMIN, "/progres")
        assert "<pre>" in table and "Kemajuan 2025" in table, table
        lines = [line.split() for line in re.sub("<[^>]+>", "", table).split("\n")]
        rows = [cells for cells in lines if cells and cells[0] == "dinkes"]
        assert ["dinkes", "internal", "0", "54", "120", "0%", "-"] in rows  # furthest behind
        assert "halaman 1/" in table and "⬅️" not in str(api.calls[-1].params)
        last = await command(api, ADMIN, "/progres 99")  # clamped to the last page
        last = re.sub("<[^>]+>", "", last)
        rows = [c for c in (line.split() for line in last.split("\n")) if c and c[0] == "dinkes"]
        assert rows == [["dinkes", "eksternal", "6", "95", "5000", "6%", "-"]], last
        assert "hanya untuk" in await command(api, STRANGER, "/progres")
        assert "hanya untuk" in await command(api, STRANGER, "/rekap")


async def test_export_over_chat_is_a_workbook_with_fieldwork_columns(
    api: FakeBotApi, tmp_path: Path
) -> None:
    settings = settings_for(
        api, tmp_path / "spi.sqlite3", admin_ids=[ADMIN], chat_export_enabled=True
    )
    async with running_bot(settings):
        mark = api.mark()
        api.send_text(ADMIN, "/ekspor")
        call = await api.wait_for_call(
            "sendDocument", predicate=lambda c: c.params.get("chat_id") == ADMIN, after=mark
        )
    workbook = openpyxl.load_workbook(io.BytesIO(call.params["document"].content))
    header = [c.value for c in next(workbook["Skor unit"].iter_rows(max_row=1))]
    assert {"completed_eksternal", "target_eksternal", "population_eksternal"} <= set(header)


# -- screening that fits -----------------------------------------------------------------
def test_retry_other_group_is_a_per_option_flag(questionnaire: Questionnaire) -> None:
    options = {
        (screen.id, option.code): option.retry_other_group
        for group in questionnaire.groups
        for screen in group.screening
        for option in screen.options
        if not option.eligible
    }
    assert options[("ex_s_urus", "perantara")] is False
    assert options[("in_s_pegawai", "kepala")] is False
    assert options[("in_s_pegawai", "tidak")] is True  # staff of another unit may be users


async def test_a_broker_user_is_not_offered_another_group(
    engine: Engine, storage: Storage
) -> None:
    r = Respondent(engine, user_id="300")
    await start_as(r, "Pengguna layanan", ["Ya, pernah", "Lewat calo/perantara"], "kesehatan")
    assert r.last is not None and "perantara" in r.last.replies[-1].text
    assert r.last.replies[-1].buttons == []  # no "Pilih kelompok lain"
    async with storage.read() as tx:
        outs = await screenouts(tx, "2025")
    assert [(o.option, o.attempts) for o in outs] == [("perantara", 1)]


async def test_the_unit_head_is_screened_out_without_another_group(engine: Engine) -> None:
    head = Respondent(engine, user_id="301")
    await start_as(head, "Pegawai unit", ["kepala unit"], "kesehatan")
    assert head.last is not None
    assert "Kepala unit tidak menilai unitnya sendiri" in head.last.replies[-1].text
    assert head.last.replies[-1].buttons == []

    outsider = Respondent(engine, user_id="302")
    await start_as(outsider, "Pegawai unit", ["Tidak"], "kesehatan")
    assert outsider.labels() == ["Pilih kelompok lain"]


# -- experts counted at the city level ---------------------------------------------------
def shown_group(questionnaire: Questionnaire, group: str, n: int, mean: float) -> GroupAggregate:
    dimensions = [d.code for d in questionnaire.dimensions if group in d.groups]
    return GroupAggregate(
        n=n,
        n_indexed=n,
        dimensions={d: Tally(n=n, total=n * mean) for d in dimensions},
        se=2.0,
        df=n - 1,
    )


async def publish_rows(storage: Storage, unit: str, group: str, n: int, mean: float) -> None:
    async with storage.transaction() as tx:
        await tx.execute(
            "INSERT INTO published(period, unit_code, group_code, kind, name, n, se, df) "
            "VALUES ('2025', ?, ?, 'group', '', ?, 2.0, ?)",
            (unit, group, n, n - 1),
        )
        await tx.executemany(
            "INSERT INTO published(period, unit_code, group_code, kind, name, n, total) "
            "VALUES ('2025', ?, ?, 'dimension', ?, ?, ?)",
            [(unit, group, d.code, n, n * mean) for d in dimensions_of(group)],
        )


def dimensions_of(group: str) -> list[Dimension]:
    return [d for d in load_questionnaire(QUESTIONNAIRE_PATH).dimensions if group in d.groups]


def test_a_unit_short_of_its_own_experts_uses_the_city_level_figure(
    questionnaire: Questionnaire,
) -> None:
    unit = UnitAggregate(unit="dinkes", period="2025")
    unit.groups["internal"] = shown_group(questionnaire, "internal", 12, 80.0)
    unit.groups["eksternal"] = shown_group(questionnaire, "eksternal", 12, 80.0)
    unit.groups["eksper"] = GroupAggregate(n=2, n_indexed=2)
    city = UnitAggregate(unit=CITY_UNIT, period="2025")
    city.groups["eksper"] = shown_group(questionnaire, "eksper", 9, 60.0)

    alone = score_unit(questionnaire, unit)
    assert alone.provisional and "eksper" in alone.missing

    borrowed, replaced = with_city_level(questionnaire, unit, city)
    score = score_unit(questionnaire, borrowed, None, replaced)
    assert replaced == {"eksper"} and not score.provisional
    experts = next(g for g in score.groups if g.code == "eksper")
    assert experts.city_level and experts.shown and experts.index == pytest.approx(60.0)

    # Enough experts of its own: the unit's own figure stays.
    unit.groups["eksper"] = shown_group(questionnaire, "eksper", 6, 90.0)
    assert with_city_level(questionnaire, unit, city)[1] == frozenset()
    # A unit nobody of its own assessed borrows nothing (no score made of the city's).
    empty = UnitAggregate(unit="bappeda", period="2025")
    assert with_city_level(questionnaire, empty, city)[1] == frozenset()
    # A city figure of fewer than the minimum is not used either.
    unit.groups["eksper"] = GroupAggregate(n=2, n_indexed=2)
    city.groups["eksper"] = shown_group(questionnaire, "eksper", 4, 60.0)
    assert with_city_level(questionnaire, unit, city)[1] == frozenset()


async def test_skor_uses_the_published_city_level_expert_figure(
    storage: Storage, questionnaire: Questionnaire
) -> None:
    await publish_rows(storage, "dinkes", "internal", 12, 80.0)
    await publish_rows(storage, "dinkes", "eksternal", 12, 80.0)
    async with storage.read() as tx:
        before = await published_unit_score(tx, questionnaire, "2025", "dinkes")
    assert before.provisional and set(before.missing) == {"eksper"}
    await publish_rows(storage, CITY_UNIT, "eksper", 9, 60.0)
    async with storage.read() as tx:
        after = await published_unit_score(tx, questionnaire, "2025", "dinkes")
    assert not after.provisional
    assert [g.code for g in after.groups if g.city_level] == ["eksper"]
    report = render_unit(
        UnitReport(unit=Unit(code="dinkes", name="Dinas Kesehatan", kind="dinas"), score=after),
        questionnaire,
        "id",
    )
    assert "tingkat kota" in report
