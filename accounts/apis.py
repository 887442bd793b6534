from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import AuditEvent
from accounts.roles import ROLES, VIEW_AUDIT, role_names_of
from accounts.services import api_token_regenerate
from projectsite.permissions import HasPerm


def permission_note(perm: str | None) -> str:
    """The sentence every endpoint's OpenAPI description carries: who may call it."""
    if perm is None:
        return "**Permission:** any signed-in user."
    roles = [role.name for role in ROLES if perm in role.permissions]
    held_by = ", ".join(roles) if roles else "no role by default"
    return f"**Permission:** `{perm}` (held by: {held_by}; superusers always)."


class ErrorOutput(serializers.Serializer):
    """Every error answer: one sentence for a person, and the messages of each field that was wrong."""

    error = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


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


class TokenOutput(serializers.Serializer):
    token = serializers.CharField()


class TokenObtainApi(APIView):
    """Exchange a username and password for a new API token (replaces the previous one)."""

    permission_classes = [AllowAny]
    authentication_classes: list = []
    throttle_scope = "token"

    @extend_schema(
        summary="Get an API token",
        description=(
            "Exchange a username and password for a new API token; the previous token stops working. "
            "Send it as `Authorization: Token <token>`.\n\n**Permission:** none (no sign-in needed)."
        ),
        request=TokenInput,
        responses={200: TokenOutput, 400: ErrorOutput},
        auth=[],
    )
    def post(self, request):
        data = TokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None:
            return Response({"error": "Wrong username or password."}, status=status.HTTP_400_BAD_REQUEST)
        token = api_token_regenerate(user=user)
        return Response(TokenOutput({"token": token.key}).data)


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
    queryset = AuditEvent.objects.select_related("actor")
