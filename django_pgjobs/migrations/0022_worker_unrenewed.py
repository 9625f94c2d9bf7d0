"""Each heartbeat lists the attempts whose rows it could not renew because another transaction
held them (``pgjobs_workers.unrenewed``), so the rescue never takes a live worker's job because
an application transaction held its row past the lease: that job ran twice.

Adding a column with a constant default rewrites nothing; the table has a row per worker."""

from django.db import migrations

import django_pgjobs.models.fields
import django_pgjobs.models.jobs


class Migration(migrations.Migration):
    dependencies = [
        ("pgjobs", "0021_flow_counts"),
    ]

    operations = [
        migrations.AddField(
            model_name="worker",
            name="unrenewed",
            field=django_pgjobs.models.fields.StoredJSONField(
                db_default=django_pgjobs.models.jobs.empty_array(), editable=False
            ),
        ),
    ]
