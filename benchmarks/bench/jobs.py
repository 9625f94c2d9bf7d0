"""Benchmark handlers: one that does nothing, one that notes when it started."""

from __future__ import annotations

import time
from typing import Any

from django.db import connection

from django_pgjobs import job


@job("bench.noop")
def noop(payload: Any) -> None:
    return None


@job("bench.latency")
def latency(payload: dict[str, Any]) -> None:
    started = time.time()
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO bench_latency (n, started) VALUES (%s, %s)", [payload["n"], started]
        )
