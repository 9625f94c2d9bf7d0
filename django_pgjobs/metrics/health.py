"""The PostgreSQL health gauges: :func:`~django_pgjobs.observability.health.database_health`'s
figures (rows, sizes, vacuum, the xmin horizon, transaction ID age, warnings) as metric
families. Read and cached with the database gauges of :mod:`.collector`, so a scrape within the
cache window runs none of its statements either.

Every warning kind is always exported (0 when none), so an alert on
``pgjobs_health_warnings > 0`` needs no ``absent()``.
"""

from __future__ import annotations

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from django_pgjobs.observability.health import Health, TableHealth, database_health
from django_pgjobs.observability.health_warnings import WARNING_KINDS

# name: (help, the TableHealth figure). One series per table of ours, labelled ``table``.
TABLE_FAMILIES: dict[str, tuple[str, str]] = {
    "pgjobs_table_live_rows": ("Live rows of the table (PostgreSQL's statistics).", "live_rows"),
    "pgjobs_table_dead_rows": (
        "Dead rows vacuum has not removed yet (PostgreSQL's statistics).",
        "dead_rows",
    ),
    "pgjobs_table_size_bytes": ("The table's size: heap, TOAST and maps.", "table_bytes"),
    "pgjobs_table_index_size_bytes": ("The size of the table's indexes.", "index_bytes"),
    "pgjobs_table_bloat_bytes": (
        "Estimated heap bytes holding no live row (from the planner's statistics); absent "
        "while the table was never analysed.",
        "bloat_bytes",
    ),
    "pgjobs_table_last_vacuum_timestamp_seconds": (
        "When the table was last vacuumed, by hand or by autovacuum (Unix time); absent if never.",
        "vacuumed_at",
    ),
    "pgjobs_table_last_analyze_timestamp_seconds": (
        "When the table was last analysed, by hand or by autovacuum (Unix time); absent if never.",
        "analyzed_at",
    ),
    "pgjobs_table_xid_age": (
        "Transaction ID age of the table (age(relfrozenxid)).",
        "xid_age",
    ),
}

DATABASE_FAMILIES: dict[str, str] = {
    "pgjobs_xmin_horizon_age_transactions": (
        "Transactions begun since the oldest one a session, prepared transaction or replication "
        "slot still needs (what keeps vacuum from removing dead rows of our tables); 0 if none."
    ),
    "pgjobs_xmin_horizon_age_seconds": (
        "How long the horizon's holder has held it (a session's open transaction, a prepared "
        "transaction's age); absent when nothing holds it or PostgreSQL does not say (a slot)."
    ),
    "pgjobs_database_xid_age": "Transaction ID age of the database (age(datfrozenxid)).",
    "pgjobs_database_multixact_age": "Multixact age of the database (mxid_age(datminmxid)).",
    "pgjobs_server_oldest_xid_age": (
        "Transaction ID age of the server's oldest database: wraparound stops the whole server."
    ),
    "pgjobs_health_warnings": (
        "Health warnings in force by kind (the thresholds of PGJOBS['HEALTH']); "
        "`manage.py pgjobs health` says what to do."
    ),
}


def described() -> list[Metric]:
    """The families by name only, for a registry's clash check (no statement runs)."""
    return [
        *(GaugeMetricFamily(n, d, labels=["table"]) for n, (d, _) in TABLE_FAMILIES.items()),
        *(GaugeMetricFamily(n, d) for n, d in DATABASE_FAMILIES.items()),
    ]


def health_families(alias: str) -> list[Metric]:
    """Read the health of ``alias`` and turn it into gauges."""
    return families_of(database_health(using=alias))


def families_of(health: Health) -> list[Metric]:
    tables = {
        name: GaugeMetricFamily(name, documentation, labels=["table"])
        for name, (documentation, _) in TABLE_FAMILIES.items()
    }
    for table in health.tables:
        for name, (_, figure) in TABLE_FAMILIES.items():
            value = _number(table, figure)
            if value is not None:
                tables[name].add_metric([table.name], value)

    def gauge(name: str, value: float | None) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, DATABASE_FAMILIES[name])
        if value is not None:
            family.add_metric([], value)
        return family

    horizon = health.horizon
    warnings = GaugeMetricFamily(
        "pgjobs_health_warnings", DATABASE_FAMILIES["pgjobs_health_warnings"], labels=["kind"]
    )
    for kind in WARNING_KINDS:
        warnings.add_metric([kind], sum(1 for w in health.warnings if w.kind == kind))
    return [
        *tables.values(),
        gauge("pgjobs_xmin_horizon_age_transactions", horizon.xmin_age if horizon else 0),
        gauge("pgjobs_xmin_horizon_age_seconds", horizon.seconds if horizon else None),
        gauge("pgjobs_database_xid_age", health.xid_age),
        gauge("pgjobs_database_multixact_age", health.multixact_age),
        gauge("pgjobs_server_oldest_xid_age", health.oldest_xid_age),
        warnings,
    ]


def _number(table: TableHealth, figure: str) -> float | None:
    value = getattr(table, figure)
    if value is None:
        return None
    return float(value.timestamp()) if hasattr(value, "timestamp") else float(value)
