"""The worker's metrics port: prometheus_client's HTTP server serving the worker's own metrics
and the database gauges. In this process first (what it serves, what closing it undoes, a port
already taken, a database that is down), then a real ``pgjobs_worker --metrics-port`` process
that drains jobs and is scraped over HTTP."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command
from prometheus_client import CollectorRegistry

from django_pgjobs import enqueue, get_job
from django_pgjobs.metrics.collector import DatabaseCollector
from django_pgjobs.metrics.exporter import Exporter, start_exporter
from django_pgjobs.metrics.worker import WorkerMetrics
from django_pgjobs.models import FailedJob
from tests.helpers import start_worker, stop, wait_for
from tests.metrics.scrapes import Scrape

pytestmark = pytest.mark.django_db(transaction=True)


def metrics_url(proc: subprocess.Popen[bytes]) -> str:
    """The URL a worker started with --metrics-port 0 gives in its start line (even at -v 0)."""
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    found = re.search(r" metrics=(http://127\.0\.0\.1:\d+/metrics)$", line.strip())
    assert found, line
    return found.group(1)


def fetch(url: str) -> Scrape:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own http URL
        return Scrape(response.read().decode())


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def exporter(registry: CollectorRegistry) -> Iterator[Exporter]:
    started = start_exporter(WorkerMetrics(), port=0, registry=registry)
    yield started
    started.close()


def test_the_port_serves_the_workers_metrics_and_the_database_gauges(exporter: Exporter) -> None:
    enqueue("test.record", queue="mail")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/metrics", exporter.url)
    got = fetch(exporter.url)
    assert got("pgjobs_jobs", queue="mail", state="due") == 1
    assert "pgjobs_job_runs" in got.names() and "pgjobs_worker_slots" in got.names()


@pytest.mark.django_db(transaction=True, databases=["default", "unreachable"])
def test_the_worker_scope_serves_the_process_metrics_without_reading_the_database(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    # A database that cannot be reached: a read would be logged (and leave the gauges out).
    started = start_exporter(
        WorkerMetrics(), port=0, registry=registry, using="unreachable", database=False
    )
    try:
        got = fetch(started.url)
    finally:
        started.close()
    assert "pgjobs_job_runs" in got.names() and "pgjobs_worker_slots" in got.names()
    assert not {"pgjobs_jobs", "pgjobs_metrics_read_timestamp_seconds"} & got.names()
    assert "Reading the metrics' database figures failed" not in caplog.text
    assert list(registry.collect()) == []  # closing unregistered what it added


def test_closing_stops_the_server_and_unregisters(registry: CollectorRegistry) -> None:
    started = start_exporter(WorkerMetrics(), port=0, registry=registry)
    url = started.url
    started.close()
    with pytest.raises(OSError, match="Connection refused"):
        fetch(url)
    # Nothing left behind: the same metrics can be served again.
    start_exporter(WorkerMetrics(), port=0, registry=registry).close()


def test_a_port_in_use_raises_and_registers_nothing(registry: CollectorRegistry) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            start_exporter(WorkerMetrics(), port=port, registry=registry)
    assert list(registry.collect()) == []


def test_the_worker_command_says_when_it_cannot_listen() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"Cannot serve metrics on 127.0.0.1 port {port}"):
            call_command("pgjobs_worker", "--metrics-port", str(port), "--burst")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics-port", "70000"], "must be a port number"),
        (["--metrics-port", "-1"], "must be a port number"),
        (["--metrics-address", "0.0.0.0"], "--metrics-address needs --metrics-port"),  # noqa: S104
        (["--metrics-scope", "worker"], "--metrics-scope needs --metrics-port"),
        (["--metrics-port", "0", "--metrics-scope", "database"], "invalid choice: 'database'"),
    ],
)
def test_bad_metrics_options_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("pgjobs_worker", *args, "--burst")


@pytest.mark.django_db(transaction=True, databases=["default", "unreachable"])
def test_a_database_that_is_down_leaves_the_gauges_out_of_a_workers_scrape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    quiet = DatabaseCollector(using="unreachable", quiet=True, close_connection=True)
    assert list(quiet.collect()) == []
    assert "Reading the metrics' database figures failed" in caplog.text
    # Not tried again within the window: the next scrapes are answered at once.
    caplog.clear()
    assert list(quiet.collect()) == []
    assert caplog.text == ""
    # The command and the view fail instead: Prometheus marks the target down.
    with pytest.raises(Exception, match="connection"):
        list(DatabaseCollector(using="unreachable").collect())


@pytest.mark.slow
def test_a_worker_process_serves_its_counters_and_histograms_over_http() -> None:
    ok = [enqueue("test.record", {"label": f"m{i}"}, queue="mail") for i in range(5)]
    failing = enqueue("test.fail", queue="mail")  # max_attempts=2: retried, then buried
    proc = start_worker(
        "--metrics-port", "0", "--concurrency", "2", "--queues", "mail", "-v", "0",
        settings={"RETRY_DELAY": 0, "METRICS_CACHE_SECONDS": 0}, pipes=True,
    )  # fmt: skip
    try:
        url = metrics_url(proc)

        def all_written() -> Scrape | None:
            got = fetch(url)
            runs = got.by("pgjobs_job_runs_total", "outcome", queue="mail")
            return got if sum(runs.values()) == 7 else None

        got = wait_for(all_written, timeout=60, what="seven outcomes in the worker's metrics")
        assert got is not None
        assert got.by("pgjobs_job_runs_total", "outcome", job_name="test.record") == {
            "completed": 5
        }
        assert got.by("pgjobs_job_runs_total", "outcome", job_name="test.fail") == {
            "retried": 1, "buried": 1,
        }  # fmt: skip
        assert got("pgjobs_job_failures_total", queue="mail", job_name="test.fail") == 2
        assert got("pgjobs_job_retries_total", queue="mail", job_name="test.fail") == 1
        assert got("pgjobs_job_duration_seconds_count", job_name="test.record") == 5
        assert got("pgjobs_job_start_latency_seconds_count", queue="mail") == 7
        assert got("pgjobs_worker_slots") == 2
        # The database gauges, read for this scrape (no cache window in this worker).
        assert got.by("pgjobs_jobs", "state", queue="mail") == {
            "due": 0, "scheduled": 0, "running": 0,
        }  # fmt: skip
        assert got("pgjobs_dead_letters", queue="mail") == 1
        assert got("pgjobs_live_workers") == 1
        # The default registry's own: this process's CPU time.
        assert "process_cpu_seconds" in got.names()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    except subprocess.TimeoutExpired:
        raise AssertionError("the worker did not stop") from None
    finally:
        stop(proc)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert all(get_job(job_id).status == "completed" for job_id in ok)
    assert FailedJob.objects.filter(id=failing).exists()
    with pytest.raises(OSError, match="Connection refused"):
        fetch(url)


@pytest.mark.slow
def test_a_worker_with_the_worker_scope_serves_its_own_metrics_only() -> None:
    enqueue("test.record", queue="mail")
    proc = start_worker(
        "--metrics-port", "0", "--metrics-scope", "worker", "--queues", "mail", "-v", "0",
        settings={"METRICS_CACHE_SECONDS": 0}, pipes=True,
    )  # fmt: skip
    try:
        url = metrics_url(proc)

        def ran() -> Scrape | None:
            got = fetch(url)
            return got if got("pgjobs_job_runs_total", queue="mail", job_name="test.record",
                              outcome="completed") == 1 else None  # fmt: skip

        got = wait_for(ran, timeout=60, what="the job's outcome in the worker's metrics")
        assert got is not None
        assert "process_cpu_seconds" in got.names()
        assert not {"pgjobs_jobs", "pgjobs_live_workers", "pgjobs_table_live_rows"} & got.names()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        stop(proc)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
