"""ProgressSnapshot moves from the ``progress`` app to the domain, state only.

The table (``progress_progresssnapshot``) and its rows stay where they are;
only Django's record of which app owns the model changes. ``progress``'s
migration 0002 removes it from that app's state.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("executions", "0002_webhookattempt"),
        # The table must exist: it is created by progress 0001.
        ("progress", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="ProgressSnapshot",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("seq", models.PositiveIntegerField()),
                        (
                            "type",
                            models.CharField(
                                choices=[
                                    ("started", "Started"),
                                    ("progress", "Progress"),
                                    ("completed", "Completed"),
                                    ("failed", "Failed"),
                                    ("cancelled", "Cancelled"),
                                ],
                                max_length=16,
                            ),
                        ),
                        ("status", models.CharField(max_length=16)),
                        ("progress", models.JSONField(blank=True, null=True)),
                        ("payload", models.JSONField(blank=True, null=True)),
                        ("timestamp", models.DateTimeField()),
                        ("frame", models.TextField()),
                        (
                            "execution",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="events",
                                to="executions.execution",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "progress_progresssnapshot",
                        "ordering": ["execution", "seq"],
                        "constraints": [models.UniqueConstraint(fields=("execution", "seq"), name="snapshot_unique_seq")],
                    },
                ),
            ],
        ),
    ]
