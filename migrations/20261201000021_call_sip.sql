-- Per-call SIP options and what the SIP carrier learned about the leg (issue 12).
--
-- sip_options: the validated `sip` object of POST /v1/calls (calls::SipOptions as JSON), read by
--              the engine when it dials; NULL when the call gave none.
-- user_data:   the caller's `user_data` string (at most 128 characters, checked by the API),
--              returned by GET /v1/calls/{uuid}, sent in the call's events and in the CDR export.
-- sip:         written by the engine: the leg's SIP facts (call_id, trunk, remote_address, codec,
--              final_code, final_reason, attempts) and its `dialog` (tags, CSeq, route set: what
--              another instance needs to send the BYE after a takeover). The API shows only the
--              listed facts, never `dialog`.
--
-- Nullable without a default: a catalog change only, no rewrite of `calls` and no scan under the
-- lock. No CHECK constraints for the same reason (validating one scans the table); the API
-- validates. Legs of the simulated network keep `sip` NULL. fillfactor (migration 16) is kept:
-- rows that carry options are wider from their insert on, so the room left for HOT updates is
-- the same share of each page.
ALTER TABLE calls
    ADD COLUMN sip_options JSONB,
    ADD COLUMN user_data TEXT,
    ADD COLUMN sip JSONB;
