"""Questionnaire and units files: the real ones load, and each kind of mistake is named."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from core.config import PROJECT_ROOT
from core.engine import Engine
from core.navigation import visible_questions
from core.questionnaire import (
    Questionnaire,
    QuestionnaireError,
    label_issues,
    load_questionnaire,
)
from core.scoring import item_score
from core.units import UnitRegistry, UnitsError, load_units
from tests.support.survey_driver import Respondent, answer_all, start_as

MINIMAL = """
period = "2025"
title = { id = "Survei", en = "Survey" }
intro = { id = "Pengantar", en = "Intro" }

[scales]
freq = [
  { code = "never", text = { id = "Tidak pernah", en = "Never" }, score = 100 },
  { code = "often", text = { id = "Sering", en = "Often" }, score = 0 },
  { code = "tt", text = { id = "Tidak tahu", en = "Don't know" } },
]

[[groups]]
code = "internal"
title = { id = "Internal", en = "Internal" }
description = { id = "Pegawai", en = "Staff" }

[[groups]]
code = "eksternal"
title = { id = "Eksternal", en = "External" }
description = { id = "Pengguna", en = "Users" }

[[groups]]
code = "eksper"
title = { id = "Eksper", en = "Expert" }
description = { id = "Ahli", en = "Experts" }

[[dimensions]]
code = "integritas"
title = { id = "Integritas", en = "Integrity" }
groups = ["internal", "eksternal", "eksper"]

[[questions]]
id = "q_gift"
type = "yesno"
groups = ["internal", "eksternal", "eksper"]
dimension = "integritas"
text = { id = "Memberi hadiah?", en = "Gave a gift?" }
yes_score = 0
no_score = 100

[[questions]]
id = "q_freq"
type = "single"
scale = "freq"
groups = ["internal", "eksternal", "eksper"]
dimension = "integritas"
show_if = { question = "q_gift", any_of = ["ya"] }
text = { id = "Seberapa sering?", en = "How often?" }

