"""PostgreSQL health that a busy queue suffers from: dead rows and bloat in our tables, vacuum held
back by an old transaction (the xmin horizon), and transaction ID wraparound.

Shared by ``manage.py pgjobs health``, the admin dashboard and the metrics: :func:`database_health`
returns plain numbers, each one a gauge. Warnings, and the line saying what to do about each,
come from :mod:`django_pgjobs.observability.health_warnings`.

What it reads: the cumulative statistics (``pg_stat_all_tables``, ``pg_stat_activity``), the
catalogs (``pg_class``, ``pg_stats``, ``pg_database``, ``pg_prepared_xacts``,
``pg_replication_slots``) and the size functions, in four statements. No row of ours is read.
The size functions open each table with ACCESS SHARE, so like every query on it they wait while
``VACUUM FULL`` or a migration holds ACCESS EXCLUSIVE.

Works without a superuser. Every role sees the xmin and XID of every session, but the state,
start and query of another role's session only with ``pg_read_all_stats``: without it such a
holder is reported with its pid, role and age in transactions, and ``sees_all_sessions`` is
False. The statistics are PostgreSQL's own estimates: a backend reports its counts at most once
a second and when it goes idle, so a figure can lag the last second of writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.apps import apps
from django.db import connections, transaction

from django_pgjobs.database import opens_own_transaction, queue_database
from django_pgjobs.observability.bloat import estimated_bloat_bytes
from django_pgjobs.observability.health_warnings import (
    HealthThresholds,
    HealthWarning,
    health_warnings,
)
from django_pgjobs.observability.horizon import HorizonHolder, read_holders

# A table's dead share is shown from this many rows (live and dead).
SHARE_MIN_ROWS = 1_000


@dataclass(frozen=True)
class TableHealth:
    """One of our tables, as the statistics and the catalog see it."""

    name: str
    # n_live_tup, n_dead_tup: estimates kept by PostgreSQL as rows are written and vacuumed.
    live_rows: int
    dead_rows: int
    # pg_table_size (heap, TOAST, free space and visibility maps) and pg_indexes_size.
    table_bytes: int
    index_bytes: int
    # The heap as of the last VACUUM or ANALYZE (relpages), and how much of it holds no live
    # row by the statistics-based estimate (observability.bloat); None when never analysed.
    heap_bytes: int
    bloat_bytes: int | None
    last_vacuum: datetime | None
    last_autovacuum: datetime | None
    last_analyze: datetime | None
    last_autoanalyze: datetime | None
    # Transactions (and multixacts) since the oldest unfrozen one in the table: age(relfrozenxid).
    xid_age: int
    multixact_age: int
    # False when the table's autovacuum_enabled storage parameter turns autovacuum off for it.
    autovacuum_enabled: bool = True

    @property
    def dead_ratio(self) -> float:
        """Dead rows as a fraction of all rows (0 for an empty table)."""
        total = self.live_rows + self.dead_rows
        return self.dead_rows / total if total else 0.0

    @property
    def too_few_rows_for_a_share(self) -> bool:
        """Fewer than SHARE_MIN_ROWS rows, live and dead: its dead share says nothing (3 dead of
        4 rows is 75%), so it is not shown. Whether it warns is DEAD_ROWS's business."""
        return self.live_rows + self.dead_rows < SHARE_MIN_ROWS

    @property
    def bloat_ratio(self) -> float | None:
        if self.bloat_bytes is None:
            return None
        return self.bloat_bytes / self.heap_bytes if self.heap_bytes else 0.0

    @property
    def vacuumed_at(self) -> datetime | None:
        """The last vacuum, by hand or by autovacuum."""
        return _latest(self.last_vacuum, self.last_autovacuum)

    @property
    def analyzed_at(self) -> datetime | None:
        return _latest(self.last_analyze, self.last_autoanalyze)


@dataclass(frozen=True)
class Health:
    """The database's health as far as the queue is concerned, read at ``checked_at``."""

    checked_at: datetime
    database: str
    server_version: str
    tables: list[TableHealth]
    # Sessions, prepared transactions and replication slots that keep vacuum from removing
    # rows, the oldest first (at most horizon.HOLDERS_SHOWN); see observability.horizon.
    holders: list[HorizonHolder]
    # age(datfrozenxid) and mxid_age(datminmxid) of this database; PostgreSQL stops assigning
    # transaction IDs at about 2,147 million, and autovacuum forces freezing from
    # autovacuum_freeze_max_age (200 million by default).
    xid_age: int
    multixact_age: int
    # Wraparound is cluster-wide: the oldest database of the server, which may be another one.
    oldest_database: str
    oldest_xid_age: int
    freeze_max_age: int
    # The server's autovacuum setting.
    autovacuum: bool
    # Whether this role sees other roles' sessions whole (superuser or pg_read_all_stats).
    sees_all_sessions: bool
    warnings: list[HealthWarning] = field(default_factory=list)
    # What the figures were judged against; None until judged.
    thresholds: HealthThresholds | None = None

    @property
    def horizon(self) -> HorizonHolder | None:
        """What holds back vacuum of our tables the furthest, if anything does: a session or
        prepared transaction of this database, a standby's feedback or a slot. Never a session
        of another database (``elsewhere``): PostgreSQL leaves it out of our horizon."""
        return next((h for h in self.holders if not (h.catalogs_only or h.elsewhere)), None)


def pgjobs_tables() -> list[str]:
    """Our tables, from the models (so a table a migration adds is included)."""
    return sorted(
        model._meta.db_table
        for model in apps.get_app_config("pgjobs").get_models()
        if model._meta.managed and not model._meta.proxy
    )


