"""Every message a user can read is translated in every catalog."""

from __future__ import annotations

import re

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from core.config import PROJECT_ROOT
from core.i18n import SUPPORTED_LOCALES, catalog_path, gettext_for

PLACEHOLDER = re.compile(r"\{[a-z_]*\}")


def source_messages() -> set[str]:
    found: set[str] = set()
    for package in ("core", "bot"):
        for _file, _line, message, _comments, _context in extract_from_dir(
            PROJECT_ROOT / package, keywords={"_": None, "N_": None}, comment_tags=()
        ):
            if isinstance(message, str):
                found.add(message)
    return found


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_catalog_has_every_message(locale: str) -> None:
    with catalog_path(locale).open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    messages = source_messages()
    assert len(messages) > 50
    missing = sorted(m for m in messages if m not in catalog or not catalog[m].string)
    assert not missing, f"{locale}: untranslated: {missing}"
    fuzzy = sorted(m.id for m in catalog if m.id and m.fuzzy)
    assert not fuzzy, f"{locale}: fuzzy: {fuzzy}"
    for message in messages:
        translated = catalog[message].string
        assert isinstance(translated, str)
        assert set(PLACEHOLDER.findall(translated)) == set(PLACEHOLDER.findall(message)), message


def test_indonesian_is_the_default() -> None:
    assert gettext_for("id").gettext("Question {n} of {total}") == "Pertanyaan {n} dari {total}"
    assert gettext_for("xx").gettext("📨 Send") == gettext_for("id").gettext("📨 Send")
    assert gettext_for("en").gettext("📨 Send") == "📨 Send"
