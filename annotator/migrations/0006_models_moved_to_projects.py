"""The ground models now live in projects (0001): forget them here, keep their tables and rows."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('activelearn', '0007_models_moved_to_projects'),
        ('annotator', '0005_issue8_attributes_balance_ensembles'),
        ('detector', '0002_models_moved_to_projects'),
        ('embeddings', '0002_models_moved_to_projects'),
    ]

    operations = [
        # State only: the tables keep their names and their rows; no SQL runs.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name='attribute',
                    name='project',
                ),
                migrations.RemoveField(
                    model_name='image',
                    name='project',
                ),
                migrations.RemoveField(
                    model_name='job',
                    name='project',
                ),
                migrations.RemoveField(
                    model_name='membership',
                    name='project',
                ),
                migrations.RemoveField(
                    model_name='membership',
                    name='user',
                ),
                migrations.RemoveField(
                    model_name='project',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='species',
                    name='project',
                ),
                migrations.DeleteModel(
                    name='QueuedTask',
                ),
                migrations.DeleteModel(
                    name='Attribute',
                ),
                migrations.DeleteModel(
                    name='Image',
                ),
                migrations.DeleteModel(
                    name='Job',
                ),
                migrations.DeleteModel(
                    name='Membership',
                ),
                migrations.DeleteModel(
                    name='Project',
                ),
                migrations.DeleteModel(
                    name='Species',
                ),
            ],
            database_operations=[],
        ),
    ]
