-- The TSIG secret of an upstream issuer's dns-01 solver, sealed under the master key.
ALTER TABLE issuers ADD COLUMN tsig_secret_enc BYTEA;
