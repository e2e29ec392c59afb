"""Officials and admins on WhatsApp: text commands through the desk, the chart as an image.

End to end over HTTP: the real WhatsApp channel, the fake Cloud API (which checks
the media upload and the image message as Meta does) and a real SQLite file.
Roles belong to (channel, user id): a WhatsApp number equal to a Telegram id is
somebody else, and is treated as a stranger.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.whatsapp.api import CloudApi, CloudApiError
from bot.whatsapp.desk import desk_command
from bot.whatsapp.runner import WhatsAppRuntime
from bot.whatsapp.sender import OUTSIDE_WINDOW_REASON
from core import access
from core import desk as d
from core.events import Choice, Command, Text
from core.migrations import MIGRATIONS
from core.model import iso, utcnow
from core.storage import Storage
from tests.conftest import SECRET
from tests.support.fake_bot_api import FakeBotApi
from tests.support.fake_whatsapp_api import FakeWhatsAppApi
from tests.support.telegram_driver import TelegramUser, running_bot
from tests.support.telegram_driver import settings_for as telegram_settings
from tests.support.whatsapp_driver import WhatsAppUser, running_whatsapp, settings_for, start_survey
from tests.test_broadcast import PAST_WINDOW, broadcast_bot, rows

TG_ADMIN = 910001  # a Telegram admin (ADMIN_IDS)
TG_OFFICIAL = 910002  # a Telegram official of dinkes
WA_OFFICIAL = "6281200000001"
WA_ADMIN = "6281200000002"  # in WHATSAPP_ADMIN_NUMBERS
WA_STRANGER = "6281200000003"
REFUSED = "hanya untuk"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def api() -> AsyncIterator[FakeWhatsAppApi]:
    async with FakeWhatsAppApi() as server:
        yield server


def the_desk(runtime: WhatsAppRuntime) -> d.Desk:
    return runtime.channel.desk.desk


async def invite(runtime: WhatsAppRuntime, unit: str = "dinkes") -> str:
    """An invite made by the Telegram admin (as /undang does), through the desk."""
    made = await the_desk(runtime).create_invite(d.Caller("telegram", TG_ADMIN), unit)
    assert isinstance(made, d.InviteCreated)
    return made.code


async def respondents_complete(api: FakeWhatsAppApi, runtime: WhatsAppRuntime, n: int) -> None:
    async def one(wa_id: str) -> None:
        user = WhatsAppUser(api, runtime, wa_id)
        await start_survey(user)
        await user.answer_all()
        await user.press("Kirim", expect="Terima kasih")

    await asyncio.gather(*(one(f"62813000000{i:02d}") for i in range(n)))


async def test_an_official_registers_and_gets_skor_with_the_chart(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    db_path = tmp_path / "spi.sqlite3"
    settings = settings_for(api, db_path, admin_ids=[TG_ADMIN])
    async with running_whatsapp(api, settings) as runtime:
        await respondents_complete(api, runtime, 6)
        official = WhatsAppUser(api, runtime, WA_OFFICIAL)
        code = await invite(runtime)
        await official.send(f"daftar {code.lower()}", expect="terdaftar sebagai pejabat")

        replies = await official.send("SKOR")
        assert [r.kind for r in replies] == ["text", "image"]
        assert "Dinas Kesehatan" in replies[0].text
        assert "<b>" not in replies[0].text and "&amp;" not in replies[0].text
        image = replies[1].message["image"]
        assert replies[1].text == "Dinas Kesehatan"
        media = api.media[image["id"]]
        assert media.mime_type == "image/png" and media.data.startswith(PNG)

        # With a slash and the unit's name: the same; another unit: refused.
        assert (await official.send("/skor dinkes"))[0].text == replies[0].text
        await official.send("skor disdik", expect=REFUSED)
        # Not the desk's words: the survey engine answers, as before.
        assert all(r.kind != "image" for r in await official.send("skorsing"))
    assert not api.refused, api.refused
    with sqlite3.connect(db_path) as db:
        assert list(db.execute("SELECT channel, user_id, unit_code FROM officials")) == [
            ("whatsapp", int(WA_OFFICIAL), "dinkes")
        ]
        assert list(db.execute("SELECT created_channel, used_channel FROM invites")) == [
            ("telegram", "whatsapp")
        ]


async def test_a_stranger_is_refused_and_a_matching_telegram_id_inherits_nothing(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    settings = settings_for(api, tmp_path / "spi.sqlite3", admin_ids=[TG_ADMIN])
    async with running_whatsapp(api, settings) as runtime:
        desk = the_desk(runtime)
        code = await invite(runtime)
        registered = await desk.redeem_invite(d.Caller("telegram", TG_OFFICIAL), code)
        assert isinstance(registered, d.Registered)
        assert (await desk.role(d.Caller("telegram", TG_OFFICIAL))).role.unit_code == "dinkes"

        stranger = WhatsAppUser(api, runtime, WA_STRANGER)
        for text in ("skor", "Skor dinkes", "/skor"):
            replies = await stranger.send(text, expect=REFUSED)
            assert [r.kind for r in replies] == ["text"]
        # The WhatsApp numbers that equal the Telegram official's and admin's ids.
        twin = WhatsAppUser(api, runtime, str(TG_OFFICIAL))
        await twin.send("skor", expect=REFUSED)
        admin_twin = WhatsAppUser(api, runtime, str(TG_ADMIN))
        await admin_twin.send("/peringkat", expect="hanya untuk admin")
        await admin_twin.send("/undang dinkes", expect="hanya untuk admin")
        # Without a slash, an admin's word from someone without a role is survey text
        # (e.g. typing "admin" to search for a unit): the engine answers, no refusal.
        for text in ("admin", "peringkat", "undang dinkes"):
            replies = await admin_twin.send(text)
            assert not any(REFUSED in r.text for r in replies), text
        assert (await desk.role(d.Caller("whatsapp", TG_OFFICIAL))).role.unit_code is None
        assert (await desk.role(d.Caller("whatsapp", TG_ADMIN))).role.admin is False
        # /id answers with the number, for WHATSAPP_ADMIN_NUMBERS.
        await stranger.send("id", expect=WA_STRANGER)
    assert not api.refused, api.refused


async def test_a_whatsapp_admin_invites_and_lists(api: FakeWhatsAppApi, tmp_path: Path) -> None:
    settings = settings_for(
        api,
        tmp_path / "spi.sqlite3",
        admin_ids=[TG_ADMIN],
        whatsapp_admin_numbers=f"+{WA_ADMIN}",
    )
    async with running_whatsapp(api, settings) as runtime:
        admin = WhatsAppUser(api, runtime, WA_ADMIN)
        made = await admin.send("/undang kesehatan", expect="Kode undangan")
        code = re.search(r"```([A-Z0-9]+)```", made[0].text)
        assert code is not None, made[0].text
        official = WhatsAppUser(api, runtime, WA_OFFICIAL)
        await official.send(f"DAFTAR {code.group(1)}", expect="terdaftar")
        await official.send(f"daftar {code.group(1)}", expect="sudah digunakan")
        listed = await admin.send("pejabat")
        assert f"WA +{WA_OFFICIAL}" in listed[0].text
        await admin.send("admin", expect="WHATSAPP_ADMIN_NUMBERS")
        first = await admin.send("peringkat", expect="Dinas Kesehatan")
        second = await admin.press("➡️")
        assert second[0].text != first[0].text and "➡️" in admin.labels()

        # A revocation row pressed by someone else is judged again: refused.
        await admin.send("pejabat")
        row_id, title = admin.choice(f"WA +{WA_OFFICIAL}")
        assert row_id == f"adm|rev|w{WA_OFFICIAL}"
        await official.deliver(api.reply("list", row_id, title))
        assert "hanya untuk admin" in official.messages()[-1].text
        await admin.press(f"WA +{WA_OFFICIAL}", expect="telah dicabut")
        await official.send("skor", expect=REFUSED)
        await admin.send("/skor", expect="Cara pakai")  # an admin names the unit
        await admin.send("/tambah_admin", expect="tambah_admin 6281234567890")
        await admin.send(f"hapus_admin {WA_ADMIN}", expect="WHATSAPP_ADMIN_NUMBERS")
        await admin.send("tambah_admin 6281200000009", expect="sekarang menjadi admin")
        assert (await the_desk(runtime).role(d.Caller("whatsapp", 6281200000009))).role.admin
        # The same number on Telegram is nobody.
        role = await the_desk(runtime).role(d.Caller("telegram", int(WA_ADMIN)))
        assert role.role.admin is False
    assert not api.refused, api.refused


async def test_a_redelivered_command_is_answered_once(api: FakeWhatsAppApi, tmp_path: Path) -> None:
    settings = settings_for(api, tmp_path / "spi.sqlite3", admin_ids=[TG_ADMIN])
    async with running_whatsapp(api, settings) as runtime:
        code = await invite(runtime)
        for text in (f"daftar {code}", "skor", "id"):
            payload = api.update(WA_OFFICIAL, api.text(text))
            before = len(api.to(WA_OFFICIAL))
            for _ in range(3):
                assert await api.deliver(payload) == 200
                await runtime.channel.drain()
            assert len(api.to(WA_OFFICIAL)) == before + 1, api.transcript(WA_OFFICIAL)
        assert "terdaftar" in api.to(WA_OFFICIAL)[0].text


def test_only_the_desk_words_are_commands() -> None:
    bare, slashed = desk_command(Text(text="Skor")), desk_command(Command(name="skor", args=""))
    assert bare is not None and slashed is not None
    assert (bare.name, bare.args, bare.slashed) == ("skor", "", False)
    assert (slashed.name, slashed.args, slashed.slashed) == ("skor", "", True)
    found = desk_command(Text(text="/SKOR  dinas kesehatan "))
    assert found is not None and (found.name, found.args, found.slashed) == (
        "skor",
        "dinas kesehatan",
        True,
    )
    multiline = desk_command(Text(text="skor\n dinkes"))
    assert multiline is not None and (multiline.name, multiline.args) == ("skor", "dinkes")
    for text in ("skorsing", "halo", "kesehatan", "skor.", "1", "", " ", "/"):
        assert desk_command(Text(text=text)) is None, text
    assert desk_command(Command(name="start", args="")) is None
    assert desk_command(Choice(token="1|ans|2")) is None


async def test_the_fake_checks_uploads_and_images_as_meta_does(api: FakeWhatsAppApi) -> None:
    client = CloudApi(api.base_url, api.phone_id, api.token)
    try:
        media_id = await client.upload_media(PNG + b"chart", "image/png", "skor.png")
        assert api.media[media_id].filename == "skor.png"
        for data, mime in (
            (b"GIF89a", "image/gif"),
            (b"not a png", "image/png"),
            (PNG + b"x" * (5 * 1024 * 1024), "image/png"),
        ):
            with pytest.raises(CloudApiError) as refused:
                await client.upload_media(data, mime, "x")
            assert refused.value.code == 131053
        api.windows["62811"] = dt.datetime.now().timestamp()
        with pytest.raises(CloudApiError, match="unknown media id"):
            await client.send("62811", {"type": "image", "image": {"id": "999"}})
        with pytest.raises(CloudApiError, match="Image caption"):
            await client.send("62811", {"type": "image", "image": {"id": media_id, "caption": ""}})
        await client.send("62811", {"type": "image", "image": {"id": media_id, "caption": "ok"}})
    finally:
        await client.close()


async def test_old_roles_become_telegram_roles(tmp_path: Path) -> None:
    """A database from before roles carried the channel keeps its admins and officials,
    as Telegram's; the same numbers on WhatsApp have no role."""
    db_path = tmp_path / "old.sqlite3"
    before = MIGRATIONS.index(next(m for m in MIGRATIONS if "admins_by_channel" in m))
    with sqlite3.connect(db_path) as db:
        for script in MIGRATIONS[:before]:
            db.executescript(script)
        db.execute(f"PRAGMA user_version = {before}")
        db.execute("INSERT INTO admins(user_id, added_by, added_at) VALUES (5, 1, 'x')")
        db.execute("INSERT INTO officials(user_id, unit_code, added_at) VALUES (7, 'dinkes', 'x')")
    db.close()
    storage = await Storage.open(db_path)
    try:
        async with storage.transaction() as tx:
            assert await access.role_of(tx, 5, []) == access.Role(admin=True)
            assert (await access.role_of(tx, 7, [])).unit_code == "dinkes"
            assert await access.role_of(tx, 7, [], channel="whatsapp") == access.Role()
            assert await access.role_of(tx, 5, [], channel="whatsapp") == access.Role()
            code = await access.create_invite(
                tx, SECRET, "disdik", 5, utcnow(), dt.timedelta(hours=1)
            )
            result = await access.redeem_invite(tx, SECRET, code, 7, utcnow(), channel="whatsapp")
            assert result == ("ok", "disdik")
            assert (await access.role_of(tx, 7, [])).unit_code == "dinkes"  # untouched
            assert await access.revoke_official(tx, 7, channel="telegram")
            assert (await access.role_of(tx, 7, [])).unit_code is None
            assert (await access.role_of(tx, 7, [], channel="whatsapp")).unit_code == "disdik"
    finally:
        await storage.close()


