-- Live-calls console sign-ins (/console): kept here rather than in memory so a session survives
-- a restart and works on every instance behind a load balancer. The cookie carries a random
-- token; only its SHA-256 is stored, so a copy of this table opens no session. `csrf_token` is
-- what the page must echo in X-CSRF-Token on every state-changing request.
CREATE TABLE console_sessions (
    token_hash  BYTEA PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
-- Expired sessions are swept at each sign-in.
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);
