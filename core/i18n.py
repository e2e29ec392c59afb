"""gettext catalogs for everything a user reads, Indonesian first.

Catalogs are maintained with Babel (`pybabel extract/update`, see README) as
`.po` files under `locales/`. They are compiled in memory at start-up, so a
checkout never runs with a stale `.mo` file.
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).resolve().parents[1] / "locales"
DOMAIN = "messages"
SUPPORTED_LOCALES = ("id", "en")


def catalog_path(locale: str) -> Path:
    return LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(locale: str) -> gettext.NullTranslations:
    """The compiled catalog for ``locale`` (English msgids when none exists)."""
    path = catalog_path(locale)
    if locale not in SUPPORTED_LOCALES or not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def gettext_for(locale: str) -> gettext.NullTranslations:
    return translations(locale if locale in SUPPORTED_LOCALES else "id")


def N_(message: str) -> str:
    """Mark a string for extraction where it is translated later."""
    return message
