import pytest

from curation.models import Upload
from curation.services import upload_create, upload_start_validation
from tests.conftest import wait_for


@pytest.mark.worker
def test_real_worker_stages_an_upload(transactional_db, celery_worker_proc, make_user, write_file):
    from django.core.files import File

    curator = make_user("curator")
    path = write_file("tickets.csv", "question,answer\nWhere is my refund?,It was sent on Monday.\n")
    with open(path, "rb") as handle:
        upload = upload_create(
            actor=curator, file=File(handle, name=path.name), original_name=path.name, dataset_name="worker-check"
        )
    upload_start_validation(upload=upload, actor=curator)

    def staged():
        upload.refresh_from_db()
        return upload.status in (Upload.Status.VALIDATED, Upload.Status.FAILED)

    wait_for(staged, timeout=60)
    assert upload.status == Upload.Status.VALIDATED, upload.error
    assert upload.good_rows == 1
