"""Dead letters are called "dead letters" everywhere, the admin included (no schema change)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("pgjobs", "0009_sql_enqueue_default_attempts"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="failedjob",
            options={
                "ordering": ("-failed_at",),
                "verbose_name": "dead letter",
                "verbose_name_plural": "dead letters",
            },
        ),
    ]
