"""Every command, every role, both languages, odd arguments: never the generic error.

Through the real Application and the fake Bot API, which rejects malformed HTML
as Telegram does ("can't parse entities"), so a usage text with ``<kode>`` in it,
or an unescaped argument echoed back, fails here.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.admin_handlers import COMMANDS as ADMIN_HANDLERS
from bot.app import MENU
from core.access import create_invite, redeem_invite
from core.config import Settings
from core.i18n import gettext_for
from core.model import utcnow
from tests.conftest import SECRET
from tests.support.fake_bot_api import FakeBotApi
from tests.support.telegram_driver import running_bot, settings_for

ADMIN, OFFICIAL, STRANGER = 910001, 910002, 910003
ENGLISH = 1000  # the same roles, 1000 higher, with English as their language
GENERIC_ERROR = "Sorry, something went wrong on our side."
BROADCAST_COMMANDS = ("siaran", "siaran_status", "jadwal", "berhenti", "langganan")
BAD_ARGUMENTS = (
    "",
    "²",
    "1234567890123456789012345",
    "1e2",
    "١٢",
    "unit-yang-tidak-ada",
    "<b>",
    "dinkes pengaduan 1e2 <b>alasan</b>",
    "dinkes pengaduan ١٢ alasan",
    "batal ²",
)


def all_commands() -> list[str]:
    names = [name for name, _ in MENU] + list(ADMIN_HANDLERS) + list(BROADCAST_COMMANDS)
    return sorted(set(names))


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as server:
        yield server


async def prepare_roles(settings: Settings, svc_storage: object) -> None:
    """An official of dinkes; English as the language of the second set of users."""
    from core.storage import Storage

    assert isinstance(svc_storage, Storage)
    now = utcnow()
    async with svc_storage.transaction() as tx:
        for official in (OFFICIAL, OFFICIAL + ENGLISH):
            code = await create_invite(tx, SECRET, "dinkes", ADMIN, now, dt.timedelta(hours=1))
            assert (await redeem_invite(tx, SECRET, code, official, now))[0] == "ok"
        for user in (ADMIN, OFFICIAL, STRANGER):
            await tx.upsert_contact("telegram", str(user + ENGLISH), "en")


async def send_and_wait(api: FakeBotApi, user: int, text: str) -> None:
    mark = api.mark()
    api.send_text(user, text, language_code="en" if user % 10_000 >= ENGLISH else "id")
    await api.wait_for_call(
        "sendMessage", lambda c: c.params.get("chat_id") == user, after=mark, timeout=15
    )


async def test_every_command_with_bad_arguments_as_everyone(
    api: FakeBotApi, tmp_path: Path
) -> None:
    settings = settings_for(
        api,
        tmp_path / "spi.sqlite3",
        admin_ids=[ADMIN, ADMIN + ENGLISH],
        incoming_per_minute=100_000,  # this test is a flood by design
    )
    users = [base + offset for base in (ADMIN, OFFICIAL, STRANGER) for offset in (0, ENGLISH)]
    async with running_bot(settings) as svc:
        await prepare_roles(settings, svc.storage)

        async def walk(user: int) -> None:
            for name in all_commands():
                for arguments in BAD_ARGUMENTS:
                    await send_and_wait(api, user, f"/{name} {arguments}".strip())

        await asyncio.gather(*(walk(user) for user in users))
        await asyncio.sleep(0.2)  # any last message of the last command
    failed = [c for c in api.calls if c.status != 200]
    assert not failed, [(c.method, c.error, c.params.get("text")) for c in failed[:5]]
    generic = {gettext_for(loc).gettext(GENERIC_ERROR) for loc in ("id", "en")}
    texts = [str(c.params.get("text", "")) for c in api.calls_of("sendMessage")]
    assert not [t for t in texts if any(g in t for g in generic)]
    # English users were answered in English, Indonesian ones in Indonesian
    english = [
        str(c.params.get("text", ""))
        for c in api.calls_of("sendMessage")
        if c.params.get("chat_id") == ADMIN + ENGLISH
    ]
    assert any("Usage: /koreksi" in t for t in english)
    indonesian = [
        str(c.params.get("text", ""))
        for c in api.calls_of("sendMessage")
        if c.params.get("chat_id") == ADMIN
    ]
    assert any("Cara pakai: /koreksi" in t for t in indonesian)
    stranger = [
        str(c.params.get("text", ""))
        for c in api.calls_of("sendMessage")
        if c.params.get("chat_id") == STRANGER + ENGLISH
    ]
    assert any("only for administrators" in t for t in stranger)
    assert not any("Cara pakai" in t or "hanya untuk" in t for t in stranger)
    assert not api.calls_of("sendDocument")


async def test_usage_texts_reach_admins_and_officials(api: FakeBotApi, tmp_path: Path) -> None:
    """The texts Telegram rejected before ("unsupported start tag 'kode'") now arrive."""
    settings = settings_for(api, tmp_path / "spi.sqlite3", admin_ids=[ADMIN])
    async with running_bot(settings):
        for user, text, expected in (
            (ADMIN, "/skor", "<kode atau nama unit>"),
            (ADMIN, "/undang", "<kode atau nama unit>"),
            (ADMIN, "/koreksi", "<unit> <kategori>"),
            (ADMIN, "/tambah_admin", "<ID pengguna Telegram>"),
            (STRANGER, "/daftar", "<kode undangan>"),
        ):
            mark = api.mark()
            api.send_text(user, text)
            call = await api.wait_for_call(
                "sendMessage", lambda c, u=user: c.params["chat_id"] == u, after=mark
            )
            assert call.status == 200, call.error
            assert expected in api.chat_messages(user)[-1].text, text


async def test_id_answers_anyone_with_their_id_only(api: FakeBotApi, tmp_path: Path) -> None:
    settings = settings_for(api, tmp_path / "spi.sqlite3")
    async with running_bot(settings):
        await send_and_wait(api, STRANGER, "/id")
        message = api.chat_messages(STRANGER)[-1]
        assert message.text == f"ID pengguna Telegram Anda: {STRANGER}"


async def test_edited_and_redelivered_admin_commands_run_once(
    api: FakeBotApi, tmp_path: Path
) -> None:
    settings = settings_for(api, tmp_path / "spi.sqlite3", admin_ids=[ADMIN])
    async with running_bot(settings) as svc:
        update = api.send_text(ADMIN, "/koreksi dinkes pengaduan 2 dua pengaduan terbukti")
        await api.wait_for_call("sendMessage", lambda c: c.params["chat_id"] == ADMIN)
        edited = copy.deepcopy(update)
        edited.pop("update_id")
        edited["edited_message"] = edited.pop("message")
        edited["edited_message"]["edit_date"] = edited["edited_message"]["date"] + 5
        mark = api.mark()
        api.send_update(edited)
        reply = await api.wait_for_call(
            "sendMessage", lambda c: c.params["chat_id"] == ADMIN, after=mark
        )
        assert "tidak dibaca" in reply.params["text"]  # the survey's note on edits
        mark = api.mark()
        api.redeliver(update)
        reply = await api.wait_for_call(
            "sendMessage", lambda c: c.params["chat_id"] == ADMIN, after=mark
        )
        assert "sudah dijalankan" in reply.params["text"]
        async with svc.storage.read() as tx:
            rows = await tx.fetchall("SELECT deduction FROM corrections")
            audit = await tx.fetchall(
                "SELECT action FROM audit_log WHERE action = 'correction_added'"
            )
        assert [r["deduction"] for r in rows] == [2.0]
        assert len(audit) == 1


async def test_a_button_pressed_from_another_account_is_refused(
    api: FakeBotApi, tmp_path: Path
) -> None:
    settings = settings_for(api, tmp_path / "spi.sqlite3", admin_ids=[ADMIN])
    async with running_bot(settings) as svc:
        # the survey: a stranger presses the consent button in someone else's chat
        await send_and_wait(api, OFFICIAL, "/start")
        consent = api.chat_messages(OFFICIAL)[-1]
        data = api.button_data(OFFICIAL, "setuju")
        mark = api.mark()
        api.press_button(STRANGER, consent.message_id, data, chat_id=OFFICIAL)
        answer = await api.wait_for_call("answerCallbackQuery", after=mark)
        assert "milik chat orang lain" in answer.params["text"]
        assert answer.params.get("show_alert") in (True, "true")
        assert len(api.chat_messages(OFFICIAL)) == 1 and not consent.edits
        # the desk: another admin presses a revoke button in the first admin's chat
        async with svc.storage.transaction() as tx:
            code = await create_invite(tx, SECRET, "dinkes", ADMIN, utcnow(), dt.timedelta(1))
            await redeem_invite(tx, SECRET, code, OFFICIAL, utcnow())
            await tx.execute("INSERT INTO admins(user_id, added_at) VALUES (?, '')", (STRANGER,))
        await send_and_wait(api, ADMIN, "/pejabat")
        listing = api.chat_messages(ADMIN)[-1]
        revoke = api.button_data(ADMIN, str(OFFICIAL))
        mark = api.mark()
        api.press_button(STRANGER, listing.message_id, revoke, chat_id=ADMIN)
        answer = await api.wait_for_call("answerCallbackQuery", after=mark)
        assert "milik chat orang lain" in answer.params["text"]
        async with svc.storage.read() as tx:
            assert await tx.fetchall("SELECT user_id FROM officials") != []


async def test_reports_answer_while_the_writer_is_busy(api: FakeBotApi, tmp_path: Path) -> None:
    """Reads go to the read-only connection: a long write does not hold up /skor & co."""
    settings = settings_for(api, tmp_path / "spi.sqlite3", admin_ids=[ADMIN])
    async with running_bot(settings) as svc:
        await send_and_wait(api, ADMIN, "/id")  # the bot is up
        async with svc.storage.transaction():  # the writer lock, held by someone else
            for text in (
                "/skor dinkes",
                "/peringkat",
                "/rekap",
                "/siaran_status",
                "/jadwal",
                "/pejabat",
                "/undangan",
                "/admin",
                "/koreksi dinkes",
            ):
                await send_and_wait(api, ADMIN, text)
        assert all(c.status == 200 for c in api.calls)
