ALTER TABLE issuers DROP COLUMN tsig_secret_enc;
