"""Engine transitions on the real questionnaire and a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core.engine import Engine
from core.events import Choice, Sender, Text, Unsupported
from core.questionnaire import Questionnaire
from core.storage import Storage
from core.units import UnitRegistry
from tests.conftest import SECRET
from tests.support.survey_driver import Clock, Respondent, answer_all, start_as
from tests.support.walker import answer_one

EKSTERNAL = ("Pengguna layanan", ["Ya, pernah", "Saya urus sendiri"])
INTERNAL = ("Pegawai unit", ["Ya, ASN", "Lebih dari 2 tahun"])


def rows(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db_path) as db:
        return list(db.execute(sql))


async def test_full_run_from_start_to_thanks(engine: Engine, db_path: Path) -> None:
    r = Respondent(engine, user_id="777001")
    await r.command("start")
    assert "sukarela" in r.text and "rahasia" in r.text
    await r.press("setuju")
    await r.press("Pengguna layanan")
    await r.type("kesehatan")
    assert r.labels()[0] == "Dinas Kesehatan"
    await r.press("Dinas Kesehatan")
    await r.press("Ya, pernah")
    await r.press("Saya urus sendiri")
    assert "Pertanyaan 1 dari" in r.text
    answered = await answer_all(r)
    assert answered >= 12
    assert "Dinas Kesehatan" in r.text and "Kirim" in " ".join(r.labels())
    await r.press("Kirim")
    assert "Terima kasih" in r.text

    status = rows(db_path, "SELECT status, group_code, unit_code FROM responses")
    assert status == [("completed", "eksternal", "dinkes")]
    stored = dict(rows(db_path, "SELECT question_id, value FROM answers"))
    assert stored["ex_diminta"] == '"tidak_pernah"'
    assert stored["screen_ex_s_urus"] == '"sendiri"'
    dump = "\n".join(sqlite3.connect(db_path).iterdump())
    for table_row in dump.splitlines():
        if table_row.startswith(
            ('INSERT INTO "responses"', 'INSERT INTO "answers"', 'INSERT INTO "sessions"')
        ):
            assert "777001" not in table_row


async def test_stale_and_forged_buttons_change_nothing(engine: Engine, db_path: Path) -> None:
    r = Respondent(engine)
    await start_as(r, EKSTERNAL[0], EKSTERNAL[1], "kesehatan")
    first_screen = r.screen
    await r.press_nth(0)  # answers question 1
    assert first_screen is not None
    stale = first_screen.buttons[1][0].token
    outcome = await r.send(Choice(token=stale))
    assert outcome.notice and "tidak berlaku" in outcome.notice
    assert outcome.replies == []
    for forged in ("1|a|x" * 20, "9999|a|sgt_jelas", "garbage", "", "-|lang|fr"):
        outcome = await r.send(Choice(token=forged))
        assert outcome.notice and outcome.replies == []
    answers = rows(db_path, "SELECT question_id FROM answers WHERE question_id NOT LIKE 'screen%'")
    assert len(answers) == 1


def snapshot(db_path: Path) -> list[list[tuple[object, ...]]]:
    return [
        rows(db_path, f"SELECT * FROM {table} ORDER BY 1, 2")
        for table in ("sessions", "responses", "answers", "processed_events", "contacts")
    ]


async def test_redelivered_event_gets_the_current_screen_and_changes_nothing(
    engine: Engine, db_path: Path
) -> None:
    r = Respondent(engine)
    await start_as(r, EKSTERNAL[0], EKSTERNAL[1], "kesehatan")
    await r.press_nth(0)
    assert "angka" in r.text
    first = await r.send(Text(text="5"), event_id="tg:500")
    assert not first.duplicate and "Pertanyaan 3" in r.text
    screen = r.screen
    before = snapshot(db_path)
    again = await r.send(Text(text="5"), event_id="tg:500")
    # the typed "5" is not taken as the answer to question 3: the screen is shown again
    assert again.duplicate and [reply.text for reply in again.replies] == [screen.text]
    assert again.replies[0].buttons == screen.buttons and not again.replies[0].edit
    assert snapshot(db_path) == before
    count = "SELECT COUNT(*) FROM answers WHERE question_id NOT LIKE 'screen%'"
    assert rows(db_path, count) == [(2,)]

    pressed = await r.send(Choice(token=screen.buttons[0][0].token), event_id="tg:501")
    assert not pressed.duplicate and "Pertanyaan 4" in r.text
    current, before = r.screen, snapshot(db_path)
    for _ in range(2):  # redelivered twice: idempotent, it edits the pressed message
        again = await r.send(Choice(token=screen.buttons[0][0].token), event_id="tg:501")
        assert again.duplicate and again.notice is None
        assert [(x.text, x.buttons, x.edit) for x in again.replies] == [
            (current.text, current.buttons, True)
        ]
        assert snapshot(db_path) == before


async def test_redelivered_event_after_a_restart_is_recognised(
    engine: Engine, db_path: Path
) -> None:
    """The event ids live in the database, not only in the cache of one process."""
    r = Respondent(engine)
    await start_as(r, EKSTERNAL[0], EKSTERNAL[1], "kesehatan")
    await r.send(Text(text="ignored, question 1 wants a button"), event_id="tg:600")
    restarted_storage = await Storage.open(db_path)
    restarted = Engine(
        engine.questionnaire, engine.units, restarted_storage, engine.secret_key,
        clock=engine.clock,
    )
    try:
        before = snapshot(db_path)
        again = await Respondent(restarted, user_id=r.user_id).send(
            Choice(token=r.screen.buttons[0][0].token), event_id="tg:600"
        )
        assert again.duplicate and "Pertanyaan 1" in again.replies[0].text
        assert snapshot(db_path) == before
    finally:
        await restarted_storage.close()


async def test_back_changes_an_answer_and_skip_logic_follows(engine: Engine, db_path: Path) -> None:
    r = Respondent(engine)
    await start_as(r, EKSTERNAL[0], EKSTERNAL[1], "kesehatan")
    for _ in range(20):
        if "memberi uang" in r.text:
            break
        await answer_one(r)
    assert "Ya" in r.labels()
    await r.press("Ya")
    assert "Selesai" in " ".join(r.labels())  # the multi-select follow-up appears
    await r.press("Uang")
    assert "☑️ Uang" in r.labels()
    await r.press("Selesai")
    await r.press("Kembali")
    await r.press("Kembali")
    await r.press("Tidak")  # now the follow-ups are hidden
    assert "Selesai" not in " ".join(r.labels())
    await answer_all(r)
    await r.press("Kirim")
    ids = {row[0] for row in rows(db_path, "SELECT question_id FROM answers")}
    assert "ex_beri_bentuk" not in ids and "ex_beri" in ids


async def test_number_and_text_are_validated(engine: Engine) -> None:
    r = Respondent(engine)
    await start_as(r, EKSTERNAL[0], EKSTERNAL[1], "kesehatan")
    await r.press_nth(0)
    for bad in ("banyak", "0", "1000", "2,5"):
        outcome = await r.type(bad)
        assert "1" in outcome.replies[0].text and "100" in outcome.replies[0].text
        assert "Pertanyaan 2" in r.text
    await r.type("12")
    assert "Pertanyaan 3" in r.text
    await r.press("Kembali")
    assert "12" in r.text  # the earlier answer is shown
    await r.press("Tetap")
    assert "Pertanyaan 3" in r.text


async def test_ineligible_respondent_is_told_why(engine: Engine, db_path: Path) -> None:
    r = Respondent(engine)
    await r.command("start")
    await r.press("setuju")
    await r.press("Pengguna layanan")
    await r.type("kesehatan")
    await r.press("Dinas Kesehatan")
    await r.press("Tidak")
    assert r.text and "12 bulan" in r.text
    await r.press_nth(0)
    assert "Pengguna layanan" in " ".join(r.labels())
    assert rows(db_path, "SELECT COUNT(*) FROM responses") == [(0,)]


async def test_resume_after_restart_at_first_unanswered(
    questionnaire: Questionnaire, units: UnitRegistry, db_path: Path, clock: Clock
) -> None:
    storage = await Storage.open(db_path)
    r = Respondent(Engine(questionnaire, units, storage, SECRET, clock=clock))
    await start_as(r, EKSTERNAL[0], EKSTERNAL[1], "tembalang")
    await r.press_nth(0)
    await r.type("4")
    await storage.close()

    storage = await Storage.open(db_path)
    r2 = Respondent(Engine(questionnaire, units, storage, SECRET, clock=clock), user_id=r.user_id)
    await r2.command("lanjut")
    assert "Kecamatan Tembalang" in r2.transcript[0]
    assert "Pertanyaan 3 dari" in r2.text
    await r2.command("start")
    assert "Pertanyaan 3 dari" in r2.text
    await storage.close()


async def test_cancel_needs_confirmation(engine: Engine, db_path: Path) -> None:
    r = Respondent(engine)
    await start_as(r, EKSTERNAL[0], EKSTERNAL[1], "kesehatan")
    await r.command("batal")
    await r.press("Tidak")
    assert "Pertanyaan 1" in r.text
    await r.command("batal")
    await r.press("Ya")
    assert rows(db_path, "SELECT COUNT(*) FROM responses") == [(0,)]
    outcome = await r.command("lanjut")
    assert "/start" in outcome.replies[0].text


async def test_one_completed_response_per_unit_and_one_unit_for_asn(engine: Engine) -> None:
    r = Respondent(engine)
    await start_as(r, EKSTERNAL[0], EKSTERNAL[1], "kesehatan")
    await answer_all(r)
    await r.press("Kirim")
    await r.press("unit lain")
    await r.press("setuju")
    await r.press(EKSTERNAL[0])
    await r.type("kesehatan")
    outcome = await r.press_nth(0)  # refused before any screening question
    assert any("sudah" in reply.text for reply in outcome.replies)
    await r.type("tembalang")  # another unit is fine
    await r.press_nth(0)
    for label in EKSTERNAL[1]:
        await r.press(label)
    assert "Pertanyaan 1" in r.text

    asn = Respondent(engine, user_id="2002")
    await start_as(asn, INTERNAL[0], INTERNAL[1], "inspektorat")
    await answer_all(asn)
    await asn.press("Kirim")
    await asn.press("unit lain")
    await asn.press("setuju")
    outcome = await asn.press(INTERNAL[0])
    assert any("satu unit" in reply.text for reply in outcome.replies)


async def test_erase_data_and_language(engine: Engine, db_path: Path) -> None:
    r = Respondent(engine)
    await start_as(r, EKSTERNAL[0], EKSTERNAL[1], "kesehatan")
    assert rows(db_path, "SELECT COUNT(*) FROM contacts") == [(1,)]
    await r.command("bahasa")
    await r.press("English")
    assert "Question 1 of" in r.text
    await r.command("hapus_data")
    await r.press("Yes")
    assert rows(db_path, "SELECT COUNT(*) FROM contacts") == [(0,)]
    assert rows(db_path, "SELECT COUNT(*) FROM responses") == [(0,)]
    assert rows(db_path, "SELECT COUNT(*) FROM sessions") == [(0,)]


async def test_odd_messages_get_helpful_replies(engine: Engine) -> None:
    r = Respondent(engine)
    outcome = await r.type("halo")
    assert "/start" in outcome.replies[0].text
    outcome = await r.command("entahlah")
    assert "/bantuan" in outcome.replies[0].text
    await start_as(r, EKSTERNAL[0], EKSTERNAL[1], "kesehatan")
    await r.press_nth(0)
    await r.type("5")
    outcome = await r.type("apa ini?")
    assert "tombol" in outcome.replies[0].text.lower()
    assert "Pertanyaan 3" in outcome.replies[-1].text
    outcome = await r.send(Unsupported("sticker"))
    assert outcome.replies and "Pertanyaan 3" in outcome.replies[-1].text


async def test_pseudonym_is_keyed(engine: Engine) -> None:
    key = engine.respondent_key("telegram", "42")
    assert len(key) == 64 and key == engine.respondent_key("telegram", "42")
    other = Engine(engine.questionnaire, engine.units, engine.storage, b"x" * 40)
    assert other.respondent_key("telegram", "42") != key
    assert Sender("telegram", "42").user_id == "42"
