"""Shared fixtures: the real questionnaire and units, a real SQLite file per test."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.config import PROJECT_ROOT
from core.engine import Engine
from core.questionnaire import Questionnaire, load_questionnaire
from core.storage import Storage
from core.units import UnitRegistry, load_units
from tests.support.survey_driver import Clock

SECRET = b"test-secret-key-that-is-long-enough-0123456789"
QUESTIONNAIRE_PATH = PROJECT_ROOT / "surveys" / "spi.toml"
UNITS_PATH = PROJECT_ROOT / "surveys" / "units-kota-semarang.toml"


@pytest.fixture(scope="session")
def questionnaire() -> Questionnaire:
    return load_questionnaire(QUESTIONNAIRE_PATH)


@pytest.fixture(scope="session")
def units() -> UnitRegistry:
    return load_units(UNITS_PATH)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "spi.sqlite3"


@pytest.fixture
async def storage(db_path: Path) -> AsyncIterator[Storage]:
    store = await Storage.open(db_path)
    yield store
    await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(dt.datetime(2025, 6, 10, 2, 0, tzinfo=dt.UTC))


@pytest.fixture
def engine(
    questionnaire: Questionnaire, units: UnitRegistry, storage: Storage, clock: Clock
) -> Engine:
    return Engine(questionnaire, units, storage, SECRET, clock=clock)
