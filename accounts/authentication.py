import datetime as dt

from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from accounts.models import ApiToken
from accounts.services import api_token_mark_used


class ApiTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <token>``, checked against the stored digests of the user's named tokens.

    A subclass of DRF's class so the header, the 401 with ``WWW-Authenticate: Token`` and the OpenAPI security
    scheme stay as they were.
    """

    keyword = "Token"

    def authenticate_credentials(self, key):
        token = ApiToken.objects.select_related("user").filter(digest=ApiToken.digest_of(key)).first()
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        if token.is_expired:
            when = token.expires_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
            raise exceptions.AuthenticationFailed(
                f"This token expired on {when}. Make a new one on your profile page or with POST /api/v1/auth/token/."
            )
        api_token_mark_used(token=token)
        return token.user, token
