"""The quick start: ``python3 example_project/demo.py`` on a machine with only Python >= 3.11.

1. Outside ``<repo>/.venv`` (standard library only up to here): create it, ``pip install -e
   '<repo>[embedded]'`` into it, and re-run this file with its Python.
2. Get a database: ``DATABASE_URL`` if set, else start an embedded PostgreSQL server in
   ``example_project/.pgdata``. This process starts it once and exports ``DATABASE_URL``, so the
   children below reuse it; it stops when this process exits.
3. Migrate, create the superuser admin/admin if missing, seed demo data and jobs.
4. Run ``pgjobs_worker`` and ``runserver`` as children until Ctrl-C or SIGTERM, then stop both.

``--check`` (CI) does 1-3, drains the queue with ``pgjobs_worker --burst``, prints ``pgjobs
status``, verifies what the jobs did and exits non-zero if anything is wrong.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from shop.seeding import DemoSeed

PROJECT = Path(__file__).resolve().parent
REPO = PROJECT.parent
VENV = REPO / ".venv"
MANAGE = PROJECT / "manage.py"
PGDATA = PROJECT / ".pgdata"
# Written into the venv after a successful install; a changed pyproject.toml reinstalls.
INSTALL_STAMP = VENV / ".pgjobs-example-installed"
# Set before re-executing in the venv, to fail loudly instead of looping if that did not work.
REEXEC_MARK = "PGJOBS_DEMO_REEXEC"


class Shutdown(Exception):
    """Raised in the main thread by SIGTERM/SIGHUP, as KeyboardInterrupt is by SIGINT."""


class CheckFailed(Exception):
    pass


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--check",
        "--no-server",
        action="store_true",
        help="Set up, seed, run the worker in burst mode, verify the results and exit (for CI).",
    )
    parser.add_argument("--port", type=int, default=8000, help="runserver port (default 8000).")
    parser.add_argument(
        "--no-venv",
        action="store_true",
        help="Use the current Python as is (django-pgjobs[embedded] already installed).",
    )
    return parser.parse_args(argv)


# -- 1. the virtual environment (standard library only) -----------------------------------------


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def in_project_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def run_setup_step(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            f"demo: `{' '.join(command)}` failed ({exc}). Fix the cause shown above; if {VENV} "
            "is half-built, delete it and run this again."
        ) from None


def ensure_installed(python: Path) -> None:
    wanted = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    if INSTALL_STAMP.exists() and INSTALL_STAMP.read_text().strip() == wanted:
        return
    say(f"installing django-pgjobs[embedded,tasks] (editable) into {VENV}; this takes a minute ...")
    run_setup_step(
        [str(python), "-m", "pip", "install", "--quiet", "-e", f"{REPO}[embedded,tasks]"]
    )
    INSTALL_STAMP.write_text(wanted + "\n")


def enter_venv(argv: list[str]) -> NoReturn:
    python = venv_python()
    if os.environ.get(REEXEC_MARK):
        raise SystemExit(
            f"demo: re-running with {python} did not land in {VENV}; delete it and retry."
        )
    if not python.exists():
        say(f"creating a virtual environment in {VENV} ...")
        run_setup_step([sys.executable, "-m", "venv", str(VENV)])
    ensure_installed(python)
    os.environ[REEXEC_MARK] = "1"
    command = [str(python), str(Path(__file__).resolve()), *argv]
    if sys.platform == "win32":
        # execv on Windows starts a new process and returns to the shell early; wait instead.
        raise SystemExit(subprocess.call(command))
    os.execv(command[0], command)  # noqa: S606 - replaces this process; no shell involved


# -- 2 and 3. database, migrations, demo data ---------------------------------------------------


def start_django() -> bool:
    """Start the embedded server unless DATABASE_URL is set (returns whether it did), then set
    Django up."""
    embedded = not os.environ.get("DATABASE_URL")
    if not embedded:
        say("using the database in DATABASE_URL")
    else:
        say(f"starting an embedded PostgreSQL server in {PGDATA} (the first run takes a while) ...")
    sys.path.insert(0, str(PROJECT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django_pgjobs.contrib.embedded import database_url

    # Exports DATABASE_URL: the settings, and every child started below, use this server.
    database_url(PGDATA)

    import django

    django.setup()
    return embedded


def prepare_database() -> DemoSeed:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from shop.seeding import seed_demo

    say("applying migrations ...")
    call_command("migrate", interactive=False, verbosity=0)
    users = get_user_model()
    if not users.objects.filter(username="admin").exists():
        users.objects.create_superuser("admin", "admin@example.com", "admin")
        say("created the superuser admin / admin (a local demo: never do this in production)")
    seed = seed_demo()
    say("seeded demo data:\n  " + seed.summary().replace("\n", "\n  "))
    return seed


def manage(*args: str) -> list[str]:
    return [sys.executable, str(MANAGE), *args]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


# -- --check ------------------------------------------------------------------------------------


def run_check(seed: DemoSeed) -> None:
    from django.core.management import call_command

    signup_email = check_web()
    say("running `manage.py pgjobs_worker --burst` (the import takes a few seconds) ...")
    worker = subprocess.run(manage("pgjobs_worker", "--burst"), env=child_env(), check=False)
    if worker.returncode != 0:
        raise CheckFailed(f"pgjobs_worker --burst exited with {worker.returncode}")
    say("`manage.py pgjobs status`:")
    call_command("pgjobs", "status")
    check_outcomes(seed, signup_email)


def expect(condition: bool, what: str) -> None:
    say(f"{'ok  ' if condition else 'FAIL'} {what}")
    if not condition:
        raise CheckFailed(what)


def check_web() -> str:
    """Drive the home page and the admin in-process; returns the email the form signed up."""
    import secrets

    from django.test import Client

    # ALLOWED_HOSTS has no "testserver", the test client's default host.
    client = Client(SERVER_NAME="localhost")
    home = client.get("/")
    expect(home.status_code == 200 and b"Example shop" in home.content, "GET / renders")
    email = f"grace+{secrets.token_hex(3)}@example.com"
    signup = client.post("/", {"name": "Grace Hopper", "email": email})
    expect(signup.status_code == 302, f"POST / signs up {email}")
    login = client.get("/admin/login/")
    expect(login.status_code == 200, "GET /admin/login/ renders")
    return email


def check_outcomes(seed: DemoSeed, signup_email: str) -> None:
    from django_pgjobs import get_job
    from django_pgjobs.exceptions import JobNotFound
    from django_pgjobs.models import FailedJob, Job, JobStatus
    from shop.models import Customer

    def state(job: Job | FailedJob) -> str:
        error = (job.error or "").split("\n", 1)[0]
        status = getattr(job, "status", "dead")
        return f"[{status}, attempt {job.attempt}/{job.max_attempts}{', ' if error else ''}{error}]"

    welcome = get_job(seed.welcome_job)
    seed.customer.refresh_from_db()
    expect(
        welcome.status == JobStatus.COMPLETED and seed.customer.welcomed_at is not None,
        f"send-welcome-email {welcome.id} completed and welcomed the customer {state(welcome)}",
    )
    signed_up = Customer.objects.get(email=signup_email)
    expect(signed_up.welcomed_at is not None, "the customer signed up via the form was welcomed")
    try:
        get_job(seed.rolled_back_job)
        rolled_back_is_gone = False
    except JobNotFound:
        rolled_back_is_gone = True
    expect(rolled_back_is_gone, "the job enqueued in a rolled-back transaction does not exist")
    imported = get_job(seed.import_job)
    seed.batch.refresh_from_db()
    expect(
        imported.status == JobStatus.COMPLETED
        and imported.progress == 100
        and seed.batch.imported == seed.batch.rows,
        f"import-rows {imported.id} completed at {imported.progress}% with "
        f"{seed.batch.imported}/{seed.batch.rows} rows {state(imported)}",
    )
    from django_pgjobs import get_workflow
    from django_pgjobs.workflows import list_workflow_steps
    from shop.models import Charge

    flow = get_workflow(seed.checkout_workflow)
    seed.order.refresh_from_db()
    steps = [s.name.rsplit(".", 1)[-1] for s in list_workflow_steps(flow.workflow_id)]
    expect(
        flow.status == "completed"
        and seed.order.status == "receipted"
        and Charge.objects.filter(idempotency_key=f"order-{seed.order.pk}").count() == 1,
        f"shop.checkout {flow.workflow_id} completed: order {seed.order.pk} charged once "
        f"({seed.order.charge_id}) and receipted [{flow.status}; steps {', '.join(steps)}]",
    )
    # The import outlasts the sync's 1 s + 2 s of backoff, so the burst normally sees all three
    # attempts; on a slow machine it may exit while the last retry is still scheduled.
    dead = FailedJob.objects.filter(id=seed.sync_job).first()
    if dead is not None:
        expect(
            dead.attempt == 3 and "CrmUnavailable" in (dead.error or ""),
            f"sync-crm {dead.id} failed 3 times and is in the dead letters {state(dead)}",
        )
    else:
        sync = get_job(seed.sync_job)
        expect(
            sync.is_awaiting_retry and "CrmUnavailable" in (sync.error or ""),
            f"sync-crm {sync.id} failed and awaits its retry {state(sync)}",
        )
    from shop.tasks import tally_signups

    tally = tally_signups.get_result(seed.tally_task)
    returned = tally.return_value if tally.status == "SUCCESSFUL" else None
    expect(
        returned is not None and returned["signups"] >= 1,
        f"the Django task shop.tasks.tally_signups {tally.id} ran: {tally.status}, "
        f"returned {returned}",
    )


# -- 4. worker and web server -------------------------------------------------------------------


def start_child(name: str, args: list[str]) -> subprocess.Popen[bytes]:
    say(f"starting {name}: {' '.join(args[1:])}")
    if sys.platform == "win32":
        return subprocess.Popen(args, env=child_env())
    # Its own process group: Ctrl-C reaches only this process, which then stops each child
    # exactly once (a second signal makes the worker exit without its graceful drain).
    return subprocess.Popen(args, env=child_env(), process_group=0)


def wait_for_port(port: int, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)


def stop_children(children: dict[str, subprocess.Popen[bytes]], grace: float) -> None:
    """SIGINT each child once (both drain on it), wait up to ``grace``, then kill stragglers.
    Another Ctrl-C while waiting kills them at once."""
    for child in children.values():
        if child.poll() is None:
            if sys.platform == "win32":
                child.terminate()
            else:
                child.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    try:
        for name, child in children.items():
            try:
                child.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop within {grace:.0f}s; killing it")
                child.kill()
                child.wait()
    except (KeyboardInterrupt, Shutdown):
        say("interrupted again: killing the children now")
        for child in children.values():
            child.kill()
            child.wait()


def print_instructions(port: int, use_venv: bool) -> None:
    activate = f"    cd {REPO} && . .venv/bin/activate\n" if use_venv else f"    cd {REPO}\n"
    print(
        f"""
  django-pgjobs example is running
    Shop:   http://127.0.0.1:{port}/   (sign up a customer: its welcome email is a job)
    Admin:  http://127.0.0.1:{port}/admin/   (login admin / admin)

  Look at the queue from another terminal (it reuses this database):
{activate}    python example_project/manage.py pgjobs status
    python example_project/manage.py pgjobs list
    python example_project/manage.py pgjobs list --status dead
    python example_project/manage.py pgjobs retry <dead job id>
    python example_project/manage.py pgjobs schedules   (shop-stats fires every minute)
    python example_project/manage.py seed_demo

  Press Ctrl-C to stop the worker, the web server and the embedded database.
