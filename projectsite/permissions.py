from rest_framework.permissions import BasePermission


class HasPerm(BasePermission):
    """Signed in and holding one Django permission: ``permission_classes = [HasPerm.of("app.codename")]``."""

    perm = ""

    @classmethod
    def of(cls, perm: str) -> type["HasPerm"]:
        return type(f"HasPerm_{perm.replace('.', '_')}", (cls,), {"perm": perm})

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(self.perm))
