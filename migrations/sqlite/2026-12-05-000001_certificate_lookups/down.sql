DROP INDEX store_jobs_certificate;
DROP INDEX certificates_thumbprint;
CREATE INDEX certificates_thumbprint ON certificates(thumbprint);
