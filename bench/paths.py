"""Where the benchmarks find the project, and the fixed token and key they run with."""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:  # run as `python bench/x.py`: make the project importable
    sys.path.insert(0, str(PROJECT_ROOT))

TOKEN = "123456:BENCH"
SECRET = "bench-secret-key-0123456789abcdef0123456789abcdef"
QUESTIONNAIRE_PATH = PROJECT_ROOT / "surveys" / "spi.toml"
