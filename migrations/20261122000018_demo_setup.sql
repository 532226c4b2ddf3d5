-- What `outdial demo` created, so it creates the demo account and application once per
-- database whatever --key-file says, and can say where the first run left the private key.
CREATE TABLE demo_setup (
    id              BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    account_id      BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    application_id  UUID NOT NULL REFERENCES applications(id) ON DELETE CASCADE,
    key_file        TEXT NOT NULL,     -- absolute path, on the machine that ran `outdial demo`
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
