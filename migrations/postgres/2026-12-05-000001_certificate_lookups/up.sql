-- The newest version with a thumbprint (`WHERE thumbprint = $1 ORDER BY id DESC LIMIT 1`, every
-- Keyfactor lookup by thumbprint) read from one index: with the thumbprint alone, PostgreSQL may
-- walk the primary key backwards and filter, reading every certificate issued since (measured
-- at 12.6 ms for 11,000 certificates, and it grows with the inventory).
DROP INDEX certificates_thumbprint;
CREATE INDEX certificates_thumbprint ON certificates(thumbprint, id);
-- The stores holding an object's certificates (every renewal asks, to push the new one there):
-- from the object's certificates to their store jobs, instead of through every finished job.
CREATE INDEX store_jobs_certificate ON store_jobs(certificate_id);
