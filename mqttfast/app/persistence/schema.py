"""The on-disk format: one SQLite file, versioned, checked before use.

Identification: ``PRAGMA application_id`` is :data:`APPLICATION_ID` ("MQFT")
and ``meta.schema_version`` the format version. Opening refuses, with a
:class:`PersistenceError` (the CLI prints it on one line and exits 2):

* a file that is not SQLite, or whose pages are damaged (``quick_check``);
* a SQLite database of another application (other application_id, or tables
  but no mqttfast marker);
* a newer schema than this version of mqttfast knows.

An older schema is upgraded in place by the functions in :data:`MIGRATIONS`
(version n -> n + 1, each in its own transaction), so upgrades never lose data.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

APPLICATION_ID = 0x4D514654  # "MQFT"
SCHEMA_VERSION = 2


class PersistenceError(Exception):
    """The data directory or database cannot be used; the message says why."""


# Times (expires, will_at) are wall-clock seconds (time.time()); the broker
# converts to and from its monotonic clock at the edges.
SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE retained (
    topic   TEXT PRIMARY KEY,
    payload BLOB NOT NULL,
    qos     INTEGER NOT NULL,
    props   BLOB,              -- MQTT 5 properties, wire-encoded (see store.encode_props)
    expires REAL               -- message expiry, wall clock; NULL = never
);
CREATE TABLE sessions (
    client_id       TEXT PRIMARY KEY,
    expiry_interval INTEGER NOT NULL,
    expires         REAL,      -- offline session ends at; NULL = connected or never
    will_topic      TEXT,      -- pending v5 delayed will (NULL = none)
    will_payload    BLOB,
    will_qos        INTEGER,
    will_retain     INTEGER,
    will_props      BLOB,
    will_expires    REAL,
    will_at         REAL       -- publish the will at
);
CREATE TABLE subscriptions (
    client_id   TEXT NOT NULL,
    filter      TEXT NOT NULL, -- full filter, $share/{group}/ included
    qos         INTEGER NOT NULL,
    no_local    INTEGER NOT NULL,
    rap         INTEGER NOT NULL,
    rh          INTEGER NOT NULL,
    sub_id      INTEGER,
    PRIMARY KEY (client_id, filter)
) WITHOUT ROWID;
CREATE TABLE messages (        -- one row per message, shared by every session holding it
    id      INTEGER PRIMARY KEY,
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos     INTEGER NOT NULL,
    retain  INTEGER NOT NULL,
    props   BLOB,
    expires REAL,
    origin  TEXT
);
CREATE TABLE deliveries (      -- a message queued for / in flight to one session; id = order
    id        INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL,
    msg_id    INTEGER NOT NULL,
    qos       INTEGER NOT NULL,
    retain    INTEGER NOT NULL,
    sub_ids   TEXT,            -- comma-separated subscription identifiers
    state     INTEGER NOT NULL,-- 1 await PUBACK/PUBREC, 2 await PUBCOMP
    pid       INTEGER NOT NULL,-- packet id; 0 = queued, not yet sent
    shared    TEXT             -- "$share/{group}/{filter}" it came through, or NULL
);
CREATE INDEX deliveries_by_client ON deliveries (client_id);
CREATE TABLE qos2_in (         -- incoming QoS 2 packet ids awaiting PUBREL
    client_id TEXT NOT NULL,
    pid       INTEGER NOT NULL,
    PRIMARY KEY (client_id, pid)
) WITHOUT ROWID;
"""


def _v1_to_v2(db: sqlite3.Connection) -> None:
    # The user name of a persistent session, for read authorisation (ACL) of the
    # messages it receives while offline.
    db.execute("ALTER TABLE sessions ADD COLUMN username TEXT")


# from_version -> function upgrading the schema to from_version + 1.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2}


def _create(db: sqlite3.Connection, path: str) -> None:
    """A new database: the version 1 schema, then every migration (one code path)."""
    db.executescript("BEGIN;" + SCHEMA_V1 + "COMMIT;")
    with db:
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        db.execute("INSERT INTO meta VALUES ('created_by', 'mqttfast')")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    migrate(db, 1, path)


def migrate(db: sqlite3.Connection, version: int, path: str) -> int:
    """Upgrade ``db`` from ``version`` to :data:`SCHEMA_VERSION`; return the new version."""
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise PersistenceError(f"{path}: no migration from schema version {version}")
        with db:
            step(db)
            db.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version + 1),)
            )
        version += 1
    return version


def open_database(path: str, synchronous: str) -> sqlite3.Connection:
    """Open (creating if new) and validate the database file at ``path``."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as err:
        raise PersistenceError(f"cannot open database {path}: {err}") from None
    try:
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if app_id == 0 and not tables:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise PersistenceError(f"{path}: cannot enable WAL journal mode (got {mode})")
            _create(db, path)
        elif app_id != APPLICATION_ID:
            raise PersistenceError(
                f"{path} is not an mqttfast database (a SQLite database of another application); "
                "refusing to touch it"
            )
        else:
            if "meta" not in tables:
                raise PersistenceError(f"{path}: damaged mqttfast database (no meta table)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None or not str(row[0]).isdigit():
                raise PersistenceError(f"{path}: damaged mqttfast database (no schema version)")
            version = int(row[0])
            if version > SCHEMA_VERSION:
                raise PersistenceError(
                    f"{path} has schema version {version}, newer than this mqttfast supports "
                    f"({SCHEMA_VERSION}); upgrade mqttfast"
                )
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise PersistenceError(f"{path}: damaged database ({check})")
            db.execute("PRAGMA journal_mode = WAL")
            migrate(db, version, path)
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute("PRAGMA temp_store = MEMORY")
        return db
    except sqlite3.DatabaseError as err:
        db.close()
        raise PersistenceError(f"{path} is not a usable mqttfast database: {err}") from None
    except PersistenceError:
        db.close()
        raise
