-- A leg's write (status, events, price and debit, command results) as a function of one JSON
-- document, so that many legs' writes run in ONE statement and one round trip:
--   SELECT … FROM jsonb_array_elements($writes) WITH ORDINALITY, LATERAL outdial_leg_write(…)
-- Batching them in a transaction of separate statements left PostgreSQL waiting on the busy
-- client between statements (measured: 86% of the writers' backend time in ClientRead).
--
-- Every part is fenced on ownership: nothing is written unless the instance still owns the leg,
-- and then no row is returned.
CREATE FUNCTION outdial_leg_write(p_instance UUID, w JSONB)
RETURNS TABLE (ids BIGINT[], handed_off BOOLEAN)
LANGUAGE sql VOLATILE AS $fn$
    WITH own AS (SELECT 1 FROM call_jobs
                 WHERE call_uuid = (w->>'leg')::uuid AND locked_by = p_instance AND state = 'running' FOR UPDATE),
         fin AS (SELECT (w->'finish') IS NOT NULL AND jsonb_typeof(w->'finish') = 'object' AS done),
         -- Read before this statement's update: the credit the leg held while it ran.
         held AS (SELECT credit_reserved FROM calls WHERE uuid = (w->>'leg')::uuid),
         u AS (UPDATE calls SET status = COALESCE(w->>'status', status), detail = COALESCE(w->>'detail', detail),
                      last_seq = (w->>'last_seq')::int,
                      answered_at = COALESCE((w->>'answered_at')::timestamptz, answered_at),
                      start_time = COALESCE((w->>'answered_at')::timestamptz, start_time),
                      end_time = COALESCE((w->'finish'->>'end_time')::timestamptz, end_time),
                      duration_s = COALESCE((w->'finish'->>'duration_s')::int, duration_s),
                      rate = COALESCE((w->'finish'->>'rate')::numeric, rate),
                      price = COALESCE((w->'finish'->>'price')::numeric, price),
                      network = COALESCE(w->'finish'->>'network', network),
                      disconnected_by = COALESCE(w->'finish'->>'disconnected_by', disconnected_by),
                      updated_at = now(),
                      credit_reserved = CASE WHEN (SELECT done FROM fin) THEN 0 ELSE credit_reserved END
               WHERE uuid = (w->>'leg')::uuid AND EXISTS (SELECT 1 FROM own) RETURNING account_id),
         -- The price is debited in the statement that writes it: both happen or neither.
         d AS (INSERT INTO account_ledger (account_id, amount, kind, call_uuid)
               SELECT account_id, -((w->'finish'->>'price')::numeric), 'call', (w->>'leg')::uuid FROM u
               WHERE (SELECT done FROM fin) AND (w->'finish'->>'price')::numeric > 0
               ON CONFLICT (call_uuid) DO NOTHING RETURNING account_id, amount),
         -- One update of the account row: the debit, and the release of what the leg held.
         b AS (UPDATE accounts SET balance = balance + COALESCE((SELECT amount FROM d), 0),
                                   reserved = reserved - (SELECT credit_reserved FROM held)
               WHERE id = (SELECT account_id FROM u) AND (SELECT done FROM fin)
                 AND (EXISTS (SELECT 1 FROM d) OR (SELECT credit_reserved FROM held) <> 0)),
         j AS (UPDATE call_jobs SET state = 'done', locked_by = NULL
               WHERE call_uuid = (w->>'leg')::uuid AND (SELECT done FROM fin) AND EXISTS (SELECT 1 FROM own)),
         results AS (SELECT * FROM jsonb_to_recordset(COALESCE(w->'commands', '[]')) AS r(id BIGINT, state TEXT, reason TEXT)),
         m AS (UPDATE call_commands c SET state = r.state, reason = r.reason, applied_at = now()
               FROM results r WHERE c.id = r.id AND EXISTS (SELECT 1 FROM own)),
         k AS (UPDATE call_commands SET state = 'rejected', reason = 'the call ended', applied_at = now()
               WHERE call_uuid = (w->>'leg')::uuid AND state = 'pending' AND (SELECT done FROM fin)
                 AND id NOT IN (SELECT id FROM results) AND EXISTS (SELECT 1 FROM own)),
         -- Handed to this instance's dispatcher (locked for it) when no older event is pending.
         hand AS (SELECT (w->>'hand_off_lock_s') IS NOT NULL
                         AND NOT EXISTS (SELECT 1 FROM events p WHERE p.call_uuid = (w->>'leg')::uuid AND p.state = 'pending') AS off),
         e AS (INSERT INTO events (call_uuid, seq, kind, payload, url, method, state, delivered_at, locked_until)
               SELECT (w->>'leg')::uuid, t.seq, t.kind, t.payload, t.url, t.method, t.state,
                      CASE WHEN t.state = 'sent_inline' THEN now() END,
                      CASE WHEN hand.off AND t.state = 'pending' THEN now() + make_interval(secs => (w->>'hand_off_lock_s')::float8) END
               FROM jsonb_to_recordset(COALESCE(w->'events', '[]')) AS t(seq INT, kind TEXT, payload JSONB, url TEXT, method TEXT, state TEXT), hand
               WHERE EXISTS (SELECT 1 FROM own)
               RETURNING id, seq)
    SELECT COALESCE((SELECT array_agg(id ORDER BY seq) FROM e), '{}'), (SELECT off FROM hand) FROM own
$fn$;
