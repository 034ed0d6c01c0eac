"""The ground models, moved here from annotator with their tables (db_table) and rows.

State only: annotator 0001-0005 created the tables, annotator 0006 forgets the models there.
"""

import django.db.models.deletion
from typing import Any

from django.conf import settings
from django.db import migrations, models


MOVED = ("project", "membership", "species", "attribute", "image", "job", "queuedtask")


def content_types_move(apps: Any, schema_editor: Any) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.filter(app_label="annotator", model__in=MOVED).update(
        app_label="projects"
    )


def content_types_move_back(apps: Any, schema_editor: Any) -> None:
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.filter(app_label="projects", model__in=MOVED).update(
        app_label="annotator"
    )


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        # The tables were created by annotator's migrations up to this one.
        ('annotator', '0005_issue8_attributes_balance_ensembles'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        # State only: the tables keep their names and their rows; no SQL runs.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='QueuedTask',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=200)),
                        ('args', models.JSONField(default=list)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('published_at', models.DateTimeField(blank=True, null=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('worker', models.CharField(blank=True, max_length=200)),
                        ('attempts', models.PositiveIntegerField(default=0)),
                        ('error', models.TextField(blank=True)),
                    ],
                    options={
                        'db_table': 'annotator_queuedtask',
                        'ordering': ['id'],
                    },
                ),
                migrations.CreateModel(
                    name='Project',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=200, unique=True)),
                        ('slug', models.SlugField(max_length=200, unique=True)),
                        ('description', models.TextField(blank=True)),
                        ('seed', models.PositiveIntegerField(default=0)),
                        ('round_size', models.PositiveIntegerField(default=100)),
                        ('detection_threshold', models.FloatField(default=0.2)),
                        ('min_box_pixels', models.PositiveIntegerField(default=8, help_text='Boxes narrower or lower than this (in image pixels) are ignored.')),
                        ('crop_padding', models.FloatField(default=0.1)),
                        ('sequence_gap_seconds', models.PositiveIntegerField(default=60)),
                        ('backbone', models.CharField(default='resnet50', max_length=50)),
                        ('backbone_weights', models.CharField(default='imagenet', max_length=500)),
                        ('embedding_checkpoint', models.CharField(blank=True, max_length=500)),
                        ('finetune_every', models.PositiveIntegerField(default=2000)),
                        ('finetune_mode', models.CharField(default='auto', help_text='auto (full with CUDA, else head), head or full', max_length=10)),
                        ('finetune_epochs', models.PositiveIntegerField(default=10)),
                        ('first_round_strategy', models.CharField(default='random', max_length=30)),
                        ('target_accuracy', models.FloatField(default=0.966)),
                        ('votes_per_crop', models.PositiveSmallIntegerField(default=1)),
                        ('agreement_threshold', models.FloatField(default=0.66)),
                        ('class_balance', models.CharField(choices=[('none', 'None'), ('weighted', 'Weighted loss (N / n_i)'), ('oversample', 'Oversampling')], default='none', max_length=20)),
                        ('ensemble_size', models.PositiveSmallIntegerField(default=1)),
                        ('seconds_per_image', models.FloatField(default=10.0)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'annotator_project',
                    },
                ),
                migrations.CreateModel(
                    name='Membership',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('role', models.CharField(choices=[('admin', 'Project admin'), ('volunteer', 'Volunteer'), ('ecologist', 'Ecologist')], max_length=20)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to=settings.AUTH_USER_MODEL)),
                        ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='projects.project')),
                    ],
                    options={
                        'db_table': 'annotator_membership',
                        'constraints': [models.UniqueConstraint(fields=('project', 'user'), name='membership_unique')],
                    },
                ),
                migrations.CreateModel(
                    name='Job',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('embedding', 'Embedding'), ('retrain', 'Retraining the classifier'), ('finetune', 'Fine-tuning the embedding')], max_length=20)),
                        ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('done', 'Done'), ('failed', 'Failed')], default='queued', max_length=10)),
                        ('total', models.PositiveIntegerField(default=0)),
                        ('done', models.PositiveIntegerField(default=0)),
                        ('detail', models.CharField(blank=True, max_length=300)),
                        ('error', models.TextField(blank=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='jobs', to='projects.project')),
                    ],
                    options={
                        'db_table': 'annotator_job',
                        'ordering': ['-created_at'],
                        'indexes': [models.Index(fields=['project', '-created_at'], name='annotator_j_project_9c4049_idx')],
                    },
                ),
                migrations.CreateModel(
                    name='Image',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('path', models.CharField(help_text='Absolute path on the server.', max_length=1000)),
                        ('file_name', models.CharField(help_text='Path relative to the import folder.', max_length=1000)),
                        ('width', models.PositiveIntegerField()),
                        ('height', models.PositiveIntegerField()),
                        ('seq_id', models.CharField(blank=True, max_length=200)),
                        ('frame_num', models.IntegerField(blank=True, null=True)),
                        ('seq_source', models.CharField(blank=True, max_length=20)),
                        ('camera', models.CharField(blank=True, max_length=300)),
                        ('taken_at', models.DateTimeField(blank=True, null=True)),
                        ('imported_at', models.DateTimeField(auto_now_add=True)),
                        ('detected_at', models.DateTimeField(blank=True, null=True)),
                        ('detector_version', models.CharField(blank=True, max_length=300)),
                        ('detection_failure', models.TextField(blank=True)),
                        ('is_empty', models.BooleanField(null=True)),
                        ('count', models.PositiveIntegerField(blank=True, null=True)),
                        ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='images', to='projects.project')),
                    ],
                    options={
                        'db_table': 'annotator_image',
                        'ordering': ['file_name'],
                        'indexes': [models.Index(fields=['project', 'seq_id'], name='annotator_i_project_7c5436_idx')],
                        'constraints': [models.UniqueConstraint(fields=('project', 'path'), name='image_unique_path')],
                    },
                ),
                migrations.CreateModel(
                    name='Attribute',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100)),
                        ('key', models.CharField(help_text="The labelling page's hotkey.", max_length=1)),
                        ('position', models.PositiveIntegerField(default=0)),
                        ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attributes', to='projects.project')),
                    ],
                    options={
                        'db_table': 'annotator_attribute',
                        'ordering': ['position', 'id'],
                        'constraints': [models.UniqueConstraint(fields=('project', 'name'), name='attribute_unique_name'), models.UniqueConstraint(fields=('project', 'key'), name='attribute_unique_key')],
                    },
                ),
                migrations.CreateModel(
                    name='Species',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=200)),
                        ('position', models.PositiveIntegerField(default=0)),
                        ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='species', to='projects.project')),
                    ],
                    options={
                        'verbose_name_plural': 'species',
                        'db_table': 'annotator_species',
                        'ordering': ['position', 'name'],
                        'constraints': [models.UniqueConstraint(fields=('project', 'name'), name='species_unique_name')],
                    },
                ),
            ],
            database_operations=[],
        ),
        # Their content types (permissions, admin history) move with them.
        migrations.RunPython(content_types_move, content_types_move_back),
    ]
