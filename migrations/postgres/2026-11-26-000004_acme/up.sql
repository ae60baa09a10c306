-- ACME: external account binding keys (each bound to a policy subtree), accounts and nonces
-- (nonces live in the database so that every instance accepts every other's).
CREATE TABLE acme_eab_keys (
    id BIGSERIAL PRIMARY KEY,
    kid TEXT NOT NULL UNIQUE,
    hmac_enc BYTEA NOT NULL,
    policy_dn TEXT NOT NULL,
    prevalidated BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE acme_accounts (
    id BIGSERIAL PRIMARY KEY,
    thumbprint TEXT NOT NULL UNIQUE,
    jwk TEXT NOT NULL,
    status TEXT NOT NULL,
    contact TEXT NOT NULL,
    eab_kid TEXT,
    policy_dn TEXT NOT NULL,
    prevalidated BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE acme_nonces (
    nonce TEXT PRIMARY KEY NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX acme_nonces_expiry ON acme_nonces(expires_at);