async def test_siaran_from_telegram_reaches_whatsapp_contacts_in_the_window(
    api: FakeWhatsAppApi, tmp_path: Path
) -> None:
    """/siaran by a Telegram admin goes to WhatsApp contacts too; one outside the
    24-hour window is skipped, with the reason kept on its delivery row."""
    db_path = tmp_path / "spi.sqlite3"
    async with FakeBotApi() as telegram:
        settings = settings_for(
            api,
            db_path,
            telegram_bot_token=telegram.token,
            telegram_base_url=telegram.base_url,
            admin_ids=[TG_ADMIN],
            **PAST_WINDOW,
        )
        async with broadcast_bot(settings) as (svc, _app):
            runtime = WhatsAppRuntime(svc, pause=0.3)
            await runtime.start()
            api.webhook_url = runtime.url
            try:
                near, away = (WhatsAppUser(api, runtime, n) for n in (WA_OFFICIAL, WA_STRANGER))
                for user in (near, away):
                    await user.send("/start", expect="sukarela")
                    await user.press("setuju", expect="kelompok")
                api.expire_window(WA_STRANGER)
                async with svc.storage.transaction() as tx:
                    await tx.execute(
                        "UPDATE chat_windows SET last_inbound = ? WHERE address = ?",
                        (iso(utcnow() - dt.timedelta(days=2)), WA_STRANGER),
                    )
                admin = TelegramUser(telegram, TG_ADMIN)
                await admin.send("/siaran Halo & selamat pagi", expect="2 penerima")
                await admin.press("Kirim", expect="sedang dikirim")
                for _ in range(100):
                    if rows(db_path, "SELECT 1 FROM deliveries WHERE status = 'pending'") == []:
                        break
                    await asyncio.sleep(0.1)
            finally:
                await runtime.stop()
    assert [m.text for m in api.to(WA_OFFICIAL)][-1] == "Halo & selamat pagi"
    assert not any("selamat pagi" in m.text for m in api.to(WA_STRANGER))
    assert sorted(rows(db_path, "SELECT channel, address, status, error FROM deliveries")) == [
        ("whatsapp", WA_OFFICIAL, "sent", None),
        ("whatsapp", WA_STRANGER, "skipped", OUTSIDE_WINDOW_REASON),
    ]


