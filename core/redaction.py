"""A first, automatic pass over free text before a person reviews it.

Respondents are asked not to name anyone, and some do anyway ("Pak Budi (Kasi
Pelayanan) minta uang"). This pass masks what a pattern can find: a person
addressed by an honorific, an office title that points at one person, numbers
long enough to be an NIP, NIK or phone number, e-mail addresses and links. It
cannot find everything (a bare name, a nickname, a unique event), so its output
is a draft for manual review, never a file to pass on as it is.
"""

from __future__ import annotations

import re

NAME = "[nama]"
TITLE = "[jabatan]"
NUMBER = "[nomor]"
EMAIL = "[email]"
LINK = "[tautan]"

# "Pak Budi", "Bu Sri Wahyuni", "Sdr. Anton": the honorific and up to three capitalised words.
_HONORIFIC = (
    r"(?:bapak|pak|pk|ibu|bu|bpk|sdr|sdri|saudara|saudari|mas|mbak|mba|bang|kak|"
    r"mr|mrs|ms|dr|ir|drs|dra|h|hj)"
)
_CAPITALISED = r"[A-Z][\w'’-]*"
_NAMED_PERSON = re.compile(rf"\b(?i:{_HONORIFIC})\.?\s+{_CAPITALISED}(?:\s+{_CAPITALISED}){{0,2}}")
# Office titles of one person in a unit, abbreviated or spelt out with what they head.
_TITLE = re.compile(
    r"\b(?i:kasi|kasie|kasubag|kasubbag|kasubbid|kasubid|kabid|kabag|kadis|kadin|kaban|kasat|"
    r"kaur|sekdin|sekcam|sekban|sekdis|camat|lurah|plt\.?\s*\w+|"
    r"kepala(?:\s+(?:seksi|sub\s*bagian|subbagian|bidang|bagian|dinas|badan|kantor|unit|"
    r"puskesmas|sekolah|upt[d]?|tu|ruang))?|sekretaris(?:\s+(?:dinas|badan|camat))?)\b"
    rf"(?:\s+{_CAPITALISED}){{0,3}}"
)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_LINK = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
# Eight or more digits, possibly grouped by spaces, dots or dashes (phone, NIP, NIK).
_NUMBER = re.compile(r"(?<!\w)\+?\d(?:[\s.-]?\d){7,}(?!\w)")

_PATTERNS = (
    (_EMAIL, EMAIL),
    (_LINK, LINK),
    (_NUMBER, NUMBER),
    (_TITLE, TITLE),
    (_NAMED_PERSON, NAME),
)


def redact(text: str) -> tuple[str, int]:
    """The text with every match masked, and how many spans were masked."""
    total = 0
    for pattern, mask in _PATTERNS:
        text, count = pattern.subn(mask, text)
        total += count
    return text, total
