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

# Unlinkable at rest (see docs/PRIVACY.md). Nothing on the answer side (sessions,
# responses, answers, scores) shares a time, an insertion order or a transaction
# with anything on the chat side (contacts, deliveries):
# - responses get random ids: the table's b-tree order is no longer arrival order;
# - a response keeps its start only sealed with the key (for its duration), and once
#   complete only the day, the duration and what scoring and the flags need;
# - answers lose their times; sessions and contacts lose theirs and their rowids;
# - contacts no longer carry a survey status: reminders derive it with the key.
# Migrated in-progress responses lose their start (their duration is unknown).
# The old tables are dropped; Storage.open vacuums after this step so that no freed
# page keeps their rows.
V5_UNLINKABLE = """
CREATE TEMP TABLE v5_ids AS
    SELECT id AS old_id, (abs(random()) % 9007199254740990) + 1 AS new_id FROM responses;
CREATE TABLE responses_v5 (
    id INTEGER PRIMARY KEY,
    respondent_key TEXT NOT NULL,
    period TEXT NOT NULL,
    group_code TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('in_progress', 'completed')),
    channel TEXT NOT NULL,
    questionnaire_version TEXT NOT NULL DEFAULT '',
    started_seal TEXT,
    completed_on TEXT,
    duration_seconds INTEGER,
    respondent_index REAL,
    flags TEXT NOT NULL DEFAULT '',
    counted INTEGER NOT NULL DEFAULT 0
);
INSERT INTO responses_v5 (id, respondent_key, period, group_code, unit_code, status, channel,
        completed_on, duration_seconds, respondent_index, flags, counted)
    SELECT m.new_id, r.respondent_key, r.period, r.group_code, r.unit_code, r.status, r.channel,
        substr(r.completed_at, 1, 10), r.duration_seconds, r.respondent_index, r.flags, r.counted
    FROM responses r JOIN v5_ids m ON m.old_id = r.id ORDER BY m.new_id;
CREATE TABLE answers_v5 (
    response_id INTEGER NOT NULL REFERENCES responses_v5 (id) ON DELETE CASCADE,
    question_id TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (response_id, question_id)
) WITHOUT ROWID;
INSERT INTO answers_v5 SELECT m.new_id, a.question_id, a.value
    FROM answers a JOIN v5_ids m ON m.old_id = a.response_id ORDER BY m.new_id;
CREATE TABLE response_scores_v5 (
    response_id INTEGER NOT NULL REFERENCES responses_v5 (id) ON DELETE CASCADE,
    dimension TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (response_id, dimension)
) WITHOUT ROWID;
INSERT INTO response_scores_v5 SELECT m.new_id, s.dimension, s.score
    FROM response_scores s JOIN v5_ids m ON m.old_id = s.response_id ORDER BY m.new_id;
CREATE TABLE sessions_v5 (
    respondent_key TEXT PRIMARY KEY,
    state TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO sessions_v5 SELECT respondent_key, state FROM sessions ORDER BY respondent_key;
CREATE TABLE contacts_v5 (
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    locale TEXT NOT NULL,
    opted_out INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (channel, address)
) WITHOUT ROWID;
INSERT INTO contacts_v5 SELECT channel, address, locale, opted_out, active FROM contacts
    ORDER BY channel, address;
DROP TABLE answers;
DROP TABLE response_scores;
DROP TABLE responses;
DROP TABLE sessions;
DROP TABLE contacts;
DROP TABLE v5_ids;
ALTER TABLE responses_v5 RENAME TO responses;
ALTER TABLE answers_v5 RENAME TO answers;
ALTER TABLE response_scores_v5 RENAME TO response_scores;
ALTER TABLE sessions_v5 RENAME TO sessions;
ALTER TABLE contacts_v5 RENAME TO contacts;
CREATE UNIQUE INDEX responses_one_open ON responses (respondent_key)
    WHERE status = 'in_progress';
CREATE UNIQUE INDEX responses_one_per_unit ON responses (respondent_key, period, unit_code)
    WHERE status = 'completed';
CREATE UNIQUE INDEX responses_one_internal ON responses (respondent_key, period)
    WHERE status = 'completed' AND group_code = 'internal';
CREATE INDEX responses_by_unit ON responses (period, unit_code, status);
CREATE INDEX responses_flagged ON responses (period, unit_code)
    WHERE status = 'completed' AND flags != '';
CREATE TRIGGER contacts_erased_forget_deliveries AFTER DELETE ON contacts
BEGIN
    DELETE FROM deliveries WHERE channel = OLD.channel AND address = OLD.address; END;
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only'); END
"""

# Survey periods closed with `spi-bot close-period`: their figures are final, and the
# chat-side records of the period are purged once `purge_after` has passed.
V6_PERIODS = """
CREATE TABLE periods (
    period TEXT PRIMARY KEY,
    closed_on TEXT NOT NULL,
    purge_after TEXT NOT NULL,
    purged_on TEXT
) WITHOUT ROWID
"""

