-- The current CRL of each built-in CA (see the SQLite migration for the reasons).
CREATE TABLE crls (
    ca_id BIGINT PRIMARY KEY REFERENCES cas(id),
    crl_number BIGINT NOT NULL,
    der BYTEA NOT NULL,
    this_update TIMESTAMP NOT NULL,
    next_update TIMESTAMP NOT NULL,
    stale BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at TIMESTAMP NOT NULL
);
