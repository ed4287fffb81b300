-- Pipeline runs, loaded source files and the scheduler lease (sqlite dialect; keep in step with
-- ../postgres/0002_pipeline.sql). Times are unix milliseconds here (leases need sub-second).

-- One row per run sequence number of a pipeline. A run that did not succeed stays 'open' or
-- 'failed' and is resumed (same seq, same manifest) by the next attempt, so the Delta
-- application transactions keyed by seq make its table writes idempotent.
CREATE TABLE pipeline_run (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline     TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('open', 'failed', 'succeeded', 'noop')),
    manifest     TEXT NOT NULL,             -- JSON: planned input files (path, sha256, bytes), as_of date
    attempts     BIGINT NOT NULL DEFAULT 1,
    holder       TEXT NOT NULL,             -- who ran the last attempt (host:pid:nonce)
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    version_id   BIGINT REFERENCES dataset_version(id),
    summary      TEXT,                      -- JSON: counts of the run report
    error        TEXT,                      -- last attempt's error (no cell values)
    UNIQUE (pipeline, seq)
);
CREATE INDEX pipeline_run_by_status ON pipeline_run (pipeline, status);

-- Source files loaded by a pipeline, by content: a rerun skips what is here. Written in the
-- same transaction that registers the dataset version, so a crashed run's files are picked up again.
CREATE TABLE pipeline_file (
    pipeline   TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    path       TEXT NOT NULL,
    bytes      BIGINT NOT NULL,
    run_seq    BIGINT NOT NULL,
    loaded_at  BIGINT NOT NULL,
    PRIMARY KEY (pipeline, sha256)
);

-- At most one running instance per pipeline, across processes: a row per pipeline, taken by a
-- conditional UPDATE when free or expired, kept alive by heartbeats.
CREATE TABLE pipeline_lease (
    name        TEXT PRIMARY KEY,
    holder      TEXT,
    expires_at  BIGINT NOT NULL DEFAULT 0
);
