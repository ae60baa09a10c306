-- ACME orders, authorizations and challenges; and which inventory objects ACME created (only
-- those take part in order auto-detection).
CREATE TABLE acme_orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    account_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    identifiers TEXT NOT NULL,
    action TEXT NOT NULL,
    target_object_id BIGINT,
    expires TIMESTAMP NOT NULL,
    job_id BIGINT,
    object_id BIGINT,
    certificate_id BIGINT,
    error TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX acme_orders_account ON acme_orders(account_id);

CREATE TABLE acme_authz (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    order_id BIGINT NOT NULL,
    identifier TEXT NOT NULL,
    wildcard BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    expires TIMESTAMP NOT NULL
);
CREATE INDEX acme_authz_order ON acme_authz(order_id);

CREATE TABLE acme_challenges (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    authz_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    token TEXT NOT NULL,
    status TEXT NOT NULL,
    validated TIMESTAMP,
    error TEXT
);
CREATE INDEX acme_challenges_authz ON acme_challenges(authz_id);

CREATE TABLE acme_objects (
    object_id BIGINT PRIMARY KEY NOT NULL,
    account_id BIGINT NOT NULL,
    duplicate_of BIGINT,
    created_at TIMESTAMP NOT NULL
);
