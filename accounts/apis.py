from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import AuditEvent
from accounts.roles import VIEW_AUDIT, role_names_of
from accounts.services import api_token_regenerate
from projectsite.permissions import HasPerm


class MeOutput(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())
    permissions = serializers.ListField(child=serializers.CharField())


class MeApi(APIView):
    """The signed-in user, their roles and permissions."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=MeOutput)
    def get(self, request):
        user = request.user
        data = {"id": user.pk, "username": user.username, "roles": role_names_of(user),
                "permissions": sorted(user.get_all_permissions())}
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

    @extend_schema(request=TokenInput, responses=TokenOutput)
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


class AuditEventListApi(generics.ListAPIView):
    """The audit log, newest first. Admins only."""

    permission_classes = [HasPerm.of(VIEW_AUDIT)]
    serializer_class = AuditEventOutput
    queryset = AuditEvent.objects.select_related("actor")
