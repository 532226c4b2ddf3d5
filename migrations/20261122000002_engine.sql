-- Call engine: instances, leases, the webhook outbox's delivery state, rates and recordings.

-- Each running instance heartbeats its own row; a leg's lease is its owner's heartbeat.
CREATE TABLE instances (
    id            UUID PRIMARY KEY,
    hostname      TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    roles         TEXT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    stopped_at    TIMESTAMPTZ
);

ALTER TABLE call_jobs ADD COLUMN claimed_at TIMESTAMPTZ;

-- Over its call rate an account either gets 429 (Vonage's behaviour) or has calls queued and
-- dialled at its rate.
ALTER TABLE accounts ADD COLUMN over_rate TEXT NOT NULL DEFAULT 'reject' CHECK (over_rate IN ('reject', 'queue'));
CREATE INDEX call_jobs_owner_idx ON call_jobs (locked_by) WHERE state = 'running';

ALTER TABLE calls
    ADD COLUMN answered_at      TIMESTAMPTZ,
    ADD COLUMN disconnected_by  TEXT,
    ADD COLUMN parent_uuid      UUID REFERENCES calls(uuid),
    ADD COLUMN last_seq         INTEGER NOT NULL DEFAULT 1;

-- Outbox delivery state, kept on the event row: one row written per event, updated once delivered.
ALTER TABLE events
    ADD COLUMN state            TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | failed | sent_inline
    ADD COLUMN attempts         INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD COLUMN locked_until     TIMESTAMPTZ,
    ADD COLUMN delivered_at     TIMESTAMPTZ;
CREATE INDEX events_pending_idx ON events (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX events_call_pending_idx ON events (call_uuid, seq) WHERE state = 'pending';

CREATE TABLE webhook_attempts (
    id            BIGSERIAL PRIMARY KEY,
    event_id      BIGINT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    attempted_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    status_code   INTEGER,
    latency_ms    INTEGER NOT NULL,
    error         TEXT
);
CREATE INDEX webhook_attempts_event_idx ON webhook_attempts (event_id);

-- Rate deck: the longest matching prefix prices a leg.
CREATE TABLE rates (
    id                      BIGSERIAL PRIMARY KEY,
    prefix                  TEXT NOT NULL,
    country                 TEXT,
    network                 TEXT NOT NULL,
    price_per_minute        NUMERIC(20, 8) NOT NULL CHECK (price_per_minute >= 0),
    initial_increment_s     INTEGER NOT NULL DEFAULT 1 CHECK (initial_increment_s > 0),
    subsequent_increment_s  INTEGER NOT NULL DEFAULT 1 CHECK (subsequent_increment_s > 0),
    connection_fee          NUMERIC(20, 8) NOT NULL DEFAULT 0,
    effective_from          TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    UNIQUE (prefix, effective_from)
);
-- A default deck so a fresh install prices calls; replace it with your own.
INSERT INTO rates (prefix, country, network, price_per_minute, initial_increment_s, subsequent_increment_s) VALUES
    ('',     NULL, 'UNKNOWN',    0.10000000, 60, 60),
    ('1',    'US', 'US-FIXED',   0.01400000, 6, 6),
    ('44',   'GB', 'GB-FIXED',   0.01200000, 1, 1),
    ('447',  'GB', 'GB-MOBILE',  0.02400000, 1, 1);

-- Files written by `record`: kept in the database so any instance can serve them.
CREATE TABLE recordings (
    id              UUID PRIMARY KEY,
    recording_uuid  UUID NOT NULL,
    call_uuid       UUID NOT NULL REFERENCES calls(uuid) ON DELETE CASCADE,
    application_id  UUID NOT NULL,
    content_type    TEXT NOT NULL,
    content         BYTEA NOT NULL,
    size            INTEGER NOT NULL,
    start_time      TIMESTAMPTZ NOT NULL,
    end_time        TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Sandbox: how a simulated callee behaves, per account and number.
CREATE TABLE sandbox_numbers (
    account_id  BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    number      TEXT NOT NULL,
    behaviour   JSONB NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, number)
);
