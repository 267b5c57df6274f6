"""livercore's store: one database for the app's own state (the cohort builder's annotators,
studies and lesions; the learners, their quiz attempts and review cards), never a patient identifier.

Where it is: ``$LIVERCORE_DATABASE_URL`` (any SQLAlchemy URL; PostgreSQL with psycopg 3:
``postgresql+psycopg://user:password@host/db``), else an SQLite file created on first use at
``$XDG_DATA_HOME/livercore/livercore.sqlite`` (``~/.local/share/livercore/livercore.sqlite``
without XDG_DATA_HOME). There is no set-up step: `get_engine` brings the schema to the newest
revision (Alembic ``upgrade head``, the migrations shipped in ``livercore/store/migrations``)
the first time a process uses a URL.

Layout: `schema` holds the tables (SQLAlchemy 2 declarative), ``migrations/versions`` one file
per revision. A feature adds its tables to `schema` and a new revision whose ``down_revision``
is the current head; nothing else changes.

Concurrency: Streamlit serves every session as a thread of one process and a site may run
several processes. Each unit of work is one transaction (`session`). On SQLite the file is in
WAL mode (readers never wait for the writer), every transaction starts with ``BEGIN
IMMEDIATE`` (a writer takes the write lock at its start, so two writers queue instead of one
failing on a lock upgrade) and waits up to BUSY_TIMEOUT_S for it. On PostgreSQL transactions
are the server's; the schema upgrade holds an advisory lock so two processes starting at once
do not both create the tables.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from livercore.store.schema import Base, Setting

URL_VARIABLE = "LIVERCORE_DATABASE_URL"
DATABASE_FILE = "livercore.sqlite"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_S = 30.0  # an SQLite writer waits this long for another's transaction to end
UPGRADE_LOCK_ID = 0x6C697665  # PostgreSQL advisory lock held while the schema is upgraded ("live")

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def default_database_path() -> Path:
    """``$XDG_DATA_HOME/livercore/livercore.sqlite``, else ``~/.local/share/livercore/...``."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "livercore" / DATABASE_FILE


def database_url() -> str:
    """$LIVERCORE_DATABASE_URL (read at call time), else the default SQLite file's URL."""
    return os.environ.get(URL_VARIABLE) or f"sqlite:///{default_database_path()}"


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout, and transactions this module begins itself (the
    sqlite3 module's own implicit BEGIN would make DDL autocommit and writers upgrade locks)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create(url: str) -> Engine:
    """A new engine on `url`, configured for this store (SQLite: the file's folder created,
    private to its owner), its schema not yet upgraded."""
    file = _sqlite_file(url)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = create_engine(url, pool_pre_ping=file is None)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": UPGRADE_LOCK_ID})
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the shipped Alembic migrations up to `revision`, in one transaction."""
    _migrate(engine, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Undo migrations down to `revision` ("base": an empty database), in one transaction."""
    _migrate(engine, revision, down=True)


def get_engine(url: str | None = None) -> Engine:
    """The process's engine on `url` (default `database_url()`), its schema upgraded to the
    newest revision on first use."""
    url = url or database_url()
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create(url)
            upgrade(engine)
            _engines[url] = engine
    return engine


def dispose(url: str | None = None) -> None:
    """Close the engine on `url` (every engine without one): tests, or a process shutting down."""
    with _lock:
        for key in [url] if url else list(_engines):
            engine = _engines.pop(key, None)
            if engine is not None:
                engine.dispose()


@contextmanager
def session(engine: Engine) -> Iterator[Session]:
    """One unit of work: a session in one transaction, committed on leaving the block, rolled
    back on an exception. Objects stay readable after it (expire_on_commit off)."""
    factory = sessionmaker(engine, expire_on_commit=False)
    if engine.dialect.name != "sqlite":
        with factory.begin() as s:
            yield s
        return
    # SQLite has one writer at a time and every transaction here takes the write lock at its
    # start: the threads of one process queue on a lock of their own instead of polling the
    # file's lock with SQLite's backoff (up to 100 ms a try), which made the slowest writes of
    # twenty learners in two processes wait seconds (benchmarks/bench_learners.py).
    with _sqlite_writers(engine), factory.begin() as s:
        yield s


_writer_locks: dict[int, threading.RLock] = {}


def _sqlite_writers(engine: Engine) -> threading.RLock:
    with _lock:
        return _writer_locks.setdefault(id(engine), threading.RLock())


def setting(engine: Engine, key: str, default: str | None = None) -> str | None:
    """The value of a row of the settings table, or `default`."""
    with session(engine) as s:
        value = s.scalar(select(Setting.value).where(Setting.key == key))
    return default if value is None else value


def setting_once(engine: Engine, key: str, make: Any) -> str:
    """The setting `key`; when absent, `make()` stored under it first. Two processes asking
    at once get the same value (the second's insert fails on the key and reads the first's)."""
    value = setting(engine, key)
    if value is not None:
        return value
    try:
        with session(engine) as s:
            s.add(Setting(key=key, value=str(make())))
    except IntegrityError:
        pass
    stored = setting(engine, key)
    assert stored is not None
    return stored


def random_secret() -> str:
    """32 random bytes as hex: a salt generated once and kept in the settings table."""
    return secrets.token_hex(32)


__all__ = [
    "Base",
    "database_url",
    "default_database_path",
    "dispose",
    "downgrade",
    "get_engine",
    "random_secret",
    "session",
    "setting",
    "setting_once",
    "upgrade",
]
