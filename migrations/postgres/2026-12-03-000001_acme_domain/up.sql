-- ACME as a domain of its own (see the SQLite migration for the reasons).
ALTER TABLE acme_eab_keys ADD COLUMN folder_orders BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE acme_objects ADD COLUMN owner TEXT;
UPDATE acme_objects SET owner = (
    SELECT CASE WHEN a.eab_kid IS NOT NULL THEN 'kid:' || a.eab_kid ELSE 'acct:' || a.id END
    FROM acme_accounts a WHERE a.id = acme_objects.account_id);
CREATE INDEX acme_objects_owner ON acme_objects(owner);
CREATE TABLE acme_assignments (
    eab_kid TEXT NOT NULL,
    object_id BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (eab_kid, object_id)
);
ALTER TABLE acme_accounts ADD COLUMN created_from TEXT;
CREATE INDEX acme_accounts_source ON acme_accounts(created_from, created_at);
DELETE FROM acme_nonces;
UPDATE policy_folders SET settings = (settings::jsonb || '{"key_reuse": false}'::jsonb)::text
    WHERE dn_lower = '\ved\policy' AND NOT (settings::jsonb ? 'key_reuse');
CREATE INDEX acme_authz_pending ON acme_authz(status, order_id);
CREATE INDEX acme_challenges_status ON acme_challenges(status);
