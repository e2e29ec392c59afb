"""Engine screens as WhatsApp messages: always within the Cloud API's limits."""

from __future__ import annotations

import pytest

from bot.whatsapp.render import (
    INTERACTIVE_BODY,
    LIST_ROWS,
    Payload,
    ShortLabels,
    Words,
    fit_titles,
    render_reply,
    whatsapp_text,
)
from core.engine import Engine
from core.events import Button, Reply
from core.questionnaire import LocalizedText, Questionnaire
from tests.support.fake_whatsapp_api import CloudApiRefusal, error_body, validate
from tests.support.survey_driver import Respondent

WORDS = Words.for_locale("id")


def check(messages: list[Payload]) -> list[Payload]:
    """Every message as the real API would judge it."""
    for message in messages:
        validate({"messaging_product": "whatsapp", "to": "62811", **message})
    return messages


def reply(*labels: str, text: str = "Pertanyaan") -> Reply:
    return Reply(
        text=text, buttons=[[Button(label, f"7|a|o{n}")] for n, label in enumerate(labels)]
    )


def choices(message: Payload) -> list[Payload]:
    interactive = message["interactive"]
    if interactive["type"] == "button":
        return [b["reply"] for b in interactive["action"]["buttons"]]
    return [row for s in interactive["action"]["sections"] for row in s["rows"]]


def test_html_subset_becomes_whatsapp_formatting() -> None:
    assert whatsapp_text("<b>Judul </b>&amp; <i>catatan</i> &lt;3") == "*Judul* & _catatan_ <3"


def test_yes_no_with_back_is_buttons_and_a_scale_is_a_list() -> None:
    [buttons] = check(render_reply(reply("Ya", "Tidak", "⬅️ Kembali"), WORDS, ShortLabels()))
    assert buttons["interactive"]["type"] == "button"
    scale = reply(
        "Tidak pernah",
        "Jarang",
        "Kadang-kadang",
        "Sering",
        "Sangat sering",
        "Tidak tahu / tidak menjawab",
        "⬅️ Kembali",
    )
    [listed] = check(render_reply(scale, WORDS, ShortLabels()))
    assert listed["interactive"]["type"] == "list"
    rows = choices(listed)
    assert [r["id"] for r in rows] == [f"7|a|o{n}" for n in range(7)]
    assert rows[5]["title"] == "Tidak tahu / tidak menj…"
    assert rows[5]["description"] == "Tidak tahu / tidak menjawab"
    assert rows[-1]["title"] == "⬅️ Kembali"  # back is always reachable


def test_short_label_from_the_questionnaire_is_used(questionnaire: Questionnaire) -> None:
    copy = questionnaire.model_copy(deep=True)
    option = next(o for q in copy.questions for o in q.options if o.code == "tt")
    option.text = LocalizedText(id="Tidak tahu / tidak menjawab", en="Don't know / no answer")
    option.short = LocalizedText(id="Tidak tahu", en="Don't know")
    shorts = ShortLabels.from_questionnaire(copy)
    [listed] = check(render_reply(reply("Jarang", "✅ Tidak tahu / tidak menjawab"), WORDS, shorts))
    # Two choices that fit become buttons, with the short label.
    assert [c["title"] for c in choices(listed)] == ["Jarang", "✅ Tidak tahu"]


def test_truncated_titles_stay_distinct() -> None:
    labels = ["Kecamatan Semarang Tengah Sekali", "Kecamatan Semarang Tengah Sekala"]
    titles = fit_titles(labels, 24)
    assert len(set(titles)) == 2 and all(len(t) <= 24 for t in titles)


def test_multi_select_shows_the_running_selection_and_a_done_row() -> None:
    multi = reply("☑️ Uang", "⬜ Barang", "☑️ Fasilitas", "⬜ Lainnya", "Selesai ✔️", "⬅️ Kembali")
    [listed] = check(render_reply(multi, WORDS, ShortLabels()))
    assert listed["interactive"]["body"]["text"].endswith(
        WORDS.selected.format(items="Uang, Fasilitas")
    )
    assert "Selesai ✔️" in [r["title"] for r in choices(listed)]
    [empty] = render_reply(reply("⬜ Uang", "⬜ Barang", "Selesai ✔️"), WORDS, ShortLabels())
    assert empty["interactive"]["body"]["text"].endswith(WORDS.nothing_selected)


def test_more_than_ten_choices_and_long_bodies_are_split() -> None:
    many = reply(*[f"Pilihan nomor {n}" for n in range(13)], text="x" * 2000 + "\n\nPilih:")
    messages = check(render_reply(many, WORDS, ShortLabels()))
    assert messages[0]["type"] == "text"
    lists = messages[1:]
    assert [len(choices(m)) for m in lists] == [LIST_ROWS, 3]
    assert lists[0]["interactive"]["body"]["text"] == "Pilih:"
    assert all(len(m["interactive"]["body"]["text"]) <= INTERACTIVE_BODY for m in lists)


async def test_every_unit_page_fits_a_list(engine: Engine) -> None:
    respondent = Respondent(engine, user_id="62855", channel="whatsapp")
    await respondent.command("start")
    await respondent.press("setuju")
    await respondent.press("Pengguna layanan")  # the unit picker comes next
    pages = 0
    while True:
        assert respondent.screen is not None
        [listed] = check(render_reply(respondent.screen, WORDS, ShortLabels()))
        pages += 1
        assert listed["interactive"]["footer"]["text"].startswith("Halaman") or pages == 1
        if "➡️" not in respondent.labels():
            break
        await respondent.press("➡️")
    assert pages == -(-len(engine.units.units) // 8)
    await respondent.type("kecamatan")  # search narrows the list
    check(render_reply(respondent.screen, WORDS, ShortLabels()))


@pytest.mark.parametrize(
    ("buttons", "detail"),
    [
        (["A", "B", "C", "D"], "buttons: expected 1 to 3"),
        (["Twenty-one characters"], "Button title length invalid"),
    ],
)
def test_fake_refuses_what_the_cloud_api_refuses(buttons: list[str], detail: str) -> None:
    message = {
        "messaging_product": "whatsapp",
        "to": "62811",
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "?"},
            "action": {
                "buttons": [{"type": "reply", "reply": {"id": b, "title": b}} for b in buttons]
            },
        },
    }
    with pytest.raises(CloudApiRefusal) as refused:
        validate(message)
    body = error_body(refused.value.code, refused.value.details)
    assert body["error"]["code"] == 131009
    assert detail in body["error"]["error_data"]["details"]


