from django.apps import AppConfig


class ProjectSiteConfig(AppConfig):
    """The site itself, as an app for what belongs to no one app: commands that span them all (``seed_demo``)."""

    name = "projectsite"
    verbose_name = "Tuning Desk site"
