-- Which instance mixes a named conversation's audio, and where its relay listens: members on
-- other instances send their audio there and get their mix back (engine/relay.rs). The token
-- is a secret the owner chose: members present it when they join (the relay is a UDP port).
CREATE TABLE conversation_rooms (
    application_id UUID NOT NULL,
    name           TEXT NOT NULL,
    instance_id    UUID NOT NULL,
    relay_address  TEXT NOT NULL,
    relay_token    UUID NOT NULL,
    PRIMARY KEY (application_id, name)
);
