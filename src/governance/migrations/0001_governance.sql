-- Keys, teams and customers; spend by hour; the admin audit log; a revision counter that
-- tells other instances to reload. One text for SQLite and PostgreSQL (types both accept).
CREATE TABLE entities (
    id TEXT PRIMARY KEY,
    level TEXT NOT NULL,
    name TEXT NOT NULL,
    key_hash TEXT UNIQUE,
    key_hint TEXT,
    team_id TEXT,
    customer_id TEXT,
    policy TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE spend (
    hour BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    units BIGINT NOT NULL,
    unpriced BIGINT NOT NULL,
    PRIMARY KEY (hour, key_id, team_id, customer_id, model, provider)
);
CREATE INDEX spend_key ON spend (key_id, hour);
CREATE INDEX spend_team ON spend (team_id, hour);
CREATE INDEX spend_customer ON spend (customer_id, hour);

CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    -- Unix microseconds.
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    object_id TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);

CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (name, value) VALUES ('revision', 0);
