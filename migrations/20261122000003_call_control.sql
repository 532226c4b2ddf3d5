-- Live call control: commands for a running leg, applied in order by whichever instance owns it.
CREATE TABLE call_commands (
    id          BIGSERIAL PRIMARY KEY,
    call_uuid   UUID NOT NULL REFERENCES calls(uuid) ON DELETE CASCADE,
    action      TEXT NOT NULL,
    body        JSONB NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',   -- pending | applied | rejected
    reason      TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_at  TIMESTAMPTZ
);
CREATE INDEX call_commands_pending_idx ON call_commands (call_uuid, id) WHERE state = 'pending';
