DROP INDEX acme_challenges_status;
DROP INDEX acme_authz_pending;
DROP INDEX acme_accounts_source;
ALTER TABLE acme_accounts DROP COLUMN created_from;
DROP TABLE acme_assignments;
DROP INDEX acme_objects_owner;
ALTER TABLE acme_objects DROP COLUMN owner;
ALTER TABLE acme_eab_keys DROP COLUMN folder_orders;
