"""Point the foreign keys at the models that moved from annotator to projects (same tables)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('embeddings', '0001_initial'),
        ('projects', '0001_initial'),
    ]

    operations = [
        # State only: the tables keep their names and their rows; no SQL runs.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='embeddingversion',
                    name='project',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='embedding_versions', to='projects.project'),
                ),
            ],
            database_operations=[],
        ),
    ]
