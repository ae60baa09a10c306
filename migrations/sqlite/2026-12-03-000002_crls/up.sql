-- The current CRL of each built-in CA (one row per CA that holds a key), kept in the database so
-- every instance serves the same CRL and its number only ever grows: a new CRL is made under the
-- database's writer lock from the stored number plus one. A revocation marks the row stale.
CREATE TABLE crls (
    ca_id BIGINT PRIMARY KEY NOT NULL REFERENCES cas(id),
    crl_number BIGINT NOT NULL,
    der BLOB NOT NULL,
    this_update TIMESTAMP NOT NULL,
    next_update TIMESTAMP NOT NULL,
    stale BOOLEAN NOT NULL DEFAULT 0,
    updated_at TIMESTAMP NOT NULL
);
