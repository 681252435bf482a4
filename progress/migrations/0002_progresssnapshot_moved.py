"""ProgressSnapshot now belongs to ``executions`` (its migration 0003): state only.

The table keeps its name and its rows; nothing in the database changes.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("progress", "0001_initial"),
        ("executions", "0003_progresssnapshot"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[migrations.DeleteModel(name="ProgressSnapshot")],
        ),
    ]
