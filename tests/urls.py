from __future__ import annotations

from django.contrib import admin
from django.urls import path

from django_pgjobs.metrics.views import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("pgjobs/metrics", metrics_view),
]
