from django.urls import path

from accounts import apis

urlpatterns = [
    path("me/", apis.MeApi.as_view(), name="api-me"),
    path("auth/token/", apis.TokenObtainApi.as_view(), name="api-token"),
    path("auth/tokens/", apis.ApiTokenListApi.as_view(), name="api-token-list"),
    path("auth/tokens/<int:token_id>/", apis.ApiTokenRevokeApi.as_view(), name="api-token-revoke"),
    path("audit-events/", apis.AuditEventListApi.as_view(), name="api-audit-events"),
]
