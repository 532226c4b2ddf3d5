-- Each index on a hot table is a WAL write per call (WAL writes were what creates waited on).
-- The unique (call_uuid, seq) index already serves the dispatcher's "oldest pending event of
-- this call" check. Status-filtered listing walks the (account_id, created_at) index until the
-- billing work designs indexes for large histories.
DROP INDEX IF EXISTS events_call_pending_idx;
DROP INDEX IF EXISTS calls_account_status_created_idx;
