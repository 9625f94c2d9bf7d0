"""The health figures judged against ``PGJOBS["HEALTH"]``: each warning with one line saying
what to do about it.

A warning is a state, not an event: a table's dead rows right after a burst warn until autovacuum
has run (once a minute by default), which is why the advice says what to check before acting.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django_pgjobs.conf import conf, seconds
from django_pgjobs.observability.display import byte_size, elapsed, local_time

if TYPE_CHECKING:
    from django_pgjobs.observability.health import Health, TableHealth
    from django_pgjobs.observability.horizon import HorizonHolder

# Every HealthWarning.kind, in the order the warnings come (the metrics export each, 0 or not).
WARNING_KINDS = ("xmin_horizon", "dead_rows", "bloat", "xid_age", "multixact_age", "autovacuum_off")
# Where PostgreSQL stops assigning transaction IDs (2^31 less its 3-million safety margin).
XID_STOP = 2**31 - 3_000_000
_OLDEST_TABLES = (
    "SELECT oid::regclass, {age}({column}) FROM pg_class WHERE relkind IN ('r', 'm', 't') "
    "ORDER BY 2 DESC LIMIT 10"
)


@dataclass(frozen=True)
class HealthThresholds:
    """``PGJOBS["HEALTH"]``, typed (see :data:`django_pgjobs.conf.HEALTH_DEFAULTS`)."""

    dead_ratio: float
    dead_rows: int
    bloat_ratio: float
    bloat_bytes: int
    xmin_age_seconds: float
    xmin_age_transactions: int
    xid_age: int

    @classmethod
    def from_settings(cls) -> HealthThresholds:
        given = conf.HEALTH
        return cls(
            dead_ratio=float(given["DEAD_RATIO"]),
            dead_rows=int(given["DEAD_ROWS"]),
            bloat_ratio=float(given["BLOAT_RATIO"]),
            bloat_bytes=int(given["BLOAT_BYTES"]),
            xmin_age_seconds=seconds(given["XMIN_AGE_SECONDS"]),
            xmin_age_transactions=int(given["XMIN_AGE_TRANSACTIONS"]),
            xid_age=int(given["XID_AGE"]),
        )


@dataclass(frozen=True)
class HealthWarning:
    """Something wrong, with its figures, and what to do about it."""

    # One of WARNING_KINDS: a label for the metrics.
    kind: str
    # The table, database, or holder (session pid, prepared transaction, slot) it is about.
    subject: str
    message: str
    action: str

    def __str__(self) -> str:
        return f"{self.message}: {self.action}"


def health_warnings(health: Health, thresholds: HealthThresholds) -> list[HealthWarning]:
    """Every warning ``health`` deserves, those about the horizon first: they cause the others."""
    over = [h for h in health.holders if _holds_too_long(h, thresholds)]
    found = [_holder_warning(h) for h in over]
    # What the advice about dead rows may point at: the oldest holder of our tables' horizon
    # (of this database, or a slot or standby: never a session of another database), of any
    # age; _dead_rows_action decides whether it is shown to be the cause. For freezing, only one
    # as old as the warning's threshold: vacuum freezes up to the horizon.
    blocker = health.horizon
    freeze_blocker = next(
        (
            _subject(h)
            for h in over
            if not (h.catalogs_only or h.elsewhere) and h.xmin_age >= thresholds.xid_age
        ),
        None,
    )
    for table in health.tables:
        found += _table_warnings(health, table, thresholds, blocker, freeze_blocker)
    found += _database_warnings(health, thresholds, freeze_blocker)
    return found


def _holds_too_long(holder: HorizonHolder, thresholds: HealthThresholds) -> bool:
    return holder.xmin_age >= thresholds.xmin_age_transactions or (
        holder.seconds is not None and holder.seconds >= thresholds.xmin_age_seconds
    )


def _subject(holder: HorizonHolder) -> str:
    if holder.kind == "session":
        return f"pid {holder.pid}"
    return f"{holder.kind} {holder.name!r}"


def _holder_warning(holder: HorizonHolder) -> HealthWarning:
    behind = f"{holder.xmin_age:,} transactions behind"
    what = "vacuum of the system catalogs" if holder.catalogs_only else "vacuum"
    if holder.kind == "prepared transaction":
        gid = (holder.name or "").replace("'", "''")
        return HealthWarning(
            "xmin_horizon",
            _subject(holder),
            f"prepared transaction {holder.name!r} (owner {holder.user!r}), prepared "
            f"{held_for(holder.seconds)} ago, holds back {what}, {behind}",
            f"finish it in database {holder.database!r} once you know what its transaction "
            f"manager meant: COMMIT PREPARED '{gid}' or ROLLBACK PREPARED '{gid}'",
        )
    if holder.kind == "replication slot":
        name = (holder.name or "").replace("'", "''")
        state = "active" if holder.active else "inactive"
        return HealthWarning(
            "xmin_horizon",
            _subject(holder),
            f"{state} {holder.backend_type} replication slot {holder.name!r} holds back {what}, "
            f"{behind}",
            (
                "a long query on the standby that uses it (hot_standby_feedback) or the "
                "standby's lag holds it: end that query or find out why"
                if holder.backend_type == "physical"
                else "its subscriber is that far behind: find out why"
            )
            + f"; if the slot's consumer is gone for good, drop it: "
            f"SELECT pg_drop_replication_slot('{name}')",
        )
    who = holder.who
    if holder.elsewhere:  # PostgreSQL ignores it here, but every snapshot here counts it running
        return HealthWarning(
            "xmin_horizon",
            _subject(holder),
            f"a transaction of another database, open for {held_for(holder.seconds)} in {who}, "
            f"{holder.state or 'state hidden'}), counts as running in the snapshots of sessions "
            f"here, which hold back vacuum at it, {behind}",
            "it is another database's, perhaps another application's: ask whose it is rather "
            "than end it from here; the sessions here that hold the horizon are listed too",
        )
    if holder.hidden:
        return HealthWarning(
            "xmin_horizon",
            _subject(holder),
            f"the session {who}) holds back {what}, {behind}; its state, start and query are "
            "hidden from this role",
            "see them as a superuser or a role granted pg_read_all_stats (in pg_stat_activity), "
            f"and end it with SELECT pg_terminate_backend({holder.pid})",
        )
    if holder.backend_type == "walsender":
        return HealthWarning(
            "xmin_horizon",
            _subject(holder),
            f"the standby streaming from walsender {who}) holds back {what} through "
            f"hot_standby_feedback, {behind}",
            "a long query on that standby holds it: end it there, or set hot_standby_feedback "
            "off on the standby (its long queries are then cancelled instead)",
        )
    if holder.state == "active":
        return HealthWarning(
            "xmin_horizon",
            _subject(holder),
            f"a transaction running for {held_for(holder.seconds)} in {who}, active) holds back "
            f"{what}, {behind}",
            f"if it may be stopped, cancel its query (SELECT pg_cancel_backend({holder.pid})) or "
            f"end the session (SELECT pg_terminate_backend({holder.pid})); statement_timeout "
            "bounds such queries",
        )
    return HealthWarning(
        "xmin_horizon",
        _subject(holder),
        f"a transaction open for {held_for(holder.seconds)} in {who}, {holder.state}) holds back "
        f"{what}, {behind}",
        f"end it (SELECT pg_terminate_backend({holder.pid})) and set "
        "idle_in_transaction_session_timeout so that a forgotten transaction ends by itself",
    )


def _table_warnings(
    health: Health,
    table: TableHealth,
    thresholds: HealthThresholds,
    blocker: HorizonHolder | None,
    freeze_blocker: str | None,
) -> Iterator[HealthWarning]:
    if health.autovacuum and not table.autovacuum_enabled:  # the server's: one warning for all
        yield HealthWarning(
            "autovacuum_off",
            table.name,
            f"autovacuum is off for {table.name}: its dead rows stay until a VACUUM by hand",
            f"ALTER TABLE {table.name} RESET (autovacuum_enabled)",
        )
    dead, ratio = table.dead_rows, table.dead_ratio
    if dead > 0 and dead >= thresholds.dead_rows and ratio >= thresholds.dead_ratio:
        yield HealthWarning(
            "dead_rows",
            table.name,
            f"{table.name} has {dead:,} dead rows ({ratio:.0%} of its rows)",
            _dead_rows_action(health, table, blocker),
        )
    free, share = table.bloat_bytes, table.bloat_ratio
    if free is not None and share is not None and _bloated(free, share, thresholds):
        yield HealthWarning(
            "bloat",
            table.name,
            f"{table.name}: about {byte_size(free)} of its {byte_size(table.heap_bytes)} heap "
            f"holds no live row ({share:.0%}, estimated)",
            "it is reused as the table fills again; if it stays this empty, give it back with "
            f"pg_repack, or VACUUM FULL {table.name} (which locks the table: enqueues and workers "
            "wait until it ends)",
        )
    for kind, age in (("xid_age", table.xid_age), ("multixact_age", table.multixact_age)):
        if age >= thresholds.xid_age:
            unit = "transaction IDs" if kind == "xid_age" else "multixacts"
            yield HealthWarning(
                kind,
                table.name,
                f"{table.name} is {age:,} {unit} old (PostgreSQL stops at about {XID_STOP:,})",
                _blocked(freeze_blocker)
                if freeze_blocker
                else f"freeze it: VACUUM (FREEZE, VERBOSE) {table.name}",
            )


def _bloated(free: int, share: float, thresholds: HealthThresholds) -> bool:
    return free >= thresholds.bloat_bytes and share >= thresholds.bloat_ratio


def holder_named(holder: HorizonHolder) -> str:
    """A holder as the dead rows' advice names it: a session by pid, state, how long its
    transaction has been open and when its query started (never the query: the dashboard
    shows the warnings to whoever may view jobs)."""
    if holder.kind == "prepared transaction":
        return (
            f"prepared transaction {holder.name!r} (owner {holder.user!r}, prepared "
            f"{held_for(holder.seconds)} ago)"
        )
    if holder.kind == "replication slot":
        state = "active" if holder.active else "inactive"
        return f"{state} {holder.backend_type} replication slot {holder.name!r}"
    if holder.hidden:
        return f"the session {holder.who}; state and start hidden from this role)"
    if holder.backend_type == "walsender":
        return f"the standby streaming from walsender {holder.who}, hot_standby_feedback)"
    started = "?" if holder.query_start is None else local_time(holder.query_start)
    return (
        f"the session {holder.who}, {holder.state}, transaction open "
        f"{held_for(holder.seconds)}, query started {started})"
    )


def _dead_rows_action(health: Health, table: TableHealth, holder: HorizonHolder | None) -> str:
    """What to do about ``table``'s dead rows. A holder is named as their cause only on
    evidence: the table's last vacuum finished after the holder certainly held the horizon
    (from a session's last query start, a transaction's PREPARE), and left these rows; a
    vacuum that began before the holder and ended after it is the rare false positive. Without
    that evidence (no vacuum since, or a holder whose start PostgreSQL does not show) the holder
    may hold none of them (it may have begun after they died), so the line says what is true,
    after the autovacuum advice, which is never left out where it applies."""
    autovacuum = _autovacuum_off(health, table)
    if holder is None:
        return autovacuum or (
            f"{_autovacuum_behind(table)}; if it persists, run VACUUM (VERBOSE) {table.name}: dead "
            "rows 'not yet removable' mean something holds back the xmin horizon"
        )
    since = holding_since(holder, health)
    vacuumed = table.vacuumed_at
    if since is not None and vacuumed is not None and vacuumed > since:
        held = (
            f"vacuum at {local_time(vacuumed)} left them: it ran after {holder_named(holder)} "
            f"began, {holder.xmin_age:,} transactions behind, and no row deleted after that "
            f"goes until it ends: {_holder_warning(holder).action}"
        )
        return held if autovacuum is None else f"{held}; {autovacuum}"
    began = (
        f"vacuum has not run since {holder_named(holder)} began"
        if since is not None
        else f"{holder_named(holder)} holds back the xmin horizon (since when, PostgreSQL does "
        "not say)"
    )
    why = f"{began}: if vacuum runs and rows remain, {_subject(holder)} is why"
    return f"{autovacuum or _autovacuum_behind(table)}; {why}"


def holding_since(holder: HorizonHolder, health: Health) -> datetime | None:
    """A moment from which ``holder`` certainly held the horizon: a session's current (or, idle
    in a transaction, last) query's start, by which it had its snapshot or transaction ID; a
    prepared transaction's PREPARE. None where PostgreSQL does not say (a slot, a standby's
    feedback, another role's session)."""
    if holder.kind == "prepared transaction" and holder.seconds is not None:
        return health.checked_at - timedelta(seconds=holder.seconds)
    if holder.kind == "session" and holder.backend_type != "walsender":
        return holder.query_start
    return None


