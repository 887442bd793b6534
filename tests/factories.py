import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from accounts.roles import ROLE_BY_SLUG
from curation.models import Dataset, DatasetVersion, Example, TaskType
from curation.text import row_hash, text_hash


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests-123")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        if extracted:
            self.groups.set(Group.objects.filter(name__in=[ROLE_BY_SLUG[slug].name for slug in extracted]))
            if "admin" in extracted:
                self.is_staff = self.is_superuser = True
        self.save()


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset

    name = factory.Sequence(lambda n: f"dataset-{n}")
    task_type = TaskType.SFT


class VersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DatasetVersion

    dataset = factory.SubFactory(DatasetFactory)
    number = factory.Sequence(lambda n: n + 1)
    operation = DatasetVersion.Operation.IMPORT
    status = DatasetVersion.Status.READY
    split_ratios = {"train": 0.8, "validation": 0.1, "test": 0.1}


class ExampleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Example

    version = factory.SubFactory(VersionFactory)
    row_index = factory.Sequence(lambda n: n + 1)
    source_line = factory.SelfAttribute("row_index")
    input = factory.Sequence(lambda n: f"My invoice number {n} shows the wrong amount, can you check it?")
    target = "Thanks for telling us. We corrected the invoice and sent you the new copy."
    split = "train"
    row_hash = factory.LazyAttribute(lambda o: row_hash(o.input, o.target, "", ""))
    text_hash = factory.LazyAttribute(lambda o: text_hash(o.input, o.target))
