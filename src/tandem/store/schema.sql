-- The current state of every object; a deleted object stays as a tombstone (deleted = 1).
CREATE TABLE IF NOT EXISTS objects (
    kind      TEXT NOT NULL,
    partition TEXT NOT NULL,   -- '' for objects outside partitions (partitions, users)
    name      TEXT NOT NULL,
    body      TEXT,            -- JSON, NULL for a tombstone
    hlc       INTEGER NOT NULL,
    origin    TEXT NOT NULL,   -- the device that made the winning commit
    seq       INTEGER NOT NULL,
    commit_id INTEGER NOT NULL,
    deleted   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, partition, name)
) WITHOUT ROWID;

-- The commit log: one row per object change, in the order this device applied them.
CREATE TABLE IF NOT EXISTS commits (
    id        INTEGER PRIMARY KEY,  -- this device's commit id, monotonically increasing
    txn       INTEGER NOT NULL,     -- id of the first commit of the same transaction
    origin    TEXT NOT NULL,
    seq       INTEGER NOT NULL,     -- the origin's own sequence number
    hlc       INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    partition TEXT NOT NULL,
    name      TEXT NOT NULL,
    op        TEXT NOT NULL CHECK (op IN ('put', 'delete')),
    body      TEXT,
    UNIQUE (origin, seq)
);

-- The version vector: per origin device, the highest sequence applied here.
CREATE TABLE IF NOT EXISTS versions (
    origin TEXT PRIMARY KEY,
    seq    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Login tokens of this device (never replicated): SHA-256 of the token.
CREATE TABLE IF NOT EXISTS tokens (
    hash       TEXT PRIMARY KEY,
    username   TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
