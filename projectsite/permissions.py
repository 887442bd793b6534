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


class HasPermPerMethod(BasePermission):
    """One permission per HTTP method, for a list that some may read and fewer may add to:
    ``permission_classes = [HasPermPerMethod.of(GET="app.view_x", POST="app.add_x")]``."""

    perms: dict[str, str] = {}

    @classmethod
    def of(cls, **perms: str) -> type["HasPermPerMethod"]:
        return type("HasPermPerMethod_" + "_".join(sorted(perms)), (cls,), {"perms": perms})

    def has_permission(self, request, view) -> bool:
        user = request.user
        perm = self.perms.get(request.method)
        return bool(perm and user and user.is_authenticated and user.has_perm(perm))
