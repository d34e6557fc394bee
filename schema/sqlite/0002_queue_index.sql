-- jobengine schema, version 2: the start-order index covers started jobs only.
-- Every Created job used to add a NULL entry to it, one more page written per
-- CreateJob for nothing; StartJob's MAX(start_seq) reads it with
-- "WHERE start_seq IS NOT NULL".

DROP INDEX jobs_start_seq;
CREATE INDEX jobs_start_seq ON jobs (start_seq) WHERE start_seq IS NOT NULL;
