-- ACME: `replaces` (RFC 9773) and dry-run orders; multi-year coverage on ACME objects; the
-- certificates of dry-run orders, which never become inventory versions.
ALTER TABLE acme_orders ADD COLUMN replaces TEXT;
ALTER TABLE acme_orders ADD COLUMN dry_run BOOLEAN NOT NULL DEFAULT 0;
CREATE INDEX acme_orders_replaces ON acme_orders(replaces);
ALTER TABLE acme_objects ADD COLUMN coverage_end TIMESTAMP;
-- The order's first identifier as sent (its CN for auto-detection, seed 001): newOrder looks up
-- candidates by it instead of reading every certificate in the folder.
ALTER TABLE acme_objects ADD COLUMN match_name TEXT;
CREATE INDEX acme_objects_match ON acme_objects(match_name);
CREATE TABLE acme_dry_run_certs (
    order_id BIGINT PRIMARY KEY NOT NULL,
    pem TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
