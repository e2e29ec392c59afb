"""Versioned schema migrations, applied in order; ``PRAGMA user_version`` is the version.

Never edit a released migration: add a new one, so existing databases upgrade.
Response and answer tables hold no Telegram id, chat id, name or username.
"""

from __future__ import annotations

V1_CONVERSATION = """
CREATE TABLE sessions (
    respondent_key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE responses (
    id INTEGER PRIMARY KEY,
    respondent_key TEXT NOT NULL,
    period TEXT NOT NULL,
    group_code TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('in_progress', 'completed')),
    channel TEXT NOT NULL,
    started_at TEXT NOT NULL,
    completed_at TEXT
);
CREATE UNIQUE INDEX responses_one_open ON responses (respondent_key)
    WHERE status = 'in_progress';
CREATE UNIQUE INDEX responses_one_per_unit ON responses (respondent_key, period, unit_code)
    WHERE status = 'completed';
CREATE UNIQUE INDEX responses_one_internal ON responses (respondent_key, period)
    WHERE status = 'completed' AND group_code = 'internal';
CREATE INDEX responses_by_unit ON responses (period, unit_code, status);
CREATE TABLE answers (
    response_id INTEGER NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
    question_id TEXT NOT NULL,
    value TEXT NOT NULL,
    answered_at TEXT NOT NULL,
    PRIMARY KEY (response_id, question_id)
) WITHOUT ROWID;
CREATE TABLE processed_events (
    event_id TEXT PRIMARY KEY,
    processed_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE contacts (
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    locale TEXT NOT NULL,
    opted_out INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    survey_status TEXT NOT NULL DEFAULT 'none',
    updated_at TEXT NOT NULL,
    PRIMARY KEY (channel, address)
)
"""

V2_SCORING_AND_ACCESS = """
ALTER TABLE responses ADD COLUMN duration_seconds INTEGER;
ALTER TABLE responses ADD COLUMN respondent_index REAL;
ALTER TABLE responses ADD COLUMN flags TEXT NOT NULL DEFAULT '';
ALTER TABLE responses ADD COLUMN counted INTEGER NOT NULL DEFAULT 0;
CREATE INDEX responses_completed_at ON responses (period, unit_code, completed_at)
    WHERE status = 'completed';
CREATE TABLE response_scores (
    response_id INTEGER NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
    dimension TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (response_id, dimension)
) WITHOUT ROWID;
CREATE TABLE agg_group (
    period TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    group_code TEXT NOT NULL,
    n INTEGER NOT NULL DEFAULT 0,
    n_indexed INTEGER NOT NULL DEFAULT 0,
    sum_index REAL NOT NULL DEFAULT 0,
    sumsq_index REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (period, unit_code, group_code)
) WITHOUT ROWID;
CREATE TABLE agg_dimension (
    period TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    group_code TEXT NOT NULL,
    dimension TEXT NOT NULL,
    n INTEGER NOT NULL DEFAULT 0,
    total REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (period, unit_code, group_code, dimension)
) WITHOUT ROWID;
CREATE TABLE agg_item (
    period TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    group_code TEXT NOT NULL,
    question_id TEXT NOT NULL,
    n INTEGER NOT NULL DEFAULT 0,
    total REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (period, unit_code, group_code, question_id)
) WITHOUT ROWID;
CREATE TABLE corrections (
    id INTEGER PRIMARY KEY,
    period TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    deduction REAL NOT NULL CHECK (deduction >= 0 AND deduction <= 100),
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE admins (
    user_id INTEGER PRIMARY KEY,
    added_by INTEGER,
    added_at TEXT NOT NULL
);
CREATE TABLE officials (
    user_id INTEGER PRIMARY KEY,
    unit_code TEXT NOT NULL,
    added_at TEXT NOT NULL
);
CREATE TABLE invites (
    id INTEGER PRIMARY KEY,
    code_hash TEXT NOT NULL UNIQUE,
    unit_code TEXT NOT NULL,
    created_by INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT,
    used_by INTEGER
)
"""

MIGRATIONS: list[str] = [V1_CONVERSATION, V2_SCORING_AND_ACCESS]
