"""Each worker process makes a random instance token and writes it to its row: the heartbeat and
the deregistration touch only the row of their own instance, and a worker id is taken over only
from a silent holder. Host name and pid could not tell two processes apart (two containers with
one ``hostname:`` and both pid 1 took over each other's live id)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pgjobs", "0014_times_in_range"),
    ]

    operations = [
        migrations.AddField(
            model_name="worker",
            name="instance_token",
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
    ]
