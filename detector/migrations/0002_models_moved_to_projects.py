"""Point the foreign keys at the models that moved from annotator to projects (same tables)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('detector', '0001_initial'),
        ('projects', '0001_initial'),
    ]

    operations = [
        # State only: the tables keep their names and their rows; no SQL runs.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='crop',
                    name='image',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='crops', to='projects.image'),
                ),
                migrations.AlterField(
                    model_name='crop',
                    name='project',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='crops', to='projects.project'),
                ),
                migrations.AlterField(
                    model_name='detection',
                    name='image',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='detections', to='projects.image'),
                ),
                migrations.AlterField(
                    model_name='detectionjob',
                    name='project',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='detection_jobs', to='projects.project'),
                ),
            ],
            database_operations=[],
        ),
    ]
