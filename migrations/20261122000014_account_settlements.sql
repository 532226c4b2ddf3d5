-- What finished legs owe their accounts, waiting to be applied to the account row.
-- The statement that writes a leg's price appends its ledger entry (the money, durable at once)
-- and one row here; the settler moves these rows into accounts.balance/reserved in batches.
-- So no leg's write waits on its account's row lock (every call of a busy account used to queue
-- there). Reading an account's funds adds what is pending here, so balances are exact at once.
CREATE TABLE account_settlements (
    id          BIGSERIAL PRIMARY KEY,
    account_id  BIGINT NOT NULL REFERENCES accounts(id),
    amount      NUMERIC(20, 8) NOT NULL,   -- the ledger entry's amount (a debit is negative)
    released    NUMERIC(20, 8) NOT NULL    -- the credit the leg held, no longer held
);
CREATE INDEX account_settlements_account_idx ON account_settlements (account_id);
