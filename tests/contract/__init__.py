"""Django's own tests for task backends, run against PgJobsBackend with a real worker.

- :mod:`.source` fetches ``tests/tasks/`` from Django's source distribution (pip, cached);
- :mod:`.rewrite` lists every change made to those tests and every test left out, with reasons;
- :mod:`.backends` holds the backends the tests are pointed at: PgJobsBackend, whose enqueue()
  lets a worker run the task for ImmediateBackend's scenarios;
- :mod:`.loader` imports the rewritten tests; ``test_django_contract.py`` is where pytest finds
  them, and skips them (a failure when ``PGJOBS_REQUIRE_DJANGO_CONTRACT=1``, as in CI) when they
  cannot be fetched.
"""
