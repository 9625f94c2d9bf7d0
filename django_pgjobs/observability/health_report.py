"""The health figures as people read them: ``pgjobs health``'s lines and the dashboard's cells."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django_pgjobs.observability.display import byte_size, elapsed, local_time
from django_pgjobs.observability.health import SHARE_MIN_ROWS, Health, TableHealth
from django_pgjobs.observability.health_warnings import held_for
from django_pgjobs.observability.horizon import HorizonHolder

_COLUMNS = (
    f"{'table':<28}{'live':>12}{'dead':>12}{'dead':>6}{'size':>13}{'indexes':>13}"
    f"{'bloat (est.)':>17}  {'vacuumed':<16}{'analyzed':<16}{'xid age':>13}"
)


def since(moment: datetime | None, now: datetime) -> str:
    """``0:03:12 ago``, or ``never``."""
    return "never" if moment is None else f"{elapsed((now - moment).total_seconds())} ago"


def bloat_shown(table: TableHealth) -> str:
    """``12 MiB (23%)``, or ``?`` for a table never analysed."""
    if table.bloat_bytes is None or table.bloat_ratio is None:
        return "?"
    return f"{byte_size(table.bloat_bytes)} ({table.bloat_ratio:.0%})"


def dead_share_shown(table: TableHealth) -> str:
    """The dead rows' share of ``table``, or ``-`` for a table too small for it to mean anything
    (3 dead of 4 rows is 75%)."""
    return "-" if table.too_few_rows_for_a_share else f"{table.dead_ratio:.0%}"


def few_rows_note(health: Health) -> str | None:
    """Why some tables show no dead share, when some do."""
    if health.thresholds is None or not any(t.too_few_rows_for_a_share for t in health.tables):
        return None
    return (
        f'dead %: "-" for a table of fewer than {SHARE_MIN_ROWS:,} rows (live and dead), whose '
        f"share says nothing; a table warns from {health.thresholds.dead_rows:,} dead rows "
        '(PGJOBS["HEALTH"]["DEAD_ROWS"]), whatever its size'
    )


def holder_shown(holder: HorizonHolder) -> str:
    """Who holds the horizon, and for how long, in one line."""
    behind = f"{holder.xmin_age:,} transactions behind"
    if holder.kind == "prepared transaction":
        return (
            f"prepared transaction {holder.name!r} (owner {holder.user!r}), prepared "
            f"{held_for(holder.seconds)} ago, {behind}"
        )
    if holder.kind == "replication slot":
        scope = ", system catalogs only" if holder.catalogs_only else ""
        state = "active" if holder.active else "inactive"
        return f"{state} {holder.backend_type} replication slot {holder.name!r}, {behind}{scope}"
    who = holder.who
    if holder.elsewhere:
        behind += (
            "; no holder of this database's horizon, but snapshots taken here while its "
            "transaction runs count it as running"
        )
    if holder.hidden:
        return f"session {who}, state hidden from this role), {behind}"
    if holder.seconds is None:  # a walsender: no transaction of its own
        return f"{holder.backend_type} {who}, {holder.state}), {behind}"
    return f"session {who}, {holder.state}), transaction open {held_for(holder.seconds)}, {behind}"


def health_report(health: Health) -> Iterator[tuple[str, bool]]:
    """``pgjobs health``'s lines, each with whether it is a warning."""
    yield (
        f"PostgreSQL {health.server_version}, database {health.database!r}, "
        f"at {local_time(health.checked_at)}",
        False,
    )
    yield "", False
    yield _COLUMNS, False
    for t in health.tables:
        yield (
            f"{t.name:<28}{t.live_rows:>12,}{t.dead_rows:>12,}{dead_share_shown(t):>6}"
            f"{byte_size(t.table_bytes):>13}{byte_size(t.index_bytes):>13}{bloat_shown(t):>17}  "
            f"{since(t.vacuumed_at, health.checked_at):<16}"
            f"{since(t.analyzed_at, health.checked_at):<16}{t.xid_age:>13,}",
            False,
        )
    note = few_rows_note(health)
    if note is not None:
        yield note, False
    yield "", False
    horizon = health.horizon
    if horizon is None:
        yield "xmin horizon: nothing holds back vacuum of these tables", False
    for holder in health.holders:
        label = "xmin horizon: held by " if holder is horizon else "  also held by "
        if holder.elsewhere:
            label = "  another database's "
        yield label + holder_shown(holder), False
        if holder.query:
            yield f"    query: {' '.join(holder.query.split())}", False
    if not health.sees_all_sessions:
        yield (
            "  (other roles' sessions show no state, start or query to this role: grant it "
            "pg_read_all_stats to see them)",
            False,
        )
    oldest = (
        f"; the oldest database, {health.oldest_database!r}: {health.oldest_xid_age:,}"
        if health.oldest_xid_age > health.xid_age
        else ""
    )
    yield (
        f"transaction ID age: {health.xid_age:,}{oldest}; multixact age: "
        f"{health.multixact_age:,}; autovacuum freezes from {health.freeze_max_age:,}",
        False,
    )
    yield f"autovacuum: {'on' if health.autovacuum else 'OFF'}", False
    yield "", False
    if not health.warnings:
        yield "No warnings.", False
    for warning in health.warnings:
        yield f"WARNING: {warning}", True
