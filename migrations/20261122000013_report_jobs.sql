-- Reports API v2: asynchronous report jobs and the files they produce.

-- One row per POST /v2/reports. `params` is the request as accepted (snake_case keys), echoed
-- back in every answer about the job. Claimed with FOR UPDATE SKIP LOCKED; a PROCESSING job
-- whose lease (`locked_until`) expired belongs to a dead instance and is claimed again.
CREATE TABLE report_jobs (
    id            UUID PRIMARY KEY,
    account_id    BIGINT NOT NULL REFERENCES accounts(id),
    product       TEXT NOT NULL,
    params        JSONB NOT NULL,
    callback_url  TEXT,
    status        TEXT NOT NULL DEFAULT 'PENDING'
                  CHECK (status IN ('PENDING', 'PROCESSING', 'SUCCESS', 'ABORTED', 'FAILED', 'TRUNCATED')),
    items_count   BIGINT,
    file_id       UUID,
    attempts      INTEGER NOT NULL DEFAULT 0,
    locked_by     UUID,
    locked_until  TIMESTAMPTZ,
    error         TEXT,
    receive_time  TIMESTAMPTZ NOT NULL DEFAULT now(),
    start_time    TIMESTAMPTZ,
    end_time      TIMESTAMPTZ
);
-- What workers claim: only unfinished jobs, oldest first.
CREATE INDEX report_jobs_open_idx ON report_jobs (receive_time) WHERE status IN ('PENDING', 'PROCESSING');

-- The zipped CSV of a finished job, served at /v3/media/{id} to the job's account only.
-- Kept in PostgreSQL so every instance can serve it and it is as durable as the job.
CREATE TABLE report_files (
    id            UUID PRIMARY KEY,
    account_id    BIGINT NOT NULL REFERENCES accounts(id),
    job_id        UUID NOT NULL REFERENCES report_jobs(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    bytes         BYTEA NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX report_files_job_idx ON report_files (job_id);
