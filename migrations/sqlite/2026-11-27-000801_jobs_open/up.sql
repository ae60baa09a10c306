-- The job claim (queued, or running with an expired lease, lowest id first) through an index of
-- the open jobs only: without it PostgreSQL may walk the primary key through every finished job.
CREATE INDEX jobs_open ON jobs(id) WHERE state IN ('queued', 'running');
