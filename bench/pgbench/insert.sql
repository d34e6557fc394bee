-- The ceiling of CreateJob's write: one single-row INSERT of a job-like row.
INSERT INTO bench_insert (id, job_type, state, details, callback, progress, created_at, last_state_change)
VALUES (gen_random_uuid()::text, 'EncoderJob', 'Created',
        '{"AudioFile":"9b1d4e6a-2c3f-4a5b-8d7e-1f0a2b3c4d5e","Format":"mp4"}', '', 0, now(), now());
