"""A job the rescue gave back uncounted (claimed ahead, never known to start) is marked, so its
later claims count at once (see queries.rescue)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pgjobs", "0009_sql_enqueue_default_attempts"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="rescued_unstarted",
            field=models.BooleanField(db_default=models.Value(False)),
        ),
    ]
