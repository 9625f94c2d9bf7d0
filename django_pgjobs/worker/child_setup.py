"""Imported by the forkserver of ``--pool process`` (and by nothing else): Django is set up once
there, so each handler's child forks ready instead of loading every app anew.

The forkserver is a fresh interpreter with no threads, so forking it is safe. Anything the apps
opened while loading (a query at import time) is closed before the first fork, so no child
shares a connection's socket with another.
"""

from __future__ import annotations

import django
from django.db import connections

django.setup()
connections.close_all()
