from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload


class SizeLimitUploadHandler(FileUploadHandler):
    """Stops storing a file once it passes the upload limit, so an oversized file never fills the disk.

    The rest of the body is read and discarded (``connection_reset=False``) so the form fields and the
    CSRF token still arrive; the view then sees no file, finds ``request.upload_too_large`` set, and
    answers with a clear message.
    """

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > settings.TUNINGDESK_MAX_UPLOAD_BYTES:
            self.request.upload_too_large = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size):
        return None
