DROP TABLE acme_nonces;
DROP TABLE acme_accounts;
DROP TABLE acme_eab_keys;
