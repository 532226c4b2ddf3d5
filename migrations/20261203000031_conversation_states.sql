-- Where each named conversation stands across the cluster, so startOnEnter, endOnExit and
-- music on hold act on every member whatever instance its leg runs on (engine/conversation_state.rs).
-- `session` counts the conversation's lives: it begins anew when a member joins one that ended
-- or that has no member left on a live instance; a member's instance watches its session and
-- takes a different number as "ended".
CREATE TABLE conversation_states (
    application_id UUID NOT NULL,
    name           TEXT NOT NULL,
    session        BIGINT NOT NULL DEFAULT 1,
    started        BOOLEAN NOT NULL DEFAULT false,
    ended          BOOLEAN NOT NULL DEFAULT false,
    PRIMARY KEY (application_id, name)
);

-- Who is in a conversation now, and on which instance (members of a dead instance don't count).
CREATE TABLE conversation_members (
    leg_uuid       UUID PRIMARY KEY,
    application_id UUID NOT NULL,
    name           TEXT NOT NULL,
    instance_id    UUID NOT NULL
);
CREATE INDEX conversation_members_room_idx ON conversation_members (application_id, name);
