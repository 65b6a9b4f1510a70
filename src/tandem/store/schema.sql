-- The current version of every object; a deleted object stays as a tombstone (deleted = 1).
CREATE TABLE IF NOT EXISTS objects (
    kind      TEXT NOT NULL,
    partition TEXT NOT NULL,   -- '' for objects outside partitions (partitions, users)
    name      TEXT NOT NULL,
    body      TEXT,            -- JSON, NULL for a tombstone
    hlc       INTEGER NOT NULL,
    origin    TEXT NOT NULL,   -- the device that wrote this version
    seq       INTEGER,         -- the sequence number of its transaction in the scope (NULL while not yet sent)
    vv        TEXT NOT NULL,   -- the writer's version vector of the scope when it wrote (JSON)
    commit_id INTEGER NOT NULL,  -- the log record it came with
    deleted   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, partition, name)
) WITHOUT ROWID;

-- What live objects refer to, kept with them (`Store.index_of` says what): "who uses this monitor",
-- "which virtual server holds this destination" are lookups, whatever the number of objects.
CREATE TABLE IF NOT EXISTS refs (
    field     TEXT NOT NULL,   -- e.g. 'monitor', 'pool', 'destination'
    value     TEXT NOT NULL,   -- e.g. '/Common/web', or an address, port and protocol
    kind      TEXT NOT NULL,   -- the referring object
    partition TEXT NOT NULL,
    name      TEXT NOT NULL,
    PRIMARY KEY (field, value, kind, partition, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refs_by_object ON refs (kind, partition, name);

-- The log: one record per transaction and replication scope, in the order this device applied them.
CREATE TABLE IF NOT EXISTS log (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,  -- this device's transaction id, increasing, never reused
    scope    TEXT NOT NULL,        -- the replication scope ('' = this device only)
    origin   TEXT NOT NULL,        -- the device that wrote the transaction
    seq      INTEGER,              -- the origin's sequence number of it in the scope; NULL = pending
    vv       TEXT NOT NULL,        -- the origin's version vector of the scope, this transaction included (JSON)
    changes  TEXT NOT NULL         -- JSON: [[kind, partition, name, hlc, body or null for a delete], ...]
);
CREATE UNIQUE INDEX IF NOT EXISTS log_by_origin ON log (scope, origin, seq);

-- The version vectors: per scope and origin device, the highest sequence applied here.
CREATE TABLE IF NOT EXISTS versions (
    scope  TEXT NOT NULL,
    origin TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (scope, origin)
) WITHOUT ROWID;

-- Conflict records are replicated objects now (kind 'conflicts'); stores of earlier versions had a table.
DROP TABLE IF EXISTS conflicts;

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

-- The trust domain's records (devices, device groups), merged by (hlc, origin).
CREATE TABLE IF NOT EXISTS domain (
    kind    TEXT NOT NULL,
    key     TEXT NOT NULL,
    body    TEXT NOT NULL,
    hlc     INTEGER NOT NULL,
    origin  TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;

-- The audit trail of this device, newest last: every write asked of its API, refused logins and refusals.
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    user    TEXT NOT NULL,
    role    TEXT NOT NULL,
    source  TEXT NOT NULL,
    via     TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    status  INTEGER NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);

-- Failover events of this device, newest last: transitions of its traffic groups, heartbeat paths lost
-- and back (kind 'path', no traffic group). `kind` is added to the table of an older store on opening.
CREATE TABLE IF NOT EXISTS events (
    id            INTEGER PRIMARY KEY,
    at            REAL NOT NULL,
    traffic_group TEXT NOT NULL,
    from_state    TEXT NOT NULL,
    to_state      TEXT NOT NULL,
    reason        TEXT NOT NULL,
    kind          TEXT NOT NULL DEFAULT 'transition'
);
