"""Every JSON column reads back as ``StoredJSONField``: a value PostgreSQL stored but Python's
``json`` cannot decode (``1e5000``, deep nesting) loads as a stand-in instead of raising. The
columns stay ``jsonb``; no SQL runs.
"""

from __future__ import annotations

from django.db import migrations, models

import django_pgjobs.models.fields


class Migration(migrations.Migration):
    dependencies = [
        ("pgjobs", "0010_dead_letter_names"),
    ]

    operations = [
        migrations.AlterField(
            model_name="failedjob",
            name="payload",
            field=django_pgjobs.models.fields.StoredJSONField(
                db_default=models.Value({}, output_field=models.JSONField())
            ),
        ),
        migrations.AlterField(
            model_name="job",
            name="payload",
            field=django_pgjobs.models.fields.StoredJSONField(
                db_default=models.Value({}, output_field=models.JSONField())
            ),
        ),
        migrations.AlterField(
            model_name="schedule",
            name="payload",
            field=django_pgjobs.models.fields.StoredJSONField(
                blank=True,
                db_default=models.Value({}, output_field=models.JSONField()),
                default=dict,
            ),
        ),
        migrations.AlterField(
            model_name="worker",
            name="queues",
            field=django_pgjobs.models.fields.StoredJSONField(
                db_default=models.Value([], output_field=models.JSONField())
            ),
        ),
        migrations.AlterField(
            model_name="workflowevent",
            name="value",
            field=django_pgjobs.models.fields.StoredJSONField(null=True),
        ),
        migrations.AlterField(
            model_name="workflowexecution",
            name="error",
            field=django_pgjobs.models.fields.StoredJSONField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="workflowexecution",
            name="input",
            field=django_pgjobs.models.fields.StoredJSONField(
                db_default=models.Value({}, output_field=models.JSONField())
            ),
        ),
        migrations.AlterField(
            model_name="workflowexecution",
            name="output",
            field=django_pgjobs.models.fields.StoredJSONField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="workflowmessage",
            name="message",
            field=django_pgjobs.models.fields.StoredJSONField(null=True),
        ),
        migrations.AlterField(
            model_name="workflowstep",
            name="error",
            field=django_pgjobs.models.fields.StoredJSONField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="workflowstep",
            name="output",
            field=django_pgjobs.models.fields.StoredJSONField(blank=True, null=True),
        ),
    ]
