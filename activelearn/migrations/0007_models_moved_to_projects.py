"""Point the foreign keys at the models that moved from annotator to projects (same tables)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('activelearn', '0006_issue8_attributes_balance_ensembles'),
        ('projects', '0001_initial'),
    ]

    operations = [
        # State only: the tables keep their names and their rows; no SQL runs.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='classifierversion',
                    name='project',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='classifier_versions', to='projects.project'),
                ),
                migrations.AlterField(
                    model_name='consensus',
                    name='project',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='consensus', to='projects.project'),
                ),
                migrations.AlterField(
                    model_name='consensus',
                    name='species',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='consensus', to='projects.species'),
                ),
                migrations.AlterField(
                    model_name='eventprediction',
                    name='species',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='projects.species'),
                ),
                migrations.AlterField(
                    model_name='label',
                    name='project',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='labels', to='projects.project'),
                ),
                migrations.AlterField(
                    model_name='label',
                    name='species',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='labels', to='projects.species'),
                ),
                migrations.AlterField(
                    model_name='prediction',
                    name='species',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='projects.species'),
                ),
                migrations.AlterField(
                    model_name='round',
                    name='project',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='rounds', to='projects.project'),
                ),
                migrations.AlterField(
                    model_name='round',
                    name='target_species',
                    field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='projects.species'),
                ),
            ],
            database_operations=[],
        ),
    ]
