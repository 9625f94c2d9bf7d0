"""The dashboard's PostgreSQL health section: the figures of ``pgjobs health`` and its warnings.

Sessions are named by pid, role and application, never by their query: a query's text may hold
data, and the dashboard needs only ``view_job``. ``pgjobs health`` shows the queries.
"""

from __future__ import annotations

from typing import Any

from django_pgjobs.observability.display import byte_size
from django_pgjobs.observability.health import Health
from django_pgjobs.observability.health_report import (
    bloat_shown,
    dead_share_shown,
    few_rows_note,
    holder_shown,
    since,
)


def health_context(health: Health) -> dict[str, Any]:
    warned = {w.subject for w in health.warnings}
    return {
        "tables": [
            {
                "name": t.name,
                "live": f"{t.live_rows:,}",
                "dead": f"{t.dead_rows:,}",
                "dead_ratio": dead_share_shown(t),
                "size": byte_size(t.table_bytes),
                "indexes": byte_size(t.index_bytes),
                "bloat": bloat_shown(t),
                "vacuumed": since(t.vacuumed_at, health.checked_at),
                "analyzed": since(t.analyzed_at, health.checked_at),
                "xid_age": f"{t.xid_age:,}",
                "warns": t.name in warned,
            }
            for t in health.tables
        ],
        "horizon": None if health.horizon is None else holder_shown(health.horizon),
        "other_holders": [holder_shown(h) for h in health.holders if h is not health.horizon],
        "few_rows_note": few_rows_note(health),
        "sees_all_sessions": health.sees_all_sessions,
        "xid_age": f"{health.xid_age:,}",
        "multixact_age": f"{health.multixact_age:,}",
        "freeze_max_age": f"{health.freeze_max_age:,}",
        "autovacuum": health.autovacuum,
        "warnings": [str(w) for w in health.warnings],
    }
