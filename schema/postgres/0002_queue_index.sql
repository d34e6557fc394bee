-- jobengine schema, version 2: the start-order index covers started jobs only.
-- PostgreSQL's (jobs_started_queue, partial on state = 'Started') always did;
-- this version exists so both backends keep the same numbers. Nothing to do.

SELECT 1;