_DATABASE = """
SELECT now(), current_database(), current_setting('server_version'),
       age(d.datfrozenxid), mxid_age(d.datminmxid),
       (SELECT o.datname FROM pg_database AS o ORDER BY age(o.datfrozenxid) DESC LIMIT 1),
       (SELECT max(age(o.datfrozenxid)) FROM pg_database AS o),
       current_setting('autovacuum_freeze_max_age')::bigint,
       current_setting('autovacuum')::bool,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
       current_setting('block_size')::int
FROM pg_database AS d WHERE d.datname = current_database()
"""

# Per table: statistics, sizes, freeze ages, storage parameters, and what the bloat estimate
# needs from pg_stats (columns, how many have statistics, the average row width without
# padding, whether any column holds nulls). The tables are resolved by the search_path, as
# Django's queries resolve them.
_TABLES = """
SELECT o.name,
       coalesce(s.n_live_tup, 0), coalesce(s.n_dead_tup, 0),
       pg_table_size(c.oid), pg_indexes_size(c.oid), c.relpages, c.reltuples,
       s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze,
       age(c.relfrozenxid), mxid_age(c.relminmxid),
       coalesce((SELECT p.option_value::int FROM pg_options_to_table(c.reloptions) AS p
                 WHERE p.option_name = 'fillfactor'), 100),
       coalesce((SELECT p.option_value::bool FROM pg_options_to_table(c.reloptions) AS p
                 WHERE p.option_name = 'autovacuum_enabled'), true),
       w.columns, w.with_stats, w.data_width, w.has_nulls
FROM unnest(%(tables)s::text[]) AS o(name)
JOIN pg_class AS c ON c.oid = to_regclass(o.name)
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_all_tables AS s ON s.relid = c.oid
CROSS JOIN LATERAL (
    SELECT count(*) AS columns, count(st.attname) AS with_stats,
           sum((1 - st.null_frac) * st.avg_width)::float8 AS data_width,
           coalesce(bool_or(st.null_frac > 0), false) AS has_nulls
    FROM pg_attribute AS a
    LEFT JOIN pg_stats AS st
      ON st.schemaname = n.nspname AND st.tablename = c.relname AND st.attname = a.attname
     AND NOT st.inherited
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
) AS w
ORDER BY o.name
"""


# How long one statement of the health read may take (milliseconds) before it gives up.
READ_TIMEOUT_MS = 5000


def database_health(
    *, using: str | None = None, thresholds: HealthThresholds | None = None
) -> Health:
    """Read the figures and judge them against ``thresholds`` (default ``PGJOBS["HEALTH"]``).

    In a transaction of its own whose statements give up after READ_TIMEOUT_MS: a table's size
    waits for its lock, and a VACUUM FULL or a migration holding one of ours would otherwise
    hold a scrape, the dashboard or the command for as long as it runs. Inside a caller's
    transaction, the caller's settings stand."""
    connection = connections[queue_database(using)]
    outermost = opens_own_transaction(connection.alias)
    with transaction.atomic(using=connection.alias), connection.cursor() as cur:
        if outermost:
            cur.execute("SELECT set_config('statement_timeout', %s, true)", [str(READ_TIMEOUT_MS)])
        # Statistics read earlier in a caller's transaction are cached until it ends: read
        # afresh (stats_fetch_consistency).
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(_DATABASE)
        (
            now, database, version, xid_age, multixact_age, oldest_database, oldest_xid_age,
            freeze_max_age, autovacuum, sees_all, block_size,
        ) = cur.fetchone()  # fmt: skip
        cur.execute(_TABLES, {"tables": pgjobs_tables()})
        tables = [_table(row, block_size) for row in cur.fetchall()]
        holders = read_holders(cur)
    health = Health(
        checked_at=now,
        database=database,
        server_version=version,
        tables=tables,
        holders=holders,
        xid_age=xid_age,
        multixact_age=multixact_age,
        oldest_database=oldest_database,
        oldest_xid_age=oldest_xid_age,
        freeze_max_age=freeze_max_age,
        autovacuum=autovacuum,
        sees_all_sessions=sees_all,
    )
    judged = thresholds or HealthThresholds.from_settings()
    return replace(health, warnings=health_warnings(health, judged), thresholds=judged)


def _table(row: tuple[Any, ...], block_size: int) -> TableHealth:
    (
        name, live, dead, table_bytes, index_bytes, pages, rows, vacuum, autovacuum, analyze,
        autoanalyze, xid_age, multixact_age, fillfactor, autovacuum_enabled, columns, with_stats,
        data_width, has_nulls,
    ) = row  # fmt: skip
    bloat = estimated_bloat_bytes(
        pages=pages,
        rows=rows,
        # A column without statistics would count as zero bytes wide: no estimate then.
        data_width=data_width if columns and with_stats == columns else None,
        columns=columns,
        has_nulls=has_nulls,
        block_size=block_size,
        fillfactor=fillfactor,
    )
    return TableHealth(
        name=name,
        live_rows=live,
        dead_rows=dead,
        table_bytes=table_bytes,
        index_bytes=index_bytes,
        heap_bytes=pages * block_size,
        bloat_bytes=bloat,
        last_vacuum=vacuum,
        last_autovacuum=autovacuum,
        last_analyze=analyze,
        last_autoanalyze=autoanalyze,
        xid_age=xid_age,
        multixact_age=multixact_age,
        autovacuum_enabled=autovacuum_enabled,
    )


def _latest(*moments: datetime | None) -> datetime | None:
    return max((m for m in moments if m is not None), default=None)
