-- SIP trunks: where real calls leave. A trunk is the platform's (account_id NULL, managed by the
-- operator: the CLI and accounts flagged rates_admin) or one account's own (bring your own
-- carrier: it takes precedence for that account's calls).
-- prefixes: the numbers it serves, digits only, longest match wins; '{}' serves every number.
-- password_encrypted: the digest password sealed with sip.credentials_key (never plaintext).
CREATE TABLE trunks (
    id                  UUID PRIMARY KEY,
    account_id          BIGINT REFERENCES accounts(id) ON DELETE CASCADE,
    name                TEXT NOT NULL CHECK (name <> '' AND length(name) <= 64),
    host                TEXT NOT NULL CHECK (host <> '' AND length(host) <= 253),
    port                INT NOT NULL DEFAULT 5060 CHECK (port BETWEEN 1 AND 65535),
    transport           TEXT NOT NULL DEFAULT 'udp' CHECK (transport IN ('udp', 'tcp')),
    username            TEXT,
    password_encrypted  BYTEA,
    from_domain         TEXT,
    prefixes            TEXT[] NOT NULL DEFAULT '{}'
                        CHECK (array_position(prefixes, NULL) IS NULL
                               AND array_to_string(prefixes, '') ~ '^[0-9]*$'
                               AND array_position(prefixes, '') IS NULL),
    priority            INT NOT NULL DEFAULT 10 CHECK (priority >= 0),
    cps                 INT CHECK (cps >= 0),
    max_channels        INT CHECK (max_channels >= 0),
    enabled             BOOLEAN NOT NULL DEFAULT true,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (password_encrypted IS NULL OR username IS NOT NULL)
);

-- Names are unique per owner; these also serve routing, which reads the account's own trunks
-- and the platform's (a few rows each) in one query per call, and forced-trunk lookups by name.
CREATE UNIQUE INDEX trunks_account_name_idx ON trunks (account_id, name) WHERE account_id IS NOT NULL;
CREATE UNIQUE INDEX trunks_platform_name_idx ON trunks (name) WHERE account_id IS NULL;
