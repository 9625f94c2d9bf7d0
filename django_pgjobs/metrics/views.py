"""The metrics view: the database gauges in Prometheus' text format, for staff users allowed to
see what they show or a scraper holding ``PGJOBS["METRICS_TOKEN"]``; never open to anyone else.

Add it to your URLs (``path("pgjobs/metrics", metrics_view)``) and point Prometheus at it with
``authorization: {credentials: <the token>}`` (a bearer token). Importing this module needs no
``prometheus_client``: a project's URLs load whether or not the extra is installed, and the view
says how to install it.

- ``Authorization: Bearer <token>`` matching the setting (compared in constant time): 200;
  any other token, an empty one, or one while the setting is unset (None or empty): 401.
- No token: 200 for an active staff user with the view permission of each thing the gauges
  show (``PERMISSIONS``: jobs, queues, schedules, workflows, as the admin gates each; superusers
  have them all), by Django's authentication middleware. Otherwise 401 when a token is
  configured and no one is signed in (``WWW-Authenticate: Bearer`` tells a scraper what it
  lacks); 403 with what is missing otherwise (a signed-in user learns which permission).
- GET and HEAD only, anything else 405: it changes nothing, so it is exempt from CSRF (a POST
  would otherwise be refused by the middleware with a 403 that says nothing about the method).
- Outside ``ATOMIC_REQUESTS``' transaction, of every database: inside one the read would join
  the request's transaction, without the read-only snapshot and statement timeout it sets for
  its own. Every alias, not only ``default``: the read uses ``PGJOBS["DATABASE"]``, a setting
  read live, and the view reads nothing else.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from django_pgjobs.conf import conf
from django_pgjobs.metrics import MISSING

_BEARER = "bearer"
# What the staff need besides is_staff: the admin's view permission of each thing the gauges
# show. view_job: jobs, dead letters, workers and health (what the dashboard shows with it);
# the others: queue limits, schedules, workflow counts, each behind its own in the admin.
PERMISSIONS = (
    "pgjobs.view_job", "pgjobs.view_queue", "pgjobs.view_schedule",
    "pgjobs.view_workflowexecution",
)  # fmt: skip
# Around a header's value HTTP allows only spaces and tabs (RFC 9110 5.5); anything else is part
# of the token, so it must match.
_OWS = " \t"


@csrf_exempt
@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET or HEAD: the database gauges, text format 0.0.4 or OpenMetrics by the Accept header."""
    refused = _refused(request)
    if refused is not None:
        return refused
    try:
        from prometheus_client.exposition import choose_encoder

        from django_pgjobs.metrics.collector import database_registry
    except ImportError:
        return HttpResponse(MISSING, status=501, content_type="text/plain; charset=utf-8")
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(database_registry()), content_type=content_type)


# Bare, non_atomic_requests exempts only "default"; the read's alias may be any of them.
for _alias in settings.DATABASES:
    transaction.non_atomic_requests(using=_alias)(metrics_view)  # marks the view in place


def _refused(request: HttpRequest) -> HttpResponse | None:
    """The response that refuses ``request``, or None if it may see the metrics."""
    scheme, _, given = request.headers.get("Authorization", "").strip(_OWS).partition(" ")
    if scheme.lower() == _BEARER:
        expected = conf.METRICS_TOKEN  # None when unset or empty: no token opens the view
        given = given.strip(_OWS)
        # compare_digest on bytes, as it takes any str the header holds, in time that does not
        # depend on where the two first differ. Only an ASCII token can match (pgjobs.E004
        # refuses others): under WSGI the header arrives decoded as latin-1. An empty token
        # never matches, whatever the setting says.
        if given and expected and hmac.compare_digest(given.encode(), expected.encode()):
            return None
        return _unauthorized("invalid_token")
    user = getattr(request, "user", None)  # None: no authentication middleware
    # A signed-in user is told what they lack (a browser has no token to offer); anyone else
    # is asked for the token when one is configured, else told what the view asks for.
    if user is None or not user.is_authenticated:
        if conf.METRICS_TOKEN is not None:
            return _unauthorized(None)
        reason = "Sign in to the admin as staff."
    elif user.is_active and user.is_staff:
        if user.has_perms(PERMISSIONS):
            return None
        missing = [perm for perm in PERMISSIONS if not user.has_perm(perm)]
        reason = f"Your account lacks the permission(s) {', '.join(missing)}."
    else:
        reason = "Your account is not an active staff account."
    return HttpResponse(
        f"{reason} The metrics are for staff with the permissions {', '.join(PERMISSIONS)}"
        " (superusers have them), or for a scraper holding PGJOBS['METRICS_TOKEN'].",
        status=403,
        content_type="text/plain; charset=utf-8",
    )


def _unauthorized(error: str | None) -> HttpResponse:
    response = HttpResponse("A valid bearer token is required.", status=401)
    response["Content-Type"] = "text/plain; charset=utf-8"
    response["WWW-Authenticate"] = "Bearer" + (f' error="{error}"' if error else "")
    return response
