# Written by hand (another change to this app was in progress): the endpoint's creator and its key's last four
# characters.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('evaluation', '0002_pilot'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='externalendpoint',
            name='api_key_hint',
            field=models.CharField(blank=True, help_text="The key's last four characters.", max_length=8),
        ),
        migrations.AddField(
            model_name='externalendpoint',
            name='created_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
    ]
