-- The Niji catalog, SQLite dialect. Keep in step with ../postgres/0001_catalog.sql:
-- same tables, same columns, same constraints; only types and identity columns differ.
-- Times are unix seconds (BIGINT) except audit_log.time, which is hashed as written.
-- Budgets are exact integers: epsilon in micro-epsilon (1e-6), delta in pico-delta (1e-12).

CREATE TABLE dataset (
    name        TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,              -- JSON of the catalog/*.toml definition
    updated_at  BIGINT NOT NULL
);

CREATE TABLE dataset_version (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset         TEXT NOT NULL REFERENCES dataset(name),
    delta_versions  TEXT NOT NULL,          -- JSON object: table -> Delta version
    run_report      TEXT NOT NULL,          -- JSON run report of the pipeline run
    status          TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'retired')),
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    reviewer        TEXT,
    reason          TEXT,
    reviewed_at     BIGINT,
    retired_at      BIGINT
);
CREATE INDEX dataset_version_by_status ON dataset_version (dataset, status);

CREATE TABLE principal (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('researcher', 'steward', 'pipeline', 'admin')),
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE token (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    principal_id  BIGINT NOT NULL REFERENCES principal(id),
    digest        TEXT NOT NULL UNIQUE,     -- SHA-256 of the token, hex; the token itself is never stored
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT,
    revoked_at    BIGINT
);

CREATE TABLE project (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL UNIQUE,
    purpose        TEXT NOT NULL,
    modes          TEXT NOT NULL,           -- comma-separated: dp, sdc, extract
    epsilon_total  BIGINT NOT NULL CHECK (epsilon_total >= 0),
    delta_total    BIGINT NOT NULL CHECK (delta_total >= 0),
    epsilon_spent  BIGINT NOT NULL DEFAULT 0 CHECK (epsilon_spent >= 0),
    delta_spent    BIGINT NOT NULL DEFAULT 0 CHECK (delta_spent >= 0),
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT,
    -- Defence in depth: whatever the code does, the ledger cannot pass the budget.
    CHECK (epsilon_spent <= epsilon_total),
    CHECK (delta_spent <= delta_total)
);

CREATE TABLE project_dataset (
    project_id  BIGINT NOT NULL REFERENCES project(id),
    dataset     TEXT NOT NULL REFERENCES dataset(name),
    PRIMARY KEY (project_id, dataset)
);

CREATE TABLE project_member (
    project_id    BIGINT NOT NULL REFERENCES project(id),
    principal_id  BIGINT NOT NULL REFERENCES principal(id),
    granted_at    BIGINT NOT NULL,
    granted_by    TEXT NOT NULL,
    revoked_at    BIGINT,
    PRIMARY KEY (project_id, principal_id)
);

CREATE TABLE budget_ledger (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id     BIGINT NOT NULL REFERENCES project(id),
    query_id       TEXT,
    principal      TEXT NOT NULL,
    epsilon        BIGINT NOT NULL CHECK (epsilon >= 0),
    delta          BIGINT NOT NULL CHECK (delta >= 0),
    epsilon_after  BIGINT NOT NULL,
    delta_after    BIGINT NOT NULL,
    charged_at     BIGINT NOT NULL
);
CREATE INDEX budget_ledger_by_project ON budget_ledger (project_id);

CREATE TABLE query_log (
    query_id          TEXT PRIMARY KEY,
    project_id        BIGINT NOT NULL REFERENCES project(id),
    principal         TEXT NOT NULL,
    sql_digest        TEXT NOT NULL,
    plan_digest       TEXT NOT NULL,
    dataset_versions  TEXT NOT NULL,        -- JSON object: dataset -> version id
    mode              TEXT NOT NULL,
    epsilon           BIGINT NOT NULL,
    delta             BIGINT NOT NULL,
    result_rows       BIGINT NOT NULL,
    result_columns    BIGINT NOT NULL,
    created_at        BIGINT NOT NULL
);

CREATE TABLE result_cache (
    cache_key   TEXT PRIMARY KEY,
    project_id  BIGINT NOT NULL REFERENCES project(id),
    query_id    TEXT NOT NULL,
    result      BLOB NOT NULL,
    created_at  BIGINT NOT NULL
);

-- The audit chain. audit_head holds the last seq and digest; appends update it first, which
-- serializes them (row lock on PostgreSQL, the write lock on SQLite).
CREATE TABLE audit_head (
    id      BIGINT PRIMARY KEY CHECK (id = 1),
    seq     BIGINT NOT NULL,
    digest  TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, digest) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE audit_log (
    seq          BIGINT PRIMARY KEY,
    time         TEXT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    details      TEXT NOT NULL,             -- canonical JSON
    prev_digest  TEXT NOT NULL,
    digest       TEXT NOT NULL
);
