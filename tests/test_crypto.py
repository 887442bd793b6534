import base64
import hashlib

import pytest
from cryptography.fernet import Fernet, InvalidToken

from projectsite.crypto import fernet_for


def test_the_key_is_derived_as_stored_secrets_expect():
    # Secrets already in databases were encrypted with sha256("<secret>:<purpose>"); they must still decrypt.
    old = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"s3cret:endpoint-keys").digest()))
    assert fernet_for("s3cret", "endpoint-keys").decrypt(old.encrypt(b"sk-123")) == b"sk-123"


def test_each_purpose_has_its_own_key():
    token = fernet_for("s3cret", "endpoint-keys").encrypt(b"sk-123")
    with pytest.raises(InvalidToken):
        fernet_for("s3cret", "label-studio-token").decrypt(token)
