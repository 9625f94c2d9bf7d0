"""Each worker writes the job names it has handlers for (``pgjobs_workers.handlers``) when it
registers, so "why is this job not running?" can say that no live worker has its handler, or
runs its workflow's code version. NULL for rows written before: not known.

Adding a nullable column without a default rewrites nothing; the table has a row per worker."""

from django.db import migrations

import django_pgjobs.models.fields


class Migration(migrations.Migration):
    dependencies = [
        ("pgjobs", "0018_sql_enqueue_partition_key_and_timeout"),
    ]

    operations = [
        migrations.AddField(
            model_name="worker",
            name="handlers",
            field=django_pgjobs.models.fields.StoredJSONField(
                blank=True, editable=False, null=True
            ),
        ),
    ]