def _autovacuum_off(health: Health, table: TableHealth) -> str | None:
    if not health.autovacuum:
        return f"autovacuum is off on this server: turn it on, and until then VACUUM {table.name}"
    if not table.autovacuum_enabled:
        return (
            f"autovacuum is off for this table: ALTER TABLE {table.name} RESET "
            f"(autovacuum_enabled), and VACUUM {table.name} now"
        )
    return None


def _autovacuum_behind(table: TableHealth) -> str:
    last = "never" if table.vacuumed_at is None else f"at {local_time(table.vacuumed_at)}"
    return (
        "normal for a minute after a burst, until autovacuum's next round (it last vacuumed the "
        f"table {last})"
    )


def _database_warnings(
    health: Health, thresholds: HealthThresholds, blocker: str | None
) -> Iterator[HealthWarning]:
    if not health.autovacuum:
        yield HealthWarning(
            "autovacuum_off",
            f"database {health.database!r}",
            "autovacuum is off on this server: a busy queue's dead rows are removed by nothing "
            "but a VACUUM by hand (PostgreSQL still vacuums against wraparound, late)",
            "turn it on (autovacuum = on in postgresql.conf, then SELECT pg_reload_conf())",
        )
    ages = [("xid_age", health.database, health.xid_age)]
    if health.oldest_xid_age > health.xid_age:  # another database, older than this one
        ages.append(("xid_age", health.oldest_database, health.oldest_xid_age))
    ages.append(("multixact_age", health.database, health.multixact_age))
    for kind, database, age in ages:
        if age < thresholds.xid_age:
            continue
        xids, here = kind == "xid_age", database == health.database
        oldest = _OLDEST_TABLES.format(
            age="age" if xids else "mxid_age", column="relfrozenxid" if xids else "relminmxid"
        )
        yield HealthWarning(
            kind,
            f"database {database!r}",
            f"database {database!r} is {age:,} {'transaction IDs' if xids else 'multixacts'} "
            f"old; PostgreSQL stops the whole server at about {XID_STOP:,}"
            + (f" (autovacuum forces freezing from {health.freeze_max_age:,})" if xids else ""),
            _blocked(blocker)
            if blocker and here
            else f"run VACUUM (FREEZE, VERBOSE) on its oldest tables"
            f"{'' if here else f', in database {database!r}'}, found with: {oldest}",
        )


def _blocked(blocker: str) -> str:
    return f"vacuum cannot clear this while {blocker} holds back the xmin horizon: end that first"


def held_for(seconds: float | None) -> str:
    """How long a holder has held the horizon, ``?`` when PostgreSQL does not say."""
    return "?" if seconds is None else elapsed(seconds)
