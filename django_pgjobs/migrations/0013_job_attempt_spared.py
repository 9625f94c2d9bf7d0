"""A job one of whose attempts was not counted (claimed ahead and never started, or failed
because its database connection was lost) is marked: that is granted once per job, and its
later attempts always count (see queries.rescue and queries.outcomes.fail_job)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pgjobs", "0012_reserved_names_and_keys"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="attempt_spared",
            field=models.BooleanField(db_default=models.Value(False)),
        ),
    ]
