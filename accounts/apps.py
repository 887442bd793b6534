from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and audit log"

    def ready(self):
        # Audit of sign-ins through signals: they are the one place that sees every sign-in (the login form, the
        # admin, the token endpoint) and axes' lock-outs. Auditing only, no business logic (accounts/signin.py).
        from axes.signals import user_locked_out
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from accounts import signin

        user_logged_in.connect(signin.on_user_logged_in, dispatch_uid="accounts.audit.login")
        user_login_failed.connect(signin.on_user_login_failed, dispatch_uid="accounts.audit.login_failed")
        user_locked_out.connect(signin.on_user_locked_out, dispatch_uid="accounts.audit.lockout")
