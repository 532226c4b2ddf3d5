-- Accounts: the API credentials and the limits that apply to everything an account does.
CREATE TABLE accounts (
    id                 BIGSERIAL PRIMARY KEY,
    name               TEXT NOT NULL,
    api_key            TEXT NOT NULL UNIQUE,
    api_secret_hash    TEXT NOT NULL,          -- argon2 PHC string; the secret itself is never stored
    signature_secret   TEXT NOT NULL,          -- HS256 key for signed webhooks
    calls_per_second   INTEGER NOT NULL DEFAULT 3 CHECK (calls_per_second > 0),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE applications (
    id                      UUID PRIMARY KEY,
    account_id              BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name                    TEXT NOT NULL,
    public_key_pem          TEXT NOT NULL,
    answer_url              TEXT,
    answer_method           TEXT NOT NULL DEFAULT 'GET',
    event_url               TEXT,
    event_method            TEXT NOT NULL DEFAULT 'POST',
    fallback_answer_url     TEXT,
    fallback_answer_method  TEXT NOT NULL DEFAULT 'GET',
    signed_callbacks        BOOLEAN NOT NULL DEFAULT false,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Deleting keeps the row: its calls stay queryable for billing.
    deleted_at              TIMESTAMPTZ
);
CREATE INDEX applications_account_idx ON applications (account_id, created_at, id) WHERE deleted_at IS NULL;

-- One row per call leg.
CREATE TABLE calls (
    uuid                 UUID PRIMARY KEY,
    conversation_uuid    TEXT NOT NULL,
    account_id           BIGINT NOT NULL REFERENCES accounts(id),
    application_id       UUID NOT NULL REFERENCES applications(id),
    direction            TEXT NOT NULL DEFAULT 'outbound',
    status               TEXT NOT NULL,
    detail               TEXT,
    to_endpoint          JSONB NOT NULL,
    from_endpoint        JSONB,
    random_from_number   BOOLEAN NOT NULL DEFAULT false,
    ncco                 JSONB,
    answer_url           TEXT,
    answer_method        TEXT NOT NULL DEFAULT 'GET',
    event_url            TEXT,
    event_method         TEXT NOT NULL DEFAULT 'POST',
    fallback_url         TEXT,
    machine_detection    TEXT,
    advanced_machine_detection JSONB,
    length_timer_s       INTEGER NOT NULL DEFAULT 7200,
    ringing_timer_s      INTEGER NOT NULL DEFAULT 60,
    start_time           TIMESTAMPTZ,
    end_time             TIMESTAMPTZ,
    duration_s           INTEGER,
    rate                 NUMERIC(20, 8),
    price                NUMERIC(20, 8),
    network              TEXT,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The list endpoint always filters by account and orders by creation time.
CREATE INDEX calls_account_created_idx ON calls (account_id, created_at, uuid);
CREATE INDEX calls_account_status_created_idx ON calls (account_id, status, created_at, uuid);
CREATE INDEX calls_conversation_idx ON calls (conversation_uuid);

-- The call engine's work queue: one row per leg to drive.
CREATE TABLE call_jobs (
    call_uuid         UUID PRIMARY KEY REFERENCES calls(uuid) ON DELETE CASCADE,
    state             TEXT NOT NULL DEFAULT 'queued',   -- queued | running | done
    run_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts          INTEGER NOT NULL DEFAULT 0,
    locked_by         UUID,
    lease_expires_at  TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX call_jobs_runnable_idx ON call_jobs (run_at) WHERE state = 'queued';

-- The outbox: every event of a call, in order.
CREATE TABLE events (
    id           BIGSERIAL PRIMARY KEY,
    call_uuid    UUID NOT NULL REFERENCES calls(uuid) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    kind         TEXT NOT NULL,            -- the status, or input/record/transfer/notify/error
    payload      JSONB NOT NULL,
    url          TEXT,
    method       TEXT NOT NULL DEFAULT 'POST',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (call_uuid, seq)
);

-- Retried POST /v1/calls: the first response, replayed for 24 h.
CREATE TABLE idempotency_keys (
    account_id      BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    key             TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    response_status SMALLINT NOT NULL,
    response_body   JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
