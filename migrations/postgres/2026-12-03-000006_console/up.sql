-- Console sessions: the cookie's secret is kept only as its SHA-256. `user_stamp` is a digest of
-- the user's password hash, scope, folders and disabled flag when the session began: a session
-- whose user changed since then is over.
CREATE TABLE console_sessions (
    id BIGSERIAL PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL,
    user_stamp TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions(user_id);
-- When each store agent (client machine) last asked for its jobs.
CREATE TABLE agent_contacts (
    client_machine_lower TEXT PRIMARY KEY NOT NULL,
    client_machine TEXT NOT NULL,
    last_contact TIMESTAMP NOT NULL
);
-- Every name a certificate carries (its CN and SANs, lower-case), for the console's search by
-- name; filled when a certificate is stored (and once for older certificates at start).
CREATE TABLE certificate_names (
    certificate_id BIGINT NOT NULL,
    object_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (certificate_id, name)
);
CREATE INDEX certificate_names_name ON certificate_names(name, object_id);
-- The console's searches and charts at a million objects: expiry ranges, folder-limited pages
-- newest first, object names by prefix.
CREATE INDEX certificates_not_after ON certificates(not_after);
CREATE INDEX cert_objects_folder_id ON cert_objects(lower(policy_dn), id);
CREATE INDEX cert_objects_name_lower ON cert_objects(lower(name));
-- The overview's counts without reading the rows: objects by state (a covering index scan), and
-- the expiry chart joined from the not_after index to the objects whose current certificate it is.
CREATE INDEX cert_objects_state ON cert_objects(state, disabled);
CREATE INDEX cert_objects_current_cert ON cert_objects(current_cert_id);
CREATE INDEX audit_log_target ON audit_log(target, id);
CREATE INDEX audit_log_actor ON audit_log(actor, id);
