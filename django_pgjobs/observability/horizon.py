"""The xmin horizon: what keeps vacuum from removing the dead rows of our tables.

Vacuum removes a dead row only once no transaction could still see it. The oldest transaction
some session, prepared transaction or standby still needs is the horizon; rows deleted after it
stay, however often vacuum runs, and a queue table that churns thousands of rows a second fills
with them (and so does its claim index). PostgreSQL computes the horizon of a database from:

- sessions *of this database* with a snapshot (``backend_xmin``) or a transaction ID
  (``backend_xid``): an open transaction, a long query. Autovacuum workers and logical decoding
  are left out, as PostgreSQL leaves them out;
- not sessions of *another* database: since PostgreSQL 14 they count for shared catalogs
  only, whatever their snapshot (tests/observability/test_health_advice.py shows a VACUUM here
  removing rows while one is open). Their transaction ID still reaches us indirectly: every
  snapshot taken here counts it as running, so a session here may be held at it. Such a
  transaction is listed (``elsewhere``) when a session here is held at it, after that session:
  the session here is the holder, the other database's transaction only why its xmin is old;
- walsenders of standbys with ``hot_standby_feedback`` (they belong to no database);
- prepared transactions of this database (``PREPARE TRANSACTION`` never committed);
- replication slots: a slot's ``xmin`` (a standby's feedback) holds back every table; a logical
  slot's ``catalog_xmin`` only the system catalogs, so it is listed with ``catalogs_only``.

Every role sees each session's xmin and XID; its state, start and query only with
``pg_read_all_stats`` (or as a superuser), so a holder may come with its age in transactions
alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Holders listed, the oldest first: the first few are what an operator acts on.
HOLDERS_SHOWN = 10
# Characters of a session's query kept: enough to recognise it, not the whole statement.
QUERY_CHARS = 300
# What pg_stat_activity shows instead of another role's query to a role without
# pg_read_all_stats (its state and start are NULL then).
HIDDEN_QUERY = "<insufficient privilege>"


@dataclass(frozen=True)
class HorizonHolder:
    """A session, prepared transaction or replication slot that holds the xmin horizon back."""

    kind: str  # "session", "prepared transaction" or "replication slot"
    # Transactions begun since the oldest one it still needs: age() of its xmin (or XID).
    xmin_age: int
    # How long it has held it: the session's transaction open, the time since PREPARE; None
    # when PostgreSQL does not say (a slot, a walsender, a session hidden from this role).
    seconds: float | None = None
    pid: int | None = None  # the session; a slot's walsender, when active
    name: str | None = None  # a prepared transaction's gid, a slot's name
    user: str | None = None
    application: str | None = None
    database: str | None = None
    # A session's state (active, idle in transaction ...); None when hidden from this role.
    state: str | None = None
    # A session's backend type (client backend, walsender); a slot's type (physical, logical).
    backend_type: str | None = None
    query: str | None = None  # the session's query (cut), None when hidden
    active: bool | None = None  # a slot: whether a consumer is connected
    catalogs_only: bool = False  # a slot's catalog_xmin: holds back the system catalogs only
    # A session of another database whose transaction ID is the xmin of a session here: not a
    # holder of this database's horizon itself (Health.horizon leaves it out), only the reason
    # that session's xmin is old.
    elsewhere: bool = False
    # When a session's current (or, idle, last) query started; None when hidden or not a session.
    query_start: datetime | None = None

    @property
    def who(self) -> str:
        """A session as the warnings and ``pgjobs health`` name it: pid, database (when not this
        one), role and application, in parentheses left open for more."""
        where = f"database {self.database!r}, " if self.elsewhere else ""
        return f"pid {self.pid} ({where}user {self.user!r}, app {self.application!r}"

    @property
    def hidden(self) -> bool:
        """A session of another role, whose state, start and query this role may not see."""
        return self.kind == "session" and self.state is None and self.backend_type is None


# One statement, three sources, the oldest holder first (holders of our tables before those of
# the catalogs only; at equal age, the sessions here before a transaction elsewhere they are
# held at, which is no holder of ours).
# pg_stat_activity: a session of this database with a snapshot or an XID (not this one, not
# autovacuum, not a walsender of logical decoding nor a parallel worker, which shares its
# leader's); a walsender of no database (a standby's feedback); a session of another database
# whose XID is some session here's xmin. A hidden session's backend_type is NULL, so it is kept:
# of no database, with an xmin, it is a standby's walsender. age() reads the next XID without
# taking one.
_HOLDERS = """
SELECT 'session' AS kind,
       CASE WHEN a.datname = current_database()
            THEN greatest(age(a.backend_xmin), age(a.backend_xid))
            ELSE coalesce(age(a.backend_xid), age(a.backend_xmin)) END AS xmin_age,
       extract(epoch FROM now() - a.xact_start)::float8, a.pid, NULL::text, a.usename::text,
       a.application_name, a.datname::text, a.state, a.backend_type,
       nullif(left(a.query, %(chars)s), %(hidden)s), NULL::bool, false AS catalogs_only,
       coalesce(a.datname <> current_database(), false) AS elsewhere, a.query_start
FROM pg_stat_activity AS a
WHERE a.pid <> pg_backend_pid()
  AND (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL)
  AND CASE WHEN a.datid IS NULL THEN coalesce(a.backend_type, 'walsender') = 'walsender'
           WHEN a.backend_type IN ('autovacuum worker', 'walsender', 'parallel worker')
           THEN false
           WHEN a.datname = current_database() THEN true
           ELSE EXISTS (SELECT FROM pg_stat_activity AS h
                        WHERE h.datname = current_database() AND h.pid <> pg_backend_pid()
                          AND h.backend_xmin = a.backend_xid)
      END
UNION ALL
SELECT 'prepared transaction', age(p.transaction), extract(epoch FROM now() - p.prepared)::float8,
       NULL, p.gid, p.owner::text, NULL, p.database::text, NULL, NULL, NULL, NULL, false, false,
       NULL
FROM pg_prepared_xacts AS p
WHERE p.database = current_database()
UNION ALL
SELECT 'replication slot', coalesce(age(s.xmin), age(s.catalog_xmin)), NULL, s.active_pid,
       s.slot_name::text, NULL, NULL, s.database::text, NULL, s.slot_type, NULL, s.active,
       s.xmin IS NULL, false, NULL
FROM pg_replication_slots AS s
WHERE s.xmin IS NOT NULL OR s.catalog_xmin IS NOT NULL
ORDER BY catalogs_only, xmin_age DESC, elsewhere
LIMIT %(shown)s
"""


def read_holders(cur: Any) -> list[HorizonHolder]:
    """The holders of the horizon, the oldest first. ``cur``: a cursor on the queue's database."""
    cur.execute(_HOLDERS, {"chars": QUERY_CHARS, "hidden": HIDDEN_QUERY, "shown": HOLDERS_SHOWN})
    return [HorizonHolder(*row) for row in cur.fetchall()]
