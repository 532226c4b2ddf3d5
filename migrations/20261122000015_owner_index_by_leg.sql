-- A leg's write checks that this instance still owns it: locked_by = me AND call_uuid = ANY(legs).
-- On (locked_by) alone, a plan made while the table was small kept scanning every running leg
-- of the instance (10,000 under load) for each write; with call_uuid in the key both are probes.
DROP INDEX call_jobs_owner_idx;
CREATE INDEX call_jobs_owner_idx ON call_jobs (locked_by, call_uuid) WHERE state = 'running';
