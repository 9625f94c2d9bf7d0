"""A worker's metrics port (``pgjobs_worker --metrics-port``): ``prometheus_client``'s own HTTP
server, in daemon threads beside the worker, serving the default registry.

The default registry, because it already holds the process's CPU, memory and garbage-collector
metrics, and any metric a project's handlers define (``prometheus_client.Counter(...)`` at
import): a worker's port shows all of it. To it the exporter adds the worker's counters and
histograms (:class:`~.worker.WorkerMetrics`) and the database gauges (:mod:`.collector`), and
takes them away again when closed.

With ``database=False`` (``--metrics-scope worker``) the port serves the process's metrics
only: the database gauges are the same from every process, and each worker reading them for its
own scrapes multiplies a read that can take a second on a large table by the number of workers.

Each scrape is served on a new thread of the server's; the database gauges close that thread's
connection after reading (nothing else would), and a database error leaves them out of that
scrape, logged, while the worker's own metrics are still served.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import REGISTRY, start_http_server
from prometheus_client.registry import CollectorRegistry

from django_pgjobs.metrics.collector import DatabaseCollector
from django_pgjobs.metrics.worker import WorkerMetrics

# The exporter has no authentication: only this host can reach it unless told otherwise
# (--metrics-address 0.0.0.0 in a container whose port only Prometheus reaches).
DEFAULT_ADDRESS = "127.0.0.1"


class Exporter:
    """A running metrics server; :meth:`close` stops it and unregisters what it added."""

    def __init__(
        self, server: Any, thread: threading.Thread, registry: CollectorRegistry, added: list[Any]
    ) -> None:
        self._server = server
        self._thread = thread
        self._registry = registry
        self._added = added

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        for collector in self._added:
            self._registry.unregister(collector)


def start_exporter(
    metrics: WorkerMetrics,
    *,
    port: int,
    address: str = DEFAULT_ADDRESS,
    using: str | None = None,
    database: bool = True,
    registry: CollectorRegistry = REGISTRY,
) -> Exporter:
    """Serve ``metrics``, and unless ``database`` is False the database gauges of ``using``, on
    ``address:port`` (0: a free port, see :attr:`Exporter.url`). Raises OSError when it cannot
    listen there."""
    collectors: list[Any] = [metrics]
    if database:
        collectors.append(DatabaseCollector(using=using, close_connection=True, quiet=True))
    added: list[Any] = []
    try:
        for collector in collectors:
            registry.register(collector)
            added.append(collector)
        server, thread = start_http_server(port, addr=address, registry=registry)
    except BaseException:
        for collector in added:
            registry.unregister(collector)
        raise
    return Exporter(server, thread, registry, added)
