"""Questionnaire and units files: the real ones load, and each kind of mistake is named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.config import PROJECT_ROOT
from core.questionnaire import Questionnaire, QuestionnaireError, load_questionnaire
from core.units import UnitRegistry, UnitsError, load_units

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
    assert types == {"single", "multi", "yesno", "text", "number"}
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
