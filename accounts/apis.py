from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_in
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import ApiToken, AuditEvent
from accounts.roles import ROLES, VIEW_AUDIT, role_names_of
from accounts.services import api_token_create, api_token_revoke
from accounts.signin import lockout_message, lockout_seconds
from projectsite.api import ErrorOutput
from projectsite.pagination import NewestFirst
from projectsite.permissions import HasPerm


def permission_note(perm: str | None) -> str:
    """The sentence every endpoint's OpenAPI description carries: who may call it."""
    if perm is None:
        return "**Permission:** any signed-in user."
    roles = [role.name for role in ROLES if perm in role.permissions]
    held_by = ", ".join(roles) if roles else "no role by default"
    return f"**Permission:** `{perm}` (held by: {held_by}; superusers always)."


class MeOutput(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())
    permissions = serializers.ListField(child=serializers.CharField())


class MeApi(APIView):
    """The signed-in user, their roles and permissions."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Who am I",
        description="The signed-in user, their roles and permissions.\n\n" + permission_note(None),
        responses={200: MeOutput, 401: ErrorOutput},
    )
    def get(self, request):
        user = request.user
        data = {
            "id": user.pk,
            "username": user.username,
            "roles": role_names_of(user),
            "permissions": sorted(user.get_all_permissions()),
        }
        return Response(MeOutput(data).data)


class TokenInput(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"})
    name = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        help_text='What the token is for, e.g. "nightly export". Default: "API token".',
    )
    expires_in_days = serializers.IntegerField(
        min_value=1,
        max_value=3650,
        required=False,
        allow_null=True,
        help_text="Days until the token stops working. Leave out for a token that does not expire.",
    )


class ApiTokenOutput(serializers.ModelSerializer):
    """A token as listed: never its secret, only its first characters (``prefix``)."""

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "expires_at", "is_expired"]


class TokenOutput(serializers.ModelSerializer):
    token = serializers.CharField(source="secret", help_text="The secret. Shown only in this answer: store it now.")

    class Meta:
        model = ApiToken
        fields = ["token", "id", "name", "prefix", "created_at", "expires_at"]


RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    type=int,
    location=OpenApiParameter.HEADER,
    response=[429],
    description="Seconds to wait before trying again.",
)


class TokenObtainApi(APIView):
    """Exchange a username and password for a new API token; the user's other tokens keep working."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    # Also a plain form, so that `curl -d username=... -d password=...` works (README).
    parser_classes = [JSONParser, FormParser]
    throttle_scope = "token"

    @extend_schema(
        summary="Get an API token",
        description=(
            "Exchange a username and password for a new API token. Each call makes another token; tokens made "
            "before keep working until they expire or are revoked (`GET`/`DELETE /api/v1/auth/tokens/`). "
            "Send it as `Authorization: Token <token>`.\n\n"
            "Failed sign-ins count per account and per client address (with the web sign-in form): after "
            "too many, both answer 429 with `Retry-After` until the wait is over, even for the right password. "
            "Calls per client address are also limited (`API_TOKEN_RATE`), again with 429 and `Retry-After`."
            "\n\n**Permission:** none (no sign-in needed)."
        ),
        request=TokenInput,
        parameters=[RETRY_AFTER],
        responses={
            200: TokenOutput,
            400: ErrorOutput,
            429: OpenApiResponse(ErrorOutput, description="Too many failed sign-ins, or too many calls: wait."),
        },
        auth=[],
    )
    def post(self, request):
        data = TokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = authenticate(request, username=values["username"], password=values["password"])
        if user is None:
            # django-axes refused the attempt (or this failure reached the limit): say how long to wait.
            if getattr(request, "axes_locked_out", False):
                seconds = max(lockout_seconds(request, {"username": values["username"]}), 1)
                return Response(
                    {"error": lockout_message(seconds)},
                    status=status.HTTP_429_TOO_MANY_REQUESTS,
                    headers={"Retry-After": str(seconds)},
                )
            return Response({"error": "Wrong username or password."}, status=status.HTTP_400_BAD_REQUEST)
        # A password sign-in like the web form's: last login, axes and the audit log (auth.login) see it.
        user_logged_in.send(sender=type(user), request=request, user=user)
        token, secret = api_token_create(
            user=user, name=values.get("name") or "", expires_in_days=values.get("expires_in_days")
        )
        token.secret = secret  # only in this answer; the database keeps its digest
        return Response(TokenOutput(token).data)


@extend_schema_view(
    get=extend_schema(
        summary="My API tokens",
        description=(
            "Your API tokens, newest first: name, first characters, when made, last used (to the minute) and "
            "when they expire. Never the secret.\n\n" + permission_note(None)
        ),
        responses={200: ApiTokenOutput(many=True), 401: ErrorOutput},
    )
)
class ApiTokenListApi(generics.ListAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = ApiTokenOutput

    def get_queryset(self):
        return ApiToken.objects.filter(user=self.request.user)


class ApiTokenRevokeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Revoke one of my API tokens",
        description=(
            "The token stops working at once; your other tokens keep working. Only your own tokens: "
            "another user's token answers 404.\n\n" + permission_note(None)
        ),
        responses={204: None, 401: ErrorOutput, 404: ErrorOutput},
    )
    def delete(self, request, token_id: int):
        token = ApiToken.objects.filter(pk=token_id, user=request.user).first()
        if token is None:
            raise NotFound("You have no API token with this id.")
        api_token_revoke(token=token, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditEventOutput(serializers.ModelSerializer):
    actor = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor", "action", "object_type", "object_id", "object_repr", "before", "after"]


@extend_schema_view(
    get=extend_schema(
        summary="Audit log",
        description="Who did what to which object, newest first.\n\n" + permission_note(VIEW_AUDIT),
        responses={200: AuditEventOutput(many=True), 401: ErrorOutput, 403: ErrorOutput},
    )
)
class AuditEventListApi(generics.ListAPIView):
    """The audit log, newest first. Admins only."""

    permission_classes = [HasPerm.of(VIEW_AUDIT)]
    serializer_class = AuditEventOutput
    pagination_class = NewestFirst  # the log only grows: cursor pages cost the same at any depth
    queryset = AuditEvent.objects.select_related("actor")
