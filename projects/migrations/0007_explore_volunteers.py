from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0006_job_crops_kind_problems"),
    ]

    operations = [
        migrations.AddField(
            model_name="project",
            name="explore_volunteers",
            field=models.BooleanField(default=False),
        ),
    ]
