-- A disabled user can neither sign in nor use a token (renewgate user disable|enable).
ALTER TABLE users ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT 0;
