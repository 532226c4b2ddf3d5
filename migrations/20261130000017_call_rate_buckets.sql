-- Each account's call-creation rate as one token bucket for the whole cluster (it was one per
-- API instance: N instances admitted N times the rate). Instances take tokens in small leases
-- (a few at once at high rates), so the row is touched about 20 times a second per busy
-- account, not once per call; queued calls reserve their slot here one by one.
CREATE TABLE call_rate_buckets (
    account_id  BIGINT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    tokens      DOUBLE PRECISION NOT NULL,
    refilled_at TIMESTAMPTZ NOT NULL
);

-- Refills the bucket (capacity and rate: p_rate per second) by the database's clock, then
-- either grants up to p_want whole tokens (reject mode: granted 0 and the wait until one is
-- there) or reserves one token even into debt (queue mode: the wait until its turn).
CREATE FUNCTION take_call_tokens(p_account BIGINT, p_rate DOUBLE PRECISION, p_want INT, p_queue BOOLEAN,
                                 OUT granted INT, OUT wait_s DOUBLE PRECISION)
LANGUAGE plpgsql AS $$
DECLARE
    t  DOUBLE PRECISION;
    at TIMESTAMPTZ;
    ts TIMESTAMPTZ := clock_timestamp();
BEGIN
    SELECT tokens, refilled_at INTO t, at FROM call_rate_buckets WHERE account_id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO call_rate_buckets (account_id, tokens, refilled_at) VALUES (p_account, p_rate, ts)
        ON CONFLICT (account_id) DO NOTHING;
        SELECT tokens, refilled_at INTO t, at FROM call_rate_buckets WHERE account_id = p_account FOR UPDATE;
    END IF;
    t := LEAST(p_rate, t + GREATEST(0, EXTRACT(EPOCH FROM ts - at)) * p_rate);
    IF p_queue THEN
        granted := 1;
        t := t - 1;
        wait_s := GREATEST(0, -t) / p_rate;
    ELSE
        granted := LEAST(p_want, GREATEST(0, floor(t)))::INT;
        t := t - granted;
        wait_s := CASE WHEN granted = 0 THEN (1 - t) / p_rate ELSE 0 END;
    END IF;
    UPDATE call_rate_buckets SET tokens = t, refilled_at = ts WHERE account_id = p_account;
END $$;
