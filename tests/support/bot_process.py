"""Start `python -m bot run` as its own process, as in production."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from core.config import PROJECT_ROOT
from tests.conftest import SECRET
from tests.support.fake_bot_api import FakeBotApi


def bot_env(api: FakeBotApi, db_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "SPI_"))}
    env.update(
        TELEGRAM_BOT_TOKEN=api.token,
        TELEGRAM_BASE_URL=api.base_url,
        DATABASE_PATH=str(db_path),
        SPI_SECRET_KEY=SECRET.decode(),
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


def run_cli(
    env: Mapping[str, str], *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """`python -m bot ARGS` from the project root, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=PROJECT_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_bot(
    api: FakeBotApi, db_path: Path, log_path: Path, mode: str | None = None, **extra: str
) -> subprocess.Popen[bytes]:
    """`python -m bot run [mode]`; ``mode`` is e.g. "--webhook"."""
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "run", *([mode] if mode else [])],
        cwd=PROJECT_ROOT,
        env=bot_env(api, db_path, **extra),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
