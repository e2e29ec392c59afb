"""The organisational units (OPD) being assessed, loaded from a data file.

Another city replaces the file, not the code. Each unit has a stable short code
(used in callback data, exports and invite codes) and aliases for search.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from core.questionnaire import DataFileError, Issue, read_model
from core.scoring import CITY_UNIT

UnitCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,15}$")]


class UnitsError(DataFileError):
    pass


class Unit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: UnitCode
    name: Annotated[str, Field(min_length=2)]
    kind: Annotated[str, Field(min_length=2)]
    aliases: list[str] = Field(default_factory=list)


class UnitsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    government: Annotated[str, Field(min_length=2)]
    units: Annotated[list[Unit], Field(min_length=1)]


def normalise(text: str) -> str:
    """Lower-case, strip accents and punctuation so 'K.R.M.T.' matches 'krmt'."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9 ]+", "", text.lower().replace("-", " "))
    return " ".join(text.split())


class UnitRegistry:
    """The units in file order, searchable by code, name or alias fragments."""

    def __init__(self, government: str, units: list[Unit]) -> None:
        self.government = government
        self.units = list(units)
        self._by_code = {u.code: u for u in units}
        self._haystacks = {
            u.code: " | ".join(normalise(t) for t in [u.code, u.name, *u.aliases]) for u in units
        }

    def __len__(self) -> int:
        return len(self.units)

    @property
    def city(self) -> Unit:
        """What experts who rate the government as a whole assess (``CITY_UNIT``)."""
        return Unit(code=CITY_UNIT, name=f"{self.government} secara keseluruhan", kind="kota")

    def get(self, code: str) -> Unit | None:
        return self._by_code.get(code)

    def search(self, query: str) -> list[Unit]:
        """Units whose name, code or an alias contains every word typed."""
        words = normalise(query).split()
        if not words:
            return []
        exact = [u for u in self.units if normalise(u.code) == " ".join(words)]
        if exact:
            return exact
        return [u for u in self.units if all(w in self._haystacks[u.code] for w in words)]

    def resolve(self, query: str) -> Unit | None:
        """One unit for an admin's `/skor <code or name>`, or None when ambiguous."""
        unit = self.get(query.strip().lower())
        if unit:
            return unit
        found = self.search(query)
        return found[0] if len(found) == 1 else None


def load_units(path: Path) -> UnitRegistry:
    parsed = read_model(path, UnitsFile, UnitsError)
    seen: set[str] = set()
    issues = []
    for i, unit in enumerate(parsed.units):
        if unit.code in seen:
            issues.append(Issue(field=f"units[{i}].code", reason=f"duplicate code '{unit.code}'"))
        if unit.code == CITY_UNIT:
            reason = f"'{CITY_UNIT}' is reserved for experts who assess the government as a whole"
            issues.append(Issue(field=f"units[{i}].code", reason=reason))
        seen.add(unit.code)
    if issues:
        raise UnitsError(path, issues)
    return UnitRegistry(parsed.government, parsed.units)
