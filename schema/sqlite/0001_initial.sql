-- jobengine schema, version 1 (SQLite): the same tables, columns and meaning
-- as schema/postgres/0001_initial.sql. Applied inside one transaction and
-- recorded in schema_migrations.
--
-- Timestamps are TEXT in UTC, RFC 3339 with exactly six fractional digits
-- ('2024-05-01T12:34:56.123456Z'), so they read well and sort and compare
-- as text. JSON values (details, secrets, params) are TEXT.

CREATE TABLE jobs (
    id                TEXT    PRIMARY KEY NOT NULL,
    job_type          TEXT    NOT NULL,
    -- Created -> Started (queued) -> InProgress (a worker runs it) -> Success or Failed.
    state             TEXT    NOT NULL
        CHECK (state IN ('Created', 'Started', 'InProgress', 'Success', 'Failed')),
    -- Canonical JSON of the details, secrets removed.
    details           TEXT    NOT NULL,
    -- Secret fields as JSON (the uploader's RefreshToken); NULL once the job ended.
    secrets           TEXT,
    -- URL that JobProgress/JobCompleted go to; empty for none.
    callback          TEXT    NOT NULL DEFAULT '',
    -- 0..100, or -1 when it cannot be known.
    progress          INTEGER NOT NULL DEFAULT 0,
    -- 0 ok, 1 cancelled, 2 input missing, 3 tool failed, 4 timed out,
    -- 5 remote rejected, 6 remote unavailable, 7 interrupted, 8 internal.
    result_code       INTEGER NOT NULL DEFAULT 0,
    error_message     TEXT    NOT NULL DEFAULT '',
    -- Type-specific result (the uploader's YouTube video ID).
    result            TEXT    NOT NULL DEFAULT '',
    -- Runs of this job that the engine died under.
    attempts          INTEGER NOT NULL DEFAULT 0,
    -- The kind's resume point (the uploader's session URI).
    checkpoint        TEXT    NOT NULL DEFAULT '',
    -- Queue order given by StartJob (one more than the highest); NULL while Created.
    start_seq         INTEGER,
    created_at        TEXT    NOT NULL,
    last_state_change TEXT    NOT NULL,
    -- Progress of the last JobProgress call queued, and when; NULL before the first.
    progress_sent     INTEGER,
    progress_sent_at  TEXT
);

-- The queue (Started jobs in start order) and the next start_seq.
CREATE INDEX jobs_start_seq ON jobs (start_seq);
-- Start-up recovery finds the jobs a dead engine left running.
CREATE INDEX jobs_in_progress ON jobs (id) WHERE state = 'InProgress';

-- The files a job reads (input) and produced (output), in the job's order.
CREATE TABLE job_files (
    job_id   TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    role     TEXT    NOT NULL CHECK (role IN ('input', 'output')),
    -- Place of the file in the job's list of that role, from 0.
    position INTEGER NOT NULL,
    file_id  TEXT    NOT NULL,
    PRIMARY KEY (job_id, role, position)
) WITHOUT ROWID;

CREATE INDEX job_files_by_file ON job_files (file_id);

-- Files the engine holds on disk (uploads and job outputs).
CREATE TABLE files (
    id         TEXT    PRIMARY KEY NOT NULL,
    -- The client's name for it, for display only; never a path.
    name       TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    -- SHA-256 of the content, lowercase hex.
    sha256     TEXT    NOT NULL,
    -- The job that produced it; goes with that job. NULL for uploads.
    owner_job  TEXT,
    created_at TEXT    NOT NULL
);

CREATE INDEX files_by_owner ON files (owner_job) WHERE owner_job IS NOT NULL;

-- XML-RPC calls to the website, written with the change that causes them;
-- delivered in id order per job.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The job the call is about; NULL for engine notices.
    job_id          TEXT,
    url             TEXT    NOT NULL,
    method          TEXT    NOT NULL,
    -- JSON array of strings and integers.
    params          TEXT    NOT NULL,
    -- pending: to send; delivered; superseded: a newer call made it moot;
    -- undeliverable: retried past callback_give_up.
    state           TEXT    NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'superseded', 'undeliverable')),
    -- Failed deliveries so far, and why the last one failed.
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      TEXT    NOT NULL,
    -- When the call is due (again).
    next_attempt_at TEXT    NOT NULL,
    -- When the website took it, or when it was given up.
    delivered_at    TEXT
);

CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_by_job ON outbox (job_id, id) WHERE job_id IS NOT NULL;

-- Facts about this engine that survive restarts (engine_id).
CREATE TABLE engine (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
