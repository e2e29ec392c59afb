"""The officials' desk on a real SQLite file: access rules, corrections, invites, admins,
idempotency, the audit log, and reads that never wait for the writer."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3

import pytest

from bot import render
from core import desk as d
from core.access import create_invite
from core.config import Settings, load_settings
from core.desk import Caller, Desk, Refused
from core.engine import Engine
from core.questionnaire import Questionnaire
from core.storage import Storage
from core.units import UnitRegistry
from tests.conftest import SECRET
from tests.support.survey_driver import Clock
from tests.test_scoring import EKSTERNAL, take_survey

ADMIN, OFFICIAL, STRANGER = 1, 2, 3


@pytest.fixture
def settings() -> Settings:
    return load_settings(spi_secret_key=SECRET.decode(), admin_ids=[ADMIN])


@pytest.fixture
def desk(
    settings: Settings,
    questionnaire: Questionnaire,
    units: UnitRegistry,
    storage: Storage,
    clock: Clock,
) -> Desk:
    return Desk(
        settings=settings,
        questionnaire=questionnaire,
        units=units,
        storage=storage,
        secret_key=SECRET,
        clock=clock,
    )


def who(user: int, event: str | None = None) -> Caller:
    return Caller("telegram", user, event)


async def official_of(desk: Desk, unit: str, user: int = OFFICIAL) -> None:
    invite = await desk.create_invite(who(ADMIN), unit)
    assert isinstance(invite, d.InviteCreated)
    assert isinstance(await desk.redeem_invite(who(user), invite.code), d.Registered)


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (d.parse_user_id, "123456789", 123456789),
        (d.parse_user_id, "²", None),
        (d.parse_user_id, "١٢", None),
        (d.parse_user_id, "1e2", None),
        (d.parse_user_id, "1234567890123456789012345", None),
        (d.parse_user_id, "-5", None),
        (d.parse_points, "1,5", 1.5),
        (d.parse_points, "2.25", 2.25),
        (d.parse_points, "100", 100.0),
        (d.parse_points, "1e2", None),
        (d.parse_points, "١٢", None),
        (d.parse_points, "²", None),
        (d.parse_points, "0", None),
        (d.parse_points, "100,01", None),
        (d.parse_points, "nan", None),
        (d.parse_page, "2", 2),
        (d.parse_page, "0", None),
        (d.parse_page, "99999999", None),
        (d.parse_row_id, "#7", 7),
        (d.parse_category, "Penegakan-Hukum", "penegakan_hukum"),
        (d.parse_category, "lainnya", None),
        (d.parse_code, "ABCD-EFGH 23", "ABCD-EFGH 23"),
        (d.parse_code, "<b>", None),
        (d.parse_query, "x" * 101, None),
        (d.parse_query, "  dinas   kesehatan ", "dinas kesehatan"),
    ],
)
def test_arguments_are_parsed_with_explicit_patterns(
    parse: object, text: str, expected: object
) -> None:
    assert callable(parse)
    assert parse(text) == expected


async def test_officials_see_their_own_unit_only(desk: Desk) -> None:
    await official_of(desk, "dinkes")
    own = await desk.unit_report(who(OFFICIAL))
    assert isinstance(own, d.UnitView) and own.report.unit.code == "dinkes"
    assert own.report.flags is None  # data-quality flags are for admins
    assert await desk.unit_report(who(OFFICIAL), "bappeda") == Refused("not_allowed", "id")
    assert await desk.unit_report(who(OFFICIAL), "tidak-ada") == Refused("not_allowed", "id")
    assert await desk.unit_report(who(STRANGER)) == Refused("not_allowed", "id")
    assert await desk.unit_report(who(STRANGER), "dinkes") == Refused("not_allowed", "id")
    assert await desk.unit_report(who(ADMIN)) == Refused("usage", "id")
    assert await desk.unit_report(who(ADMIN), "tidak-ada") == Refused(
        "unit_unknown", "id", "tidak-ada"
    )
    admin_view = await desk.unit_report(who(ADMIN), "bappeda")
    assert isinstance(admin_view, d.UnitView) and admin_view.report.flags == {}
    for operation in (desk.ranking, desk.recap, desk.officials, desk.admins, desk.invites):
        assert await operation(who(OFFICIAL)) == Refused("admins_only", "id")


async def test_corrections_are_withdrawn_not_deleted_and_officials_see_their_category(
    desk: Desk, engine: Engine, clock: Clock, storage: Storage
) -> None:
    for i in range(5):
        await take_survey(engine, clock, f"ex{i}", EKSTERNAL, shift=i)
    await official_of(desk, "dinkes")
    before = await desk.unit_report(who(OFFICIAL))
    assert isinstance(before, d.UnitView) and before.report.score.deduction == 0
    added = await desk.add_correction(who(ADMIN, "e1"), "dinkes", "penegakan_hukum", 1.5, "kasus")
    assert isinstance(added, d.CorrectionView)
    assert added.correction.author == f"telegram:{ADMIN}"
    view = await desk.unit_report(who(OFFICIAL))
    assert isinstance(view, d.UnitView)
    assert view.report.score.deduction == pytest.approx(1.5)
    assert [c.category for c in view.corrections] == ["penegakan_hukum"]
    text = render.unit_view(view, desk.questionnaire).text
    assert "kasus penegakan hukum: −1,50" in text and "kasus" in text

    withdrawn = await desk.withdraw_correction(who(ADMIN, "e2"), added.correction.id)
    assert isinstance(withdrawn, d.CorrectionView) and withdrawn.correction.withdrawn_at
    assert await desk.withdraw_correction(who(ADMIN, "e3"), added.correction.id) == Refused(
        "not_found", "id", str(added.correction.id)
    )
    after = await desk.unit_report(who(OFFICIAL))
    assert isinstance(after, d.UnitView) and after.report.score.deduction == 0
    assert after.corrections == []
    listed = await desk.corrections(who(ADMIN), "dinkes")
    assert isinstance(listed, d.CorrectionList)
    assert [c.withdrawn_at is not None for c in listed.corrections] == [True]
    async with storage.read() as tx:
        actions = [r["action"] for r in await tx.fetchall("SELECT action FROM audit_log")]
    assert actions.count("correction_added") == 1 and "correction_withdrawn" in actions
    with pytest.raises(sqlite3.IntegrityError, match="withdrawn, not deleted"):
        async with storage.transaction() as tx:
            await tx.execute("DELETE FROM corrections")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        async with storage.transaction() as tx:
            await tx.execute("UPDATE audit_log SET detail = ''")


async def test_invites_revoked_and_for_removed_units_are_refused(
    desk: Desk, storage: Storage, clock: Clock
) -> None:
    invite = await desk.create_invite(who(ADMIN), "dinkes")
    assert isinstance(invite, d.InviteCreated)
    listed = await desk.invites(who(ADMIN))
    assert isinstance(listed, d.InviteList) and len(listed.invites) == 1
    assert invite.code not in repr(listed)  # only its holder knows the code
    invite_id = listed.invites[0][0].id
    assert isinstance(await desk.revoke_invite(who(ADMIN), invite_id), d.Done)
    assert await desk.redeem_invite(who(OFFICIAL), invite.code) == Refused("revoked", "id")
    assert await desk.revoke_invite(who(ADMIN), invite_id) == Refused(
        "not_found", "id", str(invite_id)
    )
    # an invite made before its unit left the units file
    async with storage.transaction() as tx:
        code = await create_invite(tx, SECRET, "dinas-lama", ADMIN, clock(), dt.timedelta(1))
    assert await desk.redeem_invite(who(OFFICIAL), code) == Refused("unit_removed", "id")
    assert (await desk.role(who(OFFICIAL))).role.unit_code is None


async def test_admins_listed_added_and_removed_but_not_configured_ones(
    desk: Desk, storage: Storage
) -> None:
    assert isinstance(await desk.add_admin(who(ADMIN, "a1"), 42), d.Done)
    assert await desk.add_admin(who(ADMIN, "a1"), 43) == Refused("duplicate", "id")
    listed = await desk.admins(who(42))
    assert isinstance(listed, d.AdminList)
    assert [(a.user_id, a.configured) for a in listed.admins] == [(ADMIN, True), (42, False)]
    assert await desk.remove_admin(who(42), ADMIN) == Refused("configured_admin", "id", "1")
    assert isinstance(await desk.remove_admin(who(ADMIN), 42), d.Done)
    assert await desk.ranking(who(42)) == Refused("admins_only", "id")
    async with storage.read() as tx:
        rows = await tx.fetchall("SELECT actor, action, detail FROM audit_log ORDER BY id")
    assert [(r["actor"], r["action"], r["detail"]) for r in rows] == [
        ("telegram:1", "admin_added", "user=42"),
        ("telegram:1", "admin_removed", "user=42"),
    ]


async def test_reads_do_not_wait_for_the_writer(desk: Desk, storage: Storage) -> None:
    await official_of(desk, "dinkes")
    held = asyncio.Event()
    release = asyncio.Event()

    async def long_write() -> None:
        async with storage.transaction() as tx:
            await tx.execute("INSERT INTO admins(user_id, added_at) VALUES (77, '')")
            held.set()
            await release.wait()

    writer = asyncio.create_task(long_write())
    await held.wait()
    try:
        view = await asyncio.wait_for(desk.unit_report(who(OFFICIAL)), timeout=5)
        assert isinstance(view, d.UnitView)
        assert (await asyncio.wait_for(desk.role(who(77)), 5)).role.admin is False  # uncommitted
        with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only"):
            async with storage.read() as tx:
                await tx.execute("DELETE FROM admins")
    finally:
        release.set()
        await writer
    assert (await desk.role(who(77))).role.admin is True


async def test_a_reason_too_long_is_refused_with_its_limit(desk: Desk) -> None:
    refused = await desk.add_correction(who(ADMIN), "dinkes", "pengaduan", 1.0, "x" * 501)
    assert refused == Refused("too_long", "id", "501")
    assert isinstance(refused, Refused)
    assert "501" in render.refusal(refused, "koreksi").text
    assert str(d.MAX_REASON) in render.refusal(refused, "koreksi").text
    listed = await desk.corrections(who(ADMIN), "dinkes")
    assert isinstance(listed, d.CorrectionList) and listed.corrections == []
