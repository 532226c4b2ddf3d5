-- Queries over call history (billing part B).

-- Written by the statement that prices a leg, so reports group by them without joining the
-- deck (which may have changed since). No index: these columns change once, at the end, and
-- an index on them would cost every leg write its HOT update.
-- `ending` is how the leg ended (completed when answered, else busy, failed, timeout,
-- unanswered, rejected, cancelled): its status reads `completed` after most endings.
ALTER TABLE calls ADD COLUMN country TEXT, ADD COLUMN billed_s INTEGER, ADD COLUMN ending TEXT;

-- Lets the rollup read one hour of every account's calls. BRIN: a few pages for millions of
-- rows, and calls are inserted in created_at order, so it costs the insert path next to nothing.
CREATE INDEX calls_created_brin ON calls USING brin (created_at) WITH (pages_per_range = 32, autosummarize = on);

-- Hourly totals of finished legs, by every dimension the reports group on. An hour is added
-- once, when every leg created in it has ended (see `history::rollup`), and never changes after.
CREATE TABLE call_rollup (
    account_id      BIGINT NOT NULL,
    hour            TIMESTAMPTZ NOT NULL,
    application_id  UUID NOT NULL,
    status          TEXT NOT NULL,     -- the leg's ending (its status when it has none)
    country         TEXT NOT NULL,     -- '' when the leg was not rated
    network         TEXT NOT NULL,
    calls           BIGINT NOT NULL,
    answered        BIGINT NOT NULL,
    duration_s      BIGINT NOT NULL,
    billed_s        BIGINT NOT NULL,
    price           NUMERIC(24, 8) NOT NULL,
    PRIMARY KEY (account_id, hour, application_id, status, country, network)
);

-- The same hours counted by status only, plus status '' for all of them: what `GET /v1/calls`
-- needs for its `count` and to find the hour where a `record_index` falls (one row per hour
-- whatever the filter, read in hour order from the key).
CREATE TABLE call_counts (
    account_id  BIGINT NOT NULL,
    hour        TIMESTAMPTZ NOT NULL,
    status      TEXT NOT NULL,
    calls       BIGINT NOT NULL,
    PRIMARY KEY (account_id, status, hour)
);

-- Every hour before `sealed_until` is in the two tables above; later hours are read from calls.
-- '-infinity' until the first seal, which starts at the hour of the oldest call.
CREATE TABLE call_rollup_state (
    id            BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    sealed_until  TIMESTAMPTZ NOT NULL
);
INSERT INTO call_rollup_state (sealed_until) VALUES ('-infinity');
