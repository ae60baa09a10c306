-- Audit trail: who did what to which certificate, and how it ended (renewals, revocations, key
-- downloads, policy changes), written by the HTTP dialects, the CLI and the renewal scheduler.
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    guid TEXT NOT NULL UNIQUE,
    at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    certificate_id BIGINT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    source TEXT NOT NULL,
    request_id TEXT
);
CREATE INDEX audit_log_action ON audit_log(action, id);
