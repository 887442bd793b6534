from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload


class SizeLimitUploadHandler(FileUploadHandler):
    """Stops reading a request whose body is larger than the upload limit, before it reaches the disk.

    The view then sees no file and ``request.upload_too_large`` set, and answers with a clear message.
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > settings.TUNINGDESK_MAX_UPLOAD_BYTES + 1024 * 1024:
            self.request.upload_too_large = True
            raise StopUpload(connection_reset=True)

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > settings.TUNINGDESK_MAX_UPLOAD_BYTES:
            self.request.upload_too_large = True
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size):
        return None
