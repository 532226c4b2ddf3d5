-- The live-calls console: its sign-in sessions, and the SIP messages it shows as ladders.

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

-- Each call's SIP messages, compact (method or status code, direction, CSeq, peer, time; no
-- headers or bodies), for its SIP ladder in the console. Written in batches by each instance
-- running the SIP carrier (sip.record_messages), off the call's path: one row per call per
-- batch, its messages as a JSON array ([{"d": "out"|"in", "m", "c", "p", "t"}]), so a call costs
-- a row or two rather than one per message. Found by the leg's Call-ID (calls.sip->>'call_id');
-- deleted after sip.record_messages_keep_h hours.
CREATE TABLE sip_messages (
    id        BIGSERIAL PRIMARY KEY,
    call_id   TEXT NOT NULL,
    first_at  TIMESTAMPTZ NOT NULL,
    messages  JSONB NOT NULL
);
CREATE INDEX sip_messages_call_idx ON sip_messages (call_id, first_at);
-- The hourly deletion of old rows reads them by time (a few pages for millions of rows).
CREATE INDEX sip_messages_at_brin ON sip_messages USING brin (first_at);