async def test_a_telegram_admin_revokes_a_whatsapp_official_by_its_button(
    tmp_path: Path,
) -> None:
    """The same number as a Telegram official and as a WhatsApp official: the list shows
    both apart, and the WhatsApp one's button revokes that one only."""
    twin = 62812000001  # also a plausible Telegram id
    async with FakeBotApi() as telegram:
        settings = telegram_settings(telegram, tmp_path / "spi.sqlite3", admin_ids=[TG_ADMIN])
        async with running_bot(settings) as svc:
            async with svc.storage.transaction() as tx:
                for channel in ("telegram", "whatsapp"):
                    code = await access.create_invite(
                        tx, SECRET, "dinkes", TG_ADMIN, utcnow(), dt.timedelta(hours=1)
                    )
                    result = await access.redeem_invite(
                        tx, SECRET, code, twin, utcnow(), channel=channel
                    )
                    assert result == ("ok", "dinkes")
            admin = TelegramUser(telegram, TG_ADMIN)
            listing = await admin.send("/pejabat", expect=f"WA +{twin}")
            assert f"• {twin} – Dinas Kesehatan" in (listing.text or "")
            data = telegram.button_data(TG_ADMIN, f"WA +{twin}")
            assert data == f"adm|rev|w{twin}"
            mark = telegram.mark()
            telegram.press_button(TG_ADMIN, listing.message_id, data)
            answer = await telegram.wait_for_call("answerCallbackQuery", after=mark)
            assert str(twin) in answer.params["text"]
            async with svc.storage.read() as tx:
                left = await tx.fetchall("SELECT channel, user_id FROM officials")
            assert [tuple(row) for row in left] == [("telegram", twin)]
