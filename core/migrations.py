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

# Broadcasts and their per-recipient delivery rows (no respondent pseudonym). Erasing a
# contact (/hapus_data) also forgets its delivery rows, sent or pending. The statement
# splitter cuts at ";" + newline, so the trigger body keeps its ";" on the END line.
V3_BROADCASTS = """
CREATE TABLE broadcasts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('manual', 'reminder')),
    key TEXT UNIQUE,
    message_key TEXT,
    audience TEXT NOT NULL CHECK (audience IN ('all', 'not_completed', 'started')),
    texts TEXT NOT NULL,
    button TEXT,
    status TEXT NOT NULL CHECK (status IN ('draft', 'sending', 'done', 'cancelled')),
    created_at TEXT NOT NULL,
    created_by INTEGER,
    started_at TEXT,
    finished_at TEXT
);
CREATE INDEX broadcasts_by_status ON broadcasts (status);
CREATE TABLE deliveries (
    broadcast_id INTEGER NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    locale TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
        ('pending', 'sending', 'sent', 'blocked', 'failed', 'unknown', 'skipped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before TEXT,
    updated_at TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (broadcast_id, channel, address)
) WITHOUT ROWID;
CREATE INDEX deliveries_queue ON deliveries (status, channel, broadcast_id);
CREATE INDEX deliveries_by_broadcast ON deliveries (broadcast_id, status);
CREATE INDEX deliveries_by_address ON deliveries (channel, address);
CREATE INDEX deliveries_sent_at ON deliveries (updated_at) WHERE status = 'sent';
CREATE TRIGGER contacts_erased_forget_deliveries AFTER DELETE ON contacts
BEGIN
    DELETE FROM deliveries WHERE channel = OLD.channel AND address = OLD.address; END
"""

# Flag counts for /skor and /rekap read only flagged responses, whatever the sample size.
V4_FLAGGED_INDEX = """
CREATE INDEX responses_flagged ON responses (period, unit_code)
    WHERE status = 'completed' AND flags != ''
"""

MIGRATIONS: list[str] = [V1_CONVERSATION, V2_SCORING_AND_ACCESS, V3_BROADCASTS, V4_FLAGGED_INDEX]
