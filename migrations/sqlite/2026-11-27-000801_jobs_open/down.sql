DROP INDEX jobs_open;
