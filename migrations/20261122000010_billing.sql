-- Billing: a checked rate deck, per-account balances and credit limits, and the ledger they
-- are derived from.

-- The deck is global (one price list for every account); only the CLI and accounts flagged
-- `rates_admin` may replace it. A prefix is digits only; '' is the catch-all.
ALTER TABLE rates
    ADD CONSTRAINT rates_prefix_digits CHECK (prefix ~ '^[0-9]*$'),
    ADD CONSTRAINT rates_country_code CHECK (country IS NULL OR country ~ '^[A-Z]{2}$'),
    ADD CONSTRAINT rates_connection_fee_positive CHECK (connection_fee >= 0);

-- balance: the sum of the account's ledger, kept on the row by the same statement that appends
-- each entry (so reading it is one row, and it can never drift from the ledger).
-- credit_limit: how far below zero calls may take the balance. New accounts get 100 (EUR) so a
-- fresh install, its demo and its tests can call at once; `--credit-limit 0` makes one prepaid.
ALTER TABLE accounts
    ADD COLUMN balance       NUMERIC(20, 8) NOT NULL DEFAULT 0,
    ADD COLUMN credit_limit  NUMERIC(20, 8) NOT NULL DEFAULT 100 CHECK (credit_limit >= 0),
    ADD COLUMN rates_admin   BOOLEAN NOT NULL DEFAULT false;

-- Append-only: a correction is a new 'adjustment' entry, never an edit.
CREATE TABLE account_ledger (
    id          BIGSERIAL PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts(id),
    amount      NUMERIC(20, 8) NOT NULL,           -- negative: a debit
    kind        TEXT NOT NULL CHECK (kind IN ('call', 'credit', 'adjustment')),
    call_uuid   UUID UNIQUE,                       -- a leg is debited at most once
    note        TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX account_ledger_account_idx ON account_ledger (account_id, id);

CREATE FUNCTION account_ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'account_ledger is append-only: add an adjustment entry instead';
END $$;
CREATE TRIGGER account_ledger_append_only BEFORE UPDATE OR DELETE ON account_ledger
    FOR EACH ROW EXECUTE FUNCTION account_ledger_is_append_only();
