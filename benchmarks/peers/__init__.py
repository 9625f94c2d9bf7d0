"""The peers in run.py's comparison: pgqueuer and procrastinate (jobs), DBOS (workflows).

Each peer's module runs as its own process with the peers' interpreter (``--peers-python``) and
only its own package, psycopg and the standard library: nothing here imports Django or
django_pgjobs, so the peers can live in a virtualenv of their own. ``orchestra.py`` is the side
run.py imports (it makes each peer's scratch database and collects the figures).
"""
