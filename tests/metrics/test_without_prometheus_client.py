"""Without prometheus_client (the metrics extra not installed): django_pgjobs imports and runs;
the command and the view say how to install it; the worker's flag refuses to start."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from django_pgjobs import enqueue, get_job
from django_pgjobs.metrics import MISSING
from django_pgjobs.models import Worker as WorkerRow
from tests.helpers import ROOT


@pytest.fixture
def no_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import prometheus_client`` raises ImportError, as when it is not installed."""
    for name in [n for n in sys.modules if n.split(".")[0] == "prometheus_client"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)


@pytest.mark.django_db
@pytest.mark.usefixtures("no_prometheus_client")
def test_the_command_says_how_to_install_it() -> None:
    with pytest.raises(CommandError, match=r"pip install django-pgjobs\[metrics\]"):
        call_command("pgjobs", "metrics")


@pytest.mark.django_db
@pytest.mark.usefixtures("no_prometheus_client")
def test_the_view_says_how_to_install_it_to_staff(client: Client) -> None:
    assert client.get("/pgjobs/metrics").status_code == 403  # refused before anything else
    client.force_login(User.objects.create_superuser("ops"))  # staff, with every view permission
    response = client.get("/pgjobs/metrics")
    assert response.status_code == 501
    assert response.content.decode() == MISSING


@pytest.mark.django_db
@pytest.mark.usefixtures("no_prometheus_client")
def test_the_worker_flag_refuses_to_start() -> None:
    job_id = enqueue("test.record")
    with pytest.raises(CommandError, match=r"pip install django-pgjobs\[metrics\]"):
        call_command("pgjobs_worker", "--metrics-port", "0", "--burst")
    # Refused before anything ran: no worker registered, the job still waiting.
    assert not WorkerRow.objects.exists()
    assert get_job(job_id).status == "pending"


def test_importing_the_package_and_its_worker_never_needs_it() -> None:
    """A fresh interpreter where prometheus_client cannot be imported loads Django, the app,
    the worker, the URLs that name the view, and runs the system checks."""
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "import django; django.setup()\n"
        "import django_pgjobs, django_pgjobs.worker.loop, django_pgjobs.metrics.views\n"
        "import django_pgjobs.management.commands.pgjobs\n"
        "import django_pgjobs.management.commands.pgjobs_worker\n"
        "import tests.urls\n"
        "from django.core import checks; checks.run_checks()\n"
        "assert not [m for m in sys.modules if m.startswith('prometheus_client.')]\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        check=False,
    )
    assert done.stdout.strip() == "ok", done.stderr
