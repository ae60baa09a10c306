-- A certificate download checks that the signing account ordered the certificate: by the
-- certificate first, so it reads that certificate's orders and not every order of the account.
CREATE INDEX acme_orders_certificate ON acme_orders(certificate_id, account_id);
-- The keys of certificates revoked for key compromise (reason 1), which no request may use
-- again. Every issuance checks its key here by primary key; joined through `certificates`, the
-- check read every certificate ever issued for the key (a client that keeps its key, as
-- `certbot --reuse-key` does, makes that thousands). A revocation is never undone, so rows are
-- only added.
CREATE TABLE compromised_keys (
    public_key_sha256 TEXT PRIMARY KEY NOT NULL,
    certificate_id BIGINT NOT NULL,
    revoked_at TIMESTAMP NOT NULL
);
INSERT INTO compromised_keys (public_key_sha256, certificate_id, revoked_at)
    SELECT c.public_key_sha256, MIN(c.id), MIN(r.revoked_at)
    FROM revocations r INNER JOIN certificates c ON c.id = r.certificate_id
    WHERE r.reason = 1
    GROUP BY c.public_key_sha256;
