DROP TABLE acme_dry_run_certs;
DROP INDEX acme_objects_match;
ALTER TABLE acme_objects DROP COLUMN match_name;
ALTER TABLE acme_objects DROP COLUMN coverage_end;
DROP INDEX acme_orders_replaces;
ALTER TABLE acme_orders DROP COLUMN dry_run;
ALTER TABLE acme_orders DROP COLUMN replaces;
