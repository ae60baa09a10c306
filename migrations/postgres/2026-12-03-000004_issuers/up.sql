-- Upstream issuers: CAs reached over ACME (a folder with `ca=<name>` issues there).
-- `config` is JSON (contact, solver, http_listen, public, ca_bundle_pem, eab_kid); secrets are
-- sealed under the master key (the EAB MAC key, the ACME account key).
CREATE TABLE issuers (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    directory_url TEXT NOT NULL,
    config TEXT NOT NULL,
    eab_hmac_enc BYTEA,
    account_key_enc BYTEA,
    account_url TEXT,
    last_error TEXT,
    removed BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
-- A job's progress at its issuer (an upstream order URL) and the key it generated for it, so a
-- job resumed after a crash continues the same order with the same key.
ALTER TABLE jobs ADD COLUMN issuer_state TEXT;
ALTER TABLE jobs ADD COLUMN key_enc BYTEA;
-- http-01 answers for upstream orders, served by any instance's --http-listen listener.
CREATE TABLE http01_answers (
    token TEXT PRIMARY KEY NOT NULL,
    key_authorization TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
