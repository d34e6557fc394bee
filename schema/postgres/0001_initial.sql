-- jobengine schema, version 1: jobs, their files, the outbox of calls to the
-- website and the engine's identity. Applied by `jobengine migrate` (or any
-- start) inside one transaction; recorded in schema_migrations.

COMMENT ON TABLE schema_migrations IS 'Schema versions applied, one row per schema/postgres/NNNN_name.sql.';

CREATE TABLE jobs (
    id                text        PRIMARY KEY,
    job_type          text        NOT NULL,
    state             text        NOT NULL
        CHECK (state IN ('Created', 'Started', 'InProgress', 'Success', 'Failed')),
    details           text        NOT NULL,
    secrets           text,
    callback          text        NOT NULL DEFAULT '',
    progress          integer     NOT NULL DEFAULT 0,
    result_code       integer     NOT NULL DEFAULT 0,
    error_message     text        NOT NULL DEFAULT '',
    result            text        NOT NULL DEFAULT '',
    attempts          integer     NOT NULL DEFAULT 0,
    checkpoint        text        NOT NULL DEFAULT '',
    start_seq         bigint,
    created_at        timestamptz NOT NULL,
    last_state_change timestamptz NOT NULL,
    progress_sent     integer,
    progress_sent_at  timestamptz
);

COMMENT ON TABLE jobs IS 'One row per job a client created; deleted by DeleteJob.';
COMMENT ON COLUMN jobs.id IS 'The JobID: 1 to 64 of [A-Za-z0-9-_.{}].';
COMMENT ON COLUMN jobs.job_type IS 'EncoderJob or YoutubeUploaderJob.';
COMMENT ON COLUMN jobs.state IS 'Created -> Started (queued) -> InProgress (a worker runs it) -> Success or Failed.';
COMMENT ON COLUMN jobs.details IS 'The job details as canonical JSON, secrets removed.';
COMMENT ON COLUMN jobs.secrets IS 'Secret fields as JSON (the uploader''s RefreshToken); NULL once the job ended.';
COMMENT ON COLUMN jobs.callback IS 'URL that JobProgress/JobCompleted go to; empty for none.';
COMMENT ON COLUMN jobs.progress IS 'Last progress reported: 0..100, or -1 when it cannot be known.';
COMMENT ON COLUMN jobs.result_code IS 'Job outcome: 0 ok, 1 cancelled, 2 input missing, 3 tool failed, 4 timed out, 5 remote rejected, 6 remote unavailable, 7 interrupted, 8 internal.';
COMMENT ON COLUMN jobs.error_message IS 'Why the job failed; empty otherwise.';
COMMENT ON COLUMN jobs.result IS 'Type-specific result (the uploader''s YouTube video ID).';
COMMENT ON COLUMN jobs.attempts IS 'Runs of this job that the engine died under; at max_attempts the job fails with code 7.';
COMMENT ON COLUMN jobs.checkpoint IS 'The kind''s resume point (the uploader''s session URI); survives restarts.';
COMMENT ON COLUMN jobs.start_seq IS 'Queue order, from job_start_seq, given by StartJob; NULL while Created.';
COMMENT ON COLUMN jobs.created_at IS 'When CreateJob wrote the job.';
COMMENT ON COLUMN jobs.last_state_change IS 'When the state last changed (not progress).';
COMMENT ON COLUMN jobs.progress_sent IS 'Progress of the last JobProgress call queued for the job; NULL before the first.';
COMMENT ON COLUMN jobs.progress_sent_at IS 'When that call was queued; the next waits progress_interval after it.';

CREATE SEQUENCE job_start_seq;
COMMENT ON SEQUENCE job_start_seq IS 'Hands StartJob the next jobs.start_seq.';

-- The queue: Started jobs in start order.
CREATE INDEX jobs_started_queue ON jobs (start_seq) WHERE state = 'Started';
-- Start-up recovery finds the jobs a dead engine left running.
CREATE INDEX jobs_in_progress ON jobs (id) WHERE state = 'InProgress';

CREATE TABLE job_files (
    job_id   text    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    role     text    NOT NULL CHECK (role IN ('input', 'output')),
    position integer NOT NULL,
    file_id  text    NOT NULL,
    PRIMARY KEY (job_id, role, position)
);

COMMENT ON TABLE job_files IS 'The files a job reads (input) and produced (output), in the order the job lists them.';
COMMENT ON COLUMN job_files.position IS 'Place of the file in the job''s list of that role, from 0.';
COMMENT ON COLUMN job_files.file_id IS 'A files.id; an input may outlive its row once the job ended.';

-- Is this file still needed by a job? (DELETE /files/{id})
CREATE INDEX job_files_by_file ON job_files (file_id);

CREATE TABLE files (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    size       bigint      NOT NULL,
    sha256     text        NOT NULL,
    owner_job  text,
    created_at timestamptz NOT NULL
);

COMMENT ON TABLE files IS 'Files the engine holds on disk (uploads and job outputs).';
COMMENT ON COLUMN files.name IS 'The client''s name for the file, for display only; never a path.';
COMMENT ON COLUMN files.size IS 'Size in bytes.';
COMMENT ON COLUMN files.sha256 IS 'SHA-256 of the content, lowercase hex.';
COMMENT ON COLUMN files.owner_job IS 'The job that produced it; the file goes when that job is deleted. NULL for uploads.';

CREATE INDEX files_by_owner ON files (owner_job) WHERE owner_job IS NOT NULL;

CREATE TABLE outbox (
    id              bigserial   PRIMARY KEY,
    job_id          text,
    url             text        NOT NULL,
    method          text        NOT NULL,
    params          text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'superseded', 'undeliverable')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz
);

COMMENT ON TABLE outbox IS 'XML-RPC calls to the website, written with the change that causes them; delivered in id order per job.';
COMMENT ON COLUMN outbox.job_id IS 'The job the call is about; NULL for engine notices (EngineStarted, EngineStopping).';
COMMENT ON COLUMN outbox.url IS 'Where the call goes: the job''s callback or the master website URL.';
COMMENT ON COLUMN outbox.method IS 'JobProgress, JobCompleted, EngineStarted, EngineStopping, EngineAlive.';
COMMENT ON COLUMN outbox.params IS 'The call''s parameters as a JSON array of strings and integers.';
COMMENT ON COLUMN outbox.state IS 'pending: to send; delivered; superseded: a newer call made it moot; undeliverable: retried past callback_give_up.';
COMMENT ON COLUMN outbox.attempts IS 'Failed deliveries so far.';
COMMENT ON COLUMN outbox.last_error IS 'Why the last delivery failed.';
COMMENT ON COLUMN outbox.next_attempt_at IS 'When the call is due (again).';
COMMENT ON COLUMN outbox.delivered_at IS 'When the website took it, or when it was given up.';

-- The delivery thread: pending calls by due time.
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
-- A job's calls in order: the per-job head-of-line rule, superseding, DeleteJob.
CREATE INDEX outbox_by_job ON outbox (job_id, id) WHERE job_id IS NOT NULL;

CREATE TABLE engine (
    key   text PRIMARY KEY,
    value text NOT NULL
);

COMMENT ON TABLE engine IS 'Facts about this engine that survive restarts (engine_id).';
