"""After a run: every acknowledged answer is in the database, once, as pressed."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.respondents import SurveyRespondent


@dataclass
class Check:
    respondents: int = 0
    completed: int = 0
    acknowledged: int = 0
    missing: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.wrong or self.duplicates or self.unfinished or self.order)

    def summary(self) -> str:
        parts = [
            f"{self.completed}/{self.respondents} completed",
            f"{self.acknowledged} acknowledged answers checked",
            f"{len(self.missing)} missing",
            f"{len(self.wrong)} different",
            f"{len(self.duplicates)} duplicated responses",
            f"{len(self.order)} order errors",
        ]
        return ", ".join(parts)

    def examples(self, n: int = 5) -> list[str]:
        problems = self.missing + self.wrong + self.duplicates + self.unfinished + self.order
        return problems[:n]


def check_database(db_path: Path, respondents: list[SurveyRespondent], exact: bool) -> Check:
    """Every acknowledged answer is stored; one completed response per respondent.

    ``exact``: without crashes the stored answers must equal the pressed ones, no more.
    """
    result = Check(respondents=len(respondents))
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        for r in respondents:
            rows = db.execute(
                "SELECT id, status, unit_code, group_code FROM responses WHERE respondent_key = ?",
                (r.respondent_key,),
            ).fetchall()
            completed = [row for row in rows if row[1] == "completed"]
            open_ = [row for row in rows if row[1] == "in_progress"]
            if len(completed) > 1:
                result.duplicates.append(f"user {r.user_id}: {len(completed)} completed")
            if open_ or not completed:
                result.unfinished.append(f"user {r.user_id}: {len(open_)} open, not completed")
                continue
            result.completed += 1
            response_id, _, unit, group = completed[0]
            if group != r.group or (r.unit is not None and unit != r.unit):
                result.wrong.append(f"user {r.user_id}: {group}/{unit} != {r.group}/{r.unit}")
            stored = {
                qid: json.loads(value)
                for qid, value in db.execute(
                    "SELECT question_id, value FROM answers WHERE response_id = ?", (response_id,)
                )
            }
            wanted: dict[str, Any] = {**r.expected, **r.screening_expected}
            for qid, value in wanted.items():
                result.acknowledged += 1
                if qid not in stored:
                    result.missing.append(f"user {r.user_id}: {qid} not stored")
                elif stored[qid] != value and stored[qid] not in r.unknown.get(qid, []):
                    result.wrong.append(f"user {r.user_id}: {qid} = {stored[qid]!r}, not {value!r}")
            if exact:
                extra = sorted(set(stored) - set(wanted))
                if extra:
                    result.wrong.append(f"user {r.user_id}: unexpected answers {extra}")
            result.order.extend(f"user {r.user_id}: {e}" for e in r.order_errors)
    finally:
        db.close()
    return result
