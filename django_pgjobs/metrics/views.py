"""The metrics view: the database gauges in Prometheus' text format, for staff users or a
scraper holding ``PGJOBS["METRICS_TOKEN"]``; never open to anyone else.

Add it to your URLs (``path("pgjobs/metrics", metrics_view)``) and point Prometheus at it with
``authorization: {credentials: <the token>}`` (a bearer token). Importing this module needs no
``prometheus_client``: a project's URLs load whether or not the extra is installed, and the view
says how to install it.

- ``Authorization: Bearer <token>`` matching the setting (compared in constant time): 200;
  any other token, or one while the setting is None: 401.
- No token: 200 for an active staff user (Django's authentication middleware); 401 when a token
  is configured (``WWW-Authenticate: Bearer`` tells a scraper what it lacks); 403 otherwise.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from django_pgjobs.conf import conf
from django_pgjobs.metrics import MISSING

_BEARER = "bearer "


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


def _refused(request: HttpRequest) -> HttpResponse | None:
    """The response that refuses ``request``, or None if it may see the metrics."""
    header = request.headers.get("Authorization", "")
    if header[: len(_BEARER)].lower() == _BEARER:
        expected = conf.METRICS_TOKEN
        given = header[len(_BEARER) :].strip()
        # compare_digest on bytes: any str (a non-ASCII token too), in time that does not
        # depend on where the two first differ.
        if expected is not None and hmac.compare_digest(given.encode(), expected.encode()):
            return None
        return _unauthorized("invalid_token")
    user = getattr(request, "user", None)  # None: no authentication middleware
    if user is not None and user.is_active and user.is_staff:
        return None
    if conf.METRICS_TOKEN is not None:
        return _unauthorized(None)
    return HttpResponse("Staff only.", status=403, content_type="text/plain; charset=utf-8")


def _unauthorized(error: str | None) -> HttpResponse:
    response = HttpResponse("A valid bearer token is required.", status=401)
    response["Content-Type"] = "text/plain; charset=utf-8"
    response["WWW-Authenticate"] = "Bearer" + (f' error="{error}"' if error else "")
    return response
