-- Which instance mixes a named conversation's audio, and where its relay listens: members on
-- other instances send their audio there and get their mix back (engine/relay.rs).
CREATE TABLE conversation_rooms (
    application_id UUID NOT NULL,
    name           TEXT NOT NULL,
    instance_id    UUID NOT NULL,
    relay_address  TEXT NOT NULL,
    PRIMARY KEY (application_id, name)
);
