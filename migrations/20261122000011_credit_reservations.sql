-- Credit held by answered calls that are still running, so that calls of one account running at
-- the same time cannot spend the same credit. A leg holds credit_reserved (the price of the
-- seconds granted to it so far); accounts.reserved is the sum over the account's live legs.
-- Both drop back by the statement that writes the leg's price and debit.
ALTER TABLE accounts ADD COLUMN reserved NUMERIC(20, 8) NOT NULL DEFAULT 0 CHECK (reserved >= 0);
ALTER TABLE calls ADD COLUMN credit_reserved NUMERIC(20, 8) NOT NULL DEFAULT 0;
