-- `GET /v1/calls?status=busy` (failed, timeout, unanswered, cancelled) finds the legs that ended
-- that way, whose stored status reads `completed`: the API shows and filters a finished leg by
-- COALESCE(ending, status). The hourly counts it pages with are keyed the same way from now on
-- (history::rollup); hours sealed before are recounted here from the rollup, whose `status` is
-- already that. Hours archived out of call_counts stay out.
DELETE FROM call_counts c
WHERE c.status <> ''
  AND EXISTS (SELECT 1 FROM call_counts t WHERE t.account_id = c.account_id AND t.status = '' AND t.hour = c.hour);
INSERT INTO call_counts (account_id, hour, status, calls)
SELECT r.account_id, r.hour, r.status, sum(r.calls)::bigint
FROM call_rollup r
WHERE EXISTS (SELECT 1 FROM call_counts t WHERE t.account_id = r.account_id AND t.status = '' AND t.hour = r.hour)
GROUP BY 1, 2, 3;