# Published figures (core/publish.py): /skor, /peringkat and /rekap read these snapshots,
# never the live tallies. Each component (a group's n and interval, a group-dimension
# tally, an item tally) keeps the value last published and ``pending``, the number of
# informative responses added to or removed from it since; it is republished only when
# ``pending`` reaches k. An existing database publishes its current tallies once, as
# they are (the group intervals follow at the next republication).
V7_INDEX = """
CREATE TABLE published (
    period TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    group_code TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('group', 'dimension', 'item')),
    name TEXT NOT NULL,
    pending INTEGER NOT NULL DEFAULT 0,
    n INTEGER,
    total REAL,
    se REAL,
    df REAL,
    PRIMARY KEY (period, unit_code, group_code, kind, name)
) WITHOUT ROWID;
INSERT INTO published (period, unit_code, group_code, kind, name, n)
    SELECT period, unit_code, group_code, 'group', '', n_indexed FROM agg_group;
INSERT INTO published (period, unit_code, group_code, kind, name, n, total)
    SELECT period, unit_code, group_code, 'dimension', dimension, n, total FROM agg_dimension;
INSERT INTO published (period, unit_code, group_code, kind, name, n, total)
    SELECT period, unit_code, group_code, 'item', question_id, n, total FROM agg_item
"""

# The officials' desk: a correction (faktor koreksi) has a category and an author and is
# withdrawn, never deleted; invites can be revoked before they are used.
V8_DESK = """
ALTER TABLE corrections ADD COLUMN category TEXT NOT NULL DEFAULT 'pengaduan'
    CHECK (category IN ('pengaduan', 'penegakan_hukum', 'pengarahan'));
ALTER TABLE corrections ADD COLUMN author TEXT NOT NULL DEFAULT '';
ALTER TABLE corrections ADD COLUMN withdrawn_at TEXT;
ALTER TABLE corrections ADD COLUMN withdrawn_by TEXT;
CREATE TRIGGER corrections_no_delete BEFORE DELETE ON corrections
BEGIN
    SELECT RAISE(ABORT, 'corrections are withdrawn, not deleted'); END;
ALTER TABLE invites ADD COLUMN revoked_at TEXT
"""

# WhatsApp allows free-form messages only within 24 hours of the person's last message.
# The last inbound time is kept per chat (channel, address), only for consented
# contacts, never on answer-side rows; erasing the contact erases it.
V9_WHATSAPP = """
CREATE TABLE chat_windows (
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    last_inbound TEXT NOT NULL,
    PRIMARY KEY (channel, address)
) WITHOUT ROWID;
CREATE TRIGGER contacts_erased_forget_windows AFTER DELETE ON contacts
BEGIN
    DELETE FROM chat_windows WHERE channel = OLD.channel AND address = OLD.address; END
"""

# Fieldwork: population frames per unit and group, invitation tokens, and the arrival
# route of each response. Invitations are stored only as keyed hashes with used/unused,
# WITHOUT ROWID (b-tree order is hash order, not issue or use order) and with no time;
# the route is an aggregate column ('self', 'link', 'poster', 'sample'), not an identifier.
# Screened-out attempts are counters per unit, group and ineligible answer, nothing more.
V10_FIELDWORK = """
CREATE TABLE populations (
    period TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    group_code TEXT NOT NULL,
    size INTEGER NOT NULL CHECK (size >= 0),
    PRIMARY KEY (period, unit_code, group_code)
) WITHOUT ROWID;
CREATE TABLE invitations (
    token_hash TEXT PRIMARY KEY,
    period TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    group_code TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('link', 'poster', 'sample')),
    used INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1))
) WITHOUT ROWID;
ALTER TABLE responses ADD COLUMN route TEXT NOT NULL DEFAULT 'self'
    CHECK (route IN ('self', 'link', 'poster', 'sample'));
CREATE TABLE screenouts (
    period TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    group_code TEXT NOT NULL,
    question_id TEXT NOT NULL,
    option_code TEXT NOT NULL,
    n INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (period, unit_code, group_code, question_id, option_code)
) WITHOUT ROWID
"""

# Roles carry the channel: a WhatsApp number that happens to equal a Telegram user id
# must not share that account's role. Admins and officials are keyed by (channel,
# user id); an invite records on which channel it was made and redeemed. Every
# existing row came from Telegram, and a row written without a channel is Telegram's.
V11_WADESK = """
CREATE TABLE admins_by_channel (
    channel TEXT NOT NULL DEFAULT 'telegram',
    user_id INTEGER NOT NULL,
    added_by INTEGER,
    added_at TEXT NOT NULL,
    PRIMARY KEY (channel, user_id)
) WITHOUT ROWID;
INSERT INTO admins_by_channel (channel, user_id, added_by, added_at)
    SELECT 'telegram', user_id, added_by, added_at FROM admins;
DROP TABLE admins;
ALTER TABLE admins_by_channel RENAME TO admins;
CREATE TABLE officials_by_channel (
    channel TEXT NOT NULL DEFAULT 'telegram',
    user_id INTEGER NOT NULL,
    unit_code TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (channel, user_id)
) WITHOUT ROWID;
INSERT INTO officials_by_channel (channel, user_id, unit_code, added_at)
    SELECT 'telegram', user_id, unit_code, added_at FROM officials;
DROP TABLE officials;
ALTER TABLE officials_by_channel RENAME TO officials;
ALTER TABLE invites ADD COLUMN created_channel TEXT NOT NULL DEFAULT 'telegram';
ALTER TABLE invites ADD COLUMN used_channel TEXT;
UPDATE invites SET used_channel = 'telegram' WHERE used_by IS NOT NULL
"""

MIGRATIONS: list[str] = [
    V1_CONVERSATION,
    V2_SCORING_AND_ACCESS,
    V3_BROADCASTS,
    V4_FLAGGED_INDEX,
    V5_UNLINKABLE,
    V6_PERIODS,
    V7_INDEX,
    V8_DESK,
    V9_WHATSAPP,
    V10_FIELDWORK,
    V11_WADESK,
]
# The first schema version whose tables can no longer be linked; opening a database
# from before it vacuums after migrating, so no freed page keeps the old rows.
UNLINKABLE_SINCE = 5