[[questions]]
id = "q_times"
type = "number"
groups = ["eksternal"]
min_value = 1
max_value = 100
text = { id = "Berapa kali?", en = "How many times?" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "q.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(QuestionnaireError) as caught:
        load_questionnaire(write(tmp_path, text))
    assert str(tmp_path / "q.toml") in str(caught.value)
    return [str(issue) for issue in caught.value.issues]


def test_real_questionnaire_has_a_full_bank(questionnaire: Questionnaire) -> None:
    counts = {g.code: len(questionnaire.questions_for(g.code)) for g in questionnaire.groups}
    assert counts["internal"] >= 20 and counts["eksternal"] >= 12 and counts["eksper"] >= 12
    assert len(questionnaire.dimensions) == 7
    types = {q.type for q in questionnaire.questions}
    assert types == {"single", "multi", "text", "number"}  # yes/no: see MINIMAL below
    assert any(q.show_if for q in questionnaire.questions)
    for question in questionnaire.questions:
        assert question.text.id and question.text.en
        if question.dimension and question.type == "single":
            assert any(o.score is None for o in question.options), question.id


def test_minimal_file_loads_and_resolves_scales(tmp_path: Path) -> None:
    q = load_questionnaire(write(tmp_path, MINIMAL))
    freq = q.question("q_freq")
    assert freq is not None and [o.code for o in freq.options] == ["never", "often", "tt"]
    gift = q.question("q_gift")
    assert gift is not None and [(o.code, o.score) for o in gift.options] == [
        ("ya", 0),
        ("tidak", 100),
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("score = 100", "score = 140"), "scales.freq[0](code=never).score: Input should be less"),
        (
            (
                'dimension = "integritas"\ntext = { id = "Memberi',
                'dimension = "sdm"\ntext = { id = "Memberi',
            ),
            "questions[0](id=q_gift).dimension: unknown dimension 'sdm'",
        ),
        (
            ('any_of = ["ya"]', 'any_of = ["mungkin"]'),
            "questions[1](id=q_freq).show_if.any_of: unknown option(s) of 'q_gift'",
        ),
        (
            ('question = "q_gift"', 'question = "q_times"'),
            "questions[1](id=q_freq).show_if.question: 'q_times' is not an earlier question",
        ),
        (('id = "q_times"', 'id = "q_gift"'), "questions[2](id=q_gift).id: duplicate question id"),
        (
            ("max_value = 100", "max_value = 0"),
            "questions[2](id=q_times).max_value: max_value must be greater than min_value",
        ),
        (('scale = "freq"', 'scale = "likert"'), "questions[1](id=q_freq).scale: unknown scale"),
        (('code = "eksper"', 'code = "pakar"'), "groups[2](code=pakar).code: Input should be"),
        (('type = "number"', 'type = "slider"'), "questions[2](id=q_times).type: Input should be"),
        (
            ('text = { id = "Berapa kali?", en = "How many times?" }', ""),
            "questions[2](id=q_times).text: Field required",
        ),
        (
            (
                'text = { id = "Berapa kali?", en = "How many times?" }',
                'text = { id = "Seberapa sering?", en = "How many times?" }',
            ),
            "questions[2](id=q_times).text.id: same wording as 'q_freq'",
        ),
        (('period = "2025"', 'period = "2025"\ncolour = "red"'), "colour: Extra inputs"),
        (('[[questions]]\nid = "q_times"', '[[questions]\nid = "q_times"'), "(syntax)"),
    ],
)
def test_each_mistake_is_named_with_field_and_reason(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    old, new = change
    assert old in MINIMAL
    found = problems(tmp_path, MINIMAL.replace(old, new, 1))
    assert any(expected in p for p in found), found


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(QuestionnaireError, match="file not found"):
        load_questionnaire(tmp_path / "nope.toml")


def test_check_questionnaire_command(tmp_path: Path) -> None:
    good = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "check-questionnaire",
            str(PROJECT_ROOT / "surveys/spi.toml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0 and "OK" in good.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "check-questionnaire",
            str(write(tmp_path, MINIMAL.replace("score = 100", "score = 140", 1))),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "scales.freq[0](code=never).score" in bad.stderr


def test_check_questionnaire_reports_labels_too_long_for_whatsapp(tmp_path: Path) -> None:
    long_label = MINIMAL.replace(
        '{ id = "Tidak tahu", en = "Don\'t know" }',
        '{ id = "Tidak tahu sama sekali, sungguh", en = "Don\'t know" }',
    )
    assert long_label != MINIMAL
    shortened = long_label.replace(
        '"Don\'t know" }', '"Don\'t know" }, short = { id = "Tidak tahu sama sekali ya", en = "-" }'
    )
    result = {}
    for name, text in (("long", long_label), ("short", shortened)):
        result[name] = subprocess.run(
            [sys.executable, "-m", "bot", "check-questionnaire", str(write(tmp_path, text))],
            capture_output=True,
            text=True,
            check=False,
        )
    assert result["long"].returncode == 1
    lines = result["long"].stdout.splitlines() + result["long"].stderr.splitlines()
    field = "scales.freq[2](code=tt).text.id"
    assert any(field in line and "Telegram" in line and "30" in line for line in lines), lines
    # three options go out as WhatsApp reply buttons
    assert any(field in line and "reply-button title allows 20" in line for line in lines)
    # a short label that is itself too long is reported at its own path
    lines = result["short"].stdout.splitlines() + result["short"].stderr.splitlines()
    assert result["short"].returncode == 1
    assert any(
        "scales.freq[2](code=tt).short.id" in line and "25 characters" in line for line in lines
    )


def test_real_labels_fit_telegram_and_whatsapp(questionnaire: Questionnaire) -> None:
    assert label_issues(questionnaire) == []
    with_short = [
        o.code for q in questionnaire.questions for o in q.options if o.short is not None
    ] + [o.code for g in questionnaire.groups for s in g.screening for o in s.options if o.short]
    assert "terlibat" in with_short and "asosiasi" in with_short


# -- questionnaire version 2 ---------------------------------------------------------------


def scored_choice(questionnaire: Questionnaire) -> list[str]:
    return [q.id for q in questionnaire.questions if q.dimension and q.is_choice]


def test_dont_know_and_prefer_not_to_answer_are_two_unscored_options(
    questionnaire: Questionnaire,
) -> None:
    assert questionnaire.version == "2" and questionnaire.version_label == "2025/2"
    for qid in scored_choice(questionnaire):
        question = questionnaire.question(qid)
        assert question is not None
        unscored = {o.code: o for o in question.options if o.score is None}
        assert "tm" in unscored, qid
        assert unscored["tm"].text.id == "Tidak ingin menjawab"
        if qid != "ex_beri":  # one's own bribe: one knows, but may prefer not to say
            assert unscored["tt"].text.id == "Tidak tahu", qid
        assert item_score(question, "tt") is None and item_score(question, "tm") is None
    beri = questionnaire.question("ex_beri")
    assert beri is not None and [o.code for o in beri.options] == ["tidak", "ya", "tm"]
    labels = [o.text.id for q in questionnaire.questions for o in q.options]
    assert "Netral" in labels and not any("Ragu" in label for label in labels)
    assert not any("/ tidak menjawab" in label for label in labels)


SPLIT = {
    "in_biaya": "in_waktu",
    "in_keterbukaan": "in_info_pbj",
    "in_upg": "in_upg_cara",
    "in_wbs": "in_wbs_rahasia",
    "ex_keputusan": "ex_campur",
    "ek_keterbukaan": "ek_info_anggaran",
    "ek_pbj_mutu": "ek_pbj_manfaat",
}


def test_double_barrelled_items_are_split(questionnaire: Questionnaire) -> None:
    for old, new in SPLIT.items():
        first, second = questionnaire.question(old), questionnaire.question(new)
        assert first is not None and second is not None, old
        assert first.dimension == second.dimension and first.groups == second.groups
        for question in (first, second):
            # one topic each: no "X dan Y" / "X atau Y" pair left in the statement
            assert " dan " not in question.text.id, question.text.id
            assert " atau " not in question.text.id.split("(")[0], question.text.id
    balasan = questionnaire.question("in_balasan")
    assert balasan is not None and "justru" not in balasan.text.id


def test_reverse_keyed_items_score_reversed(questionnaire: Questionnaire) -> None:
    reverse = [q for q in questionnaire.questions if q.scale == "setuju_terbalik"]
    for group in ("internal", "eksternal", "eksper"):
        assert any(group in q.groups for q in reverse), group
    forward = questionnaire.scales["setuju"]
    backward = questionnaire.scales["setuju_terbalik"]
    assert [o.text for o in forward] == [o.text for o in backward]
    assert [o.score for o in backward] == [0, 25, 50, 75, 100, None, None]
    balasan = questionnaire.question("in_balasan")
    assert balasan is not None and balasan in reverse
    assert item_score(balasan, "sgt_setuju") == 0 and item_score(balasan, "sgt_tdk_stj") == 100


def test_service_users_asked_about_experience_with_how_often_only_after_yes(
    questionnaire: Questionnaire,
) -> None:
    eksternal = questionnaire.questions_for("eksternal")
    assert not [q.id for q in eksternal if q.scale == "frekuensi"]
    experience = [q for q in eksternal if q.scale == "pengalaman"]
    assert {"ex_diminta", "ex_jalur_cepat", "ex_calo", "ex_orang_dalam"} <= {
        q.id for q in experience
    }
    for question in experience:
        assert question.text.id.startswith("Dalam 12 bulan terakhir, pernah"), question.id
        assert [o.text.id for o in question.options][:2] == ["Tidak pernah", "Pernah"]
    base = {"ex_sebagai": "warga", "ex_diminta": "tidak_pernah"}
    shown = {q.id for q in visible_questions(questionnaire, "eksternal", base)}
    assert "ex_diminta_kali" not in shown
    shown = {
        q.id
        for q in visible_questions(questionnaire, "eksternal", {**base, "ex_diminta": "pernah"})
    }
    assert "ex_diminta_kali" in shown
    follow_up = questionnaire.question("ex_diminta_kali")
    assert follow_up is not None and follow_up.dimension is None


def test_vendors_get_a_procurement_block(questionnaire: Questionnaire) -> None:
    def shown(role: str) -> set[str]:
        answers = {"ex_sebagai": role}
        return {q.id for q in visible_questions(questionnaire, "eksternal", answers)}

    block = {"ex_pbj_atur", "ex_pbj_diminta", "ex_pbj_adil"}
    assert block <= shown("penyedia")
    assert not block & shown("warga") and not block & shown("usaha")
    pbj = questionnaire.dimension("pbj")
    assert pbj is not None and "eksternal" in pbj.groups
    for qid in block:
        question = questionnaire.question(qid)
        assert question is not None and question.dimension == "pbj"


async def test_a_vendor_completes_the_procurement_block_and_gets_a_pbj_score(
    engine: Engine, db_path: Path
) -> None:
    for user, role in (("vendor", "Penyedia"), ("resident", "Warga")):
        r = Respondent(engine, user_id=user)
        await start_as(r, "Pengguna layanan", ["Ya, pernah", "Saya urus sendiri"], "kesehatan")
        await r.press(role)
        await answer_all(r)
        await r.press("Kirim")
        assert "Terima kasih" in r.text
    with closing(sqlite3.connect(db_path)) as db:
        scored = db.execute(
            "SELECT s.dimension, COUNT(*) FROM response_scores s GROUP BY s.dimension"
        ).fetchall()
        pbj_answers = db.execute(
            "SELECT question_id FROM answers WHERE question_id LIKE 'ex_pbj_%' ORDER BY 1"
        ).fetchall()
    assert dict(scored)["pbj"] == 1 and dict(scored)["integritas"] == 2
    assert [q for (q,) in pbj_answers] == ["ex_pbj_adil", "ex_pbj_atur", "ex_pbj_diminta"]


def test_units_registry_search(units: UnitRegistry) -> None:
    assert len(units) == 52
    assert [u.code for u in units.search("kesehatan")] == ["dinkes"]
    assert [u.name for u in units.search("tembalang")] == ["Kecamatan Tembalang"]
    assert units.search("   ") == []
    assert units.resolve("dinkes") is not None
    codes = [u.code for u in units.units]
    assert len(set(codes)) == len(codes)
    assert all(len(f"9|u|{code}".encode()) <= 64 for code in codes)


def test_units_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "units.toml"
    path.write_text('government = "Kota"\n[[units]]\ncode = "A b"\nname = "X"\nkind = "dinas"\n')
    with pytest.raises(UnitsError) as caught:
        load_units(path)
    assert [i.field for i in caught.value.issues] == [
        "units[0](code=A b).code",
        "units[0](code=A b).name",
    ]
