"""Secrets stored in the database (API keys, tokens, pseudonym maps) are encrypted with Fernet."""

import base64
import hashlib

from cryptography.fernet import Fernet


def fernet_for(secret: str, purpose: str) -> Fernet:
    """A Fernet whose key is derived from a deployment secret and a purpose, so each kind of stored secret has its
    own key (``fernet_for(settings.SECRET_KEY, "endpoint-keys")``)."""
    key = hashlib.sha256(f"{secret}:{purpose}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))
