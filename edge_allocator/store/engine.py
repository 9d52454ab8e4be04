"""Engines, schema creation and error wording for the decision log.

Everything that knows about dialects lives here: pool settings per backend, the
Alembic upgrade run in code, which errors mean "database unavailable" (retry later) and
which mean "this row is bad" (set it aside), and how to describe an error without the
password.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine, make_url

#: Where the Alembic environment and revisions live (shipped inside the package).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: How long SQLite waits on a lock held by another writer before failing.
SQLITE_BUSY_TIMEOUT_S = 30.0
#: How long a PostgreSQL connection attempt may take; bounds how long a retry against an
#: unreachable host blocks the writer thread.
PG_CONNECT_TIMEOUT_S = 5
#: Page size of a new SQLite log (bytes; SQLite's largest). A decision's row is ~1 KB
#: (its packed node states most of it), and at SQLite's default 4 KiB the writer thread
#: spent ~10 µs of CPU per decision storing it, at 64 KiB ~7 (256-state batches,
#: 10,240 decisions, two runs each, 2026-12-07): fewer pages to split, checksum and
#: append to the WAL per commit. It only applies to a file not yet written; an existing
#: log keeps the page size it was created with.
SQLITE_PAGE_SIZE = 65536
#: Key of the PostgreSQL advisory lock that serialises migrations between replicas.
SCHEMA_LOCK_KEY = 0x6564_6765_6C6F_67  # "edgelog"

#: Errors caused by the rows themselves: retrying cannot help, so they are set aside.
#: Everything else from the database (connection refused, locked, read-only, missing
#: table...) is treated as an outage and retried.
DATA_ERRORS: tuple[type[Exception], ...] = (exc.IntegrityError, exc.DataError)


def _json_dumps(obj: object) -> str:
    return orjson.dumps(obj).decode()


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine for the decision log: SQLite file or PostgreSQL (or any SQLAlchemy URL).

    Statement parameters are hidden from error messages (they hold request data), and
    JSON goes through orjson. In-memory SQLite is refused: the writer thread needs a
    database that other connections can see.
    """
    u = make_url(url)
    common: dict[str, object] = {
        "hide_parameters": True,
        "json_serializer": _json_dumps,
        "json_deserializer": orjson.loads,
    }
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database in (None, "", ":memory:") or "mode=memory" in str(u.query):
            raise ValueError(
                f"DecisionLog url {url!r} is an in-memory SQLite database, which the writer "
                "thread cannot share; use a file, e.g. sqlite:///edge_allocator.db"
            )
        engine = sa.create_engine(u, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, **common)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    kwargs: dict[str, object] = {"pool_pre_ping": True, "pool_size": pool_size}
    if backend == "postgresql" and u.get_driver_name() in ("psycopg", "psycopg2"):
        kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    return sa.create_engine(u, **common, **kwargs)


def _sqlite_on_connect(dbapi_conn: object, _record: object) -> None:
    # WAL lets report() and record_feedback() read while the writer thread writes.
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # before WAL: no effect after it
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def safe_url(engine: Engine) -> str:
    """The engine's URL with the password masked, for logs and error messages."""
    return engine.url.render_as_string(hide_password=True)


def describe_error(engine: Engine, error: BaseException) -> str:
    """A one-line account of ``error`` that names the database but never its password.

    Uses the driver's own message (SQLAlchemy's wrapper would add the SQL text) and
    masks the password should a driver ever echo it.
    """
    inner = getattr(error, "orig", None) or error
    lines = str(inner).strip().splitlines()
    text = f"{type(inner).__name__}: {lines[0] if lines else ''}"
    password = engine.url.password
    if password:
        text = text.replace(str(password), "***")
    return f"{safe_url(engine)}: {text}"


def alembic_config() -> Config:
    """An Alembic config built in code, pointing at the shipped migrations (no ini file)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


def create_schema(engine: Engine) -> None:
    """Upgrade the database to the latest migration; a no-op when already there.

    Runs in one transaction. On PostgreSQL an advisory lock makes replicas that start
    together take turns instead of racing to create the same tables.
    """
    cfg = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
