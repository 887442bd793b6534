import pytest

# --- Label Studio: a real server -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def label_studio():
    """A real Label Studio 1.23.2 on 127.0.0.1 (its own venv under var/label-studio), shared by the session.

    Installs it the first time (about 2 minutes). Never skipped: if it cannot be installed or started, the
    tests that use it error with the install log or server log in the message.
    """
    from scripts.label_studio import LabelStudioServer, ensure_installed

    ensure_installed()
    with LabelStudioServer() as server:
        yield server


@pytest.fixture
def label_studio_sdk(label_studio):
    """The SDK as Label Studio's own admin, for doing in Label Studio what annotators would do there."""
    import httpx
    from label_studio_sdk import LabelStudio

    with httpx.Client(timeout=60) as http:
        yield LabelStudio(base_url=label_studio.url, api_key=label_studio.token, httpx_client=http)


@pytest.fixture
def label_studio_connection(label_studio, make_user):
    """The saved connection to the session's Label Studio, made through the service as an administrator would."""
    from annotation.services_label_studio import label_studio_connection_save

    return label_studio_connection_save(
        url=label_studio.url, token=label_studio.token, actor=make_user("admin", username="ls-admin")
    )
