-- Numbers (E.164 digits, no '+') the operator holds on a trunk. An account owns a number once the
-- operator assigns it (or the account buys one the operator made available: account_id NULL);
-- a number linked to one of the account's applications routes inbound calls to it.
CREATE TABLE numbers (
    msisdn          TEXT PRIMARY KEY CHECK (msisdn ~ '^[1-9][0-9]{6,14}$'),
    country         TEXT NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    trunk_id        UUID NOT NULL REFERENCES trunks(id) ON DELETE RESTRICT,
    account_id      BIGINT REFERENCES accounts(id) ON DELETE SET NULL,
    application_id  UUID REFERENCES applications(id) ON DELETE SET NULL,
    type            TEXT NOT NULL DEFAULT 'landline'
                    CHECK (type IN ('landline', 'mobile-lvn', 'landline-toll-free')),
    features        TEXT[] NOT NULL DEFAULT '{VOICE}',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (application_id IS NULL OR account_id IS NOT NULL)
);

-- An account's numbers in order (GET /account/numbers pages through them).
CREATE INDEX numbers_account_idx ON numbers (account_id, msisdn) WHERE account_id IS NOT NULL;
-- random_from_number picks among the numbers linked to an application.
CREATE INDEX numbers_application_idx ON numbers (application_id) WHERE application_id IS NOT NULL;

-- Inbound legs are priced by the number called, from their own per-minute price (NULL: the
-- prefix's inbound calls are free). Increments and effective dates are the row's.
ALTER TABLE rates ADD COLUMN inbound_price_per_minute NUMERIC(20, 8)
    CHECK (inbound_price_per_minute >= 0);
