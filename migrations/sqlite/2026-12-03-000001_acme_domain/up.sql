-- ACME as a domain of its own.
-- Objects belong to the EAB key that first issued them (its accounts share them); keys made with
-- --folder-orders may act on any object of their folder; `renewgate acme assign` grants one object.
ALTER TABLE acme_eab_keys ADD COLUMN folder_orders BOOLEAN NOT NULL DEFAULT 0;
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
-- Where an account without EAB came from (at most acme.accounts_per_hour per address).
ALTER TABLE acme_accounts ADD COLUMN created_from TEXT;
CREATE INDEX acme_accounts_source ON acme_accounts(created_from, created_at);
-- Nonces are stateless now: the table keeps the nonces verified requests consumed (until they
-- expire), so a replay fails on every instance. The nonces handed out before are void.
DELETE FROM acme_nonces;
-- An upgraded installation keeps refusing key reuse unless its root folder says otherwise (a new
-- installation allows it: the root folder does not exist yet when this runs).
UPDATE policy_folders SET settings = json_set(settings, '$.key_reuse', json('false'))
    WHERE dn_lower = '\ved\policy' AND json_extract(settings, '$.key_reuse') IS NULL;
CREATE INDEX acme_authz_pending ON acme_authz(status, order_id);
CREATE INDEX acme_challenges_status ON acme_challenges(status);
