from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from django_pgjobs.jobs import list_dead_letter_jobs, list_jobs
from shop.forms import SignupForm
from shop.models import Customer, ImportBatch
from shop.signup import sign_up


@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        customer, job_id = sign_up(**form.cleaned_data)
        messages.success(
            request, f"Signed up {customer}; its welcome email is job {job_id} (same transaction)."
        )
        return redirect("home")
    context = {
        "form": form,
        "customers": Customer.objects.all()[:5],
        "batches": ImportBatch.objects.all()[:3],
        "jobs": list_jobs(limit=10),
        "dead_letters": list_dead_letter_jobs(limit=5),
    }
    return render(request, "shop/home.html", context)
