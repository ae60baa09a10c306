DROP TABLE store_job_runs;
DROP TABLE store_jobs;
DROP TABLE stores;
DROP TABLE certificate_info;
DROP TABLE templates;
ALTER TABLE tokens DROP COLUMN client_machine;
