"""Reading a scrape the way Prometheus does: with prometheus_client's own parser."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command
from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """The samples of one exposition: ``scrape("pgjobs_jobs", queue="mail", state="due")`` is a
    sample's value (None when absent); ``scrape.by("pgjobs_jobs", "queue")`` maps one label's
    values to the samples' (a test filters the rest with keyword arguments)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples = [sample for family in self.families for sample in family.samples]

    def __call__(self, name: str, **labels: str) -> float | None:
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) <= 1, f"{name}{labels} appears {len(found)} times"
        return found[0] if found else None

    def by(self, name: str, label: str, **labels: str) -> dict[str, float]:
        return {
            s.labels[label]: s.value
            for s in self.samples
            if s.name == name and labels.items() <= s.labels.items()
        }

    def names(self) -> set[str]:
        return {family.name for family in self.families}


def scrape_command(*args: str) -> Scrape:
    """``manage.py pgjobs [args] metrics``, parsed."""
    out = StringIO()
    call_command("pgjobs", *args, "metrics", stdout=out)
    return Scrape(out.getvalue())
