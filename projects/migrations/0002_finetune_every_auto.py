"""``Project.finetune_every`` may be empty: "auto", an interval that scales with the project's
crops (``activelearn.services.finetune_interval``). Projects left at the old flat default
(2,000) become auto; any other number (0 included: only when an admin asks) is kept."""

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

OLD_DEFAULT = 2000


def _old_default_to_auto(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("projects", "Project").objects.filter(finetune_every=OLD_DEFAULT).update(
        finetune_every=None
    )


def _auto_to_old_default(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("projects", "Project").objects.filter(finetune_every__isnull=True).update(
        finetune_every=OLD_DEFAULT
    )


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="project",
            name="finetune_every",
            field=models.PositiveIntegerField(blank=True, default=None, null=True),
        ),
        migrations.RunPython(_old_default_to_auto, _auto_to_old_default),
    ]
