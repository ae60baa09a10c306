DROP TABLE http01_answers;
ALTER TABLE jobs DROP COLUMN key_enc;
ALTER TABLE jobs DROP COLUMN issuer_state;
DROP TABLE issuers;