""",
        flush=True,
    )


def run_servers(port: int, *, use_venv: bool, embedded: bool) -> int:
    from django.db import connections

    from django_pgjobs.conf import conf

    # The children open their own connections; do not keep ours open beside them.
    connections.close_all()
    children = {
        "worker": start_child("worker", manage("pgjobs_worker")),
        "runserver": start_child(
            "runserver", manage("runserver", f"127.0.0.1:{port}", "--noreload")
        ),
    }
    exit_code = 0
    try:
        wait_for_port(port, children["runserver"])
        print_instructions(port, use_venv)
        while exit_code == 0:
            for name, child in children.items():
                if child.poll() is not None:
                    hint = f" (is port {port} in use? try --port)" if name == "runserver" else ""
                    say(f"{name} exited unexpectedly with code {child.returncode}{hint}")
                    exit_code = 1
            time.sleep(0.5)
    except (KeyboardInterrupt, Shutdown):
        say("stopping the worker and the web server ...")
    finally:
        # Running jobs get the worker's SHUTDOWN_GRACE; then a few seconds to deregister.
        stop_children(children, grace=conf.SHUTDOWN_GRACE + 5)
    say("stopped" + ("; the embedded database stops as this process exits" if embedded else ""))
    return exit_code


# -- main ---------------------------------------------------------------------------------------


def on_stop_signal(signum: int, frame: FrameType | None) -> None:
    raise Shutdown(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):  # noqa: UP036 - users run this with any python3
        raise SystemExit("demo: django-pgjobs needs Python 3.11 or newer.")
    args = parse_args(argv)
    if not args.no_venv:
        if not in_project_venv():
            enter_venv(argv)
        ensure_installed(Path(sys.executable))
    os.environ.pop(REEXEC_MARK, None)
    # Turn SIGTERM/SIGHUP into an exception so `finally` blocks and atexit (which stops the
    # embedded server) run, as they do for Ctrl-C. SIGINT is set explicitly because a shell
    # starting us in the background (`demo.py &` in a script) ignores it, and Python then
    # neither raises KeyboardInterrupt nor lets the children (runserver) react to it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_stop_signal)
    if sys.platform != "win32":
        signal.signal(signal.SIGHUP, on_stop_signal)
    try:
        embedded = start_django()
        seed = prepare_database()
        if args.check:
            run_check(seed)
            say("check passed")
            return 0
        return run_servers(args.port, use_venv=not args.no_venv, embedded=embedded)
    except CheckFailed as exc:
        say(f"check FAILED: {exc}")
        return 1
    except (KeyboardInterrupt, Shutdown):
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
