import pytest
from rest_framework.test import APIClient

from accounts.services import roles_sync
from tests.factories import UserFactory

PERSONAS = ("curator", "annotator", "privacy_reviewer", "engineer", "manager", "admin", "outsider")


@pytest.fixture
def make_user(db):
    roles_sync()

    def make(role: str | None = None, **kwargs):
        roles = [] if role in (None, "outsider") else [role]
        return UserFactory(username=kwargs.pop("username", role or "outsider"), roles=roles, **kwargs)

    return make


@pytest.fixture
def curator(make_user):
    return make_user("curator")


@pytest.fixture
def annotator(make_user):
    return make_user("annotator")


@pytest.fixture
def reviewer(make_user):
    return make_user("privacy_reviewer")


@pytest.fixture
def engineer(make_user):
    return make_user("engineer")


@pytest.fixture
def manager(make_user):
    return make_user("manager")


@pytest.fixture
def admin_user(make_user):
    return make_user("admin")


@pytest.fixture
def outsider(make_user):
    return make_user("outsider")


@pytest.fixture
def api_client():
    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def write_file(tmp_path):
    """Write test data to a file: str is written as UTF-8, bytes as they are."""

    def write(name: str, content: str | bytes):
        path = tmp_path / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return path

    return write
