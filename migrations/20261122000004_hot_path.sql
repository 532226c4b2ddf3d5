-- Every call insert checked its account and application rows with a FOR KEY SHARE lock: one
-- busy account's concurrent creates then queue on the same row (measured: ~10% of the
-- database's CPU per call). Accounts are never deleted and applications only soft-deleted, and
-- the API inserts only ids it has just authenticated, so the references stay true without them.
ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_account_id_fkey;
ALTER TABLE calls DROP CONSTRAINT IF EXISTS calls_application_id_fkey;
