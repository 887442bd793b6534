from django import forms

EXPIRY_CHOICES = [
    ("", "Never"),
    ("7", "After 7 days"),
    ("30", "After 30 days"),
    ("90", "After 90 days"),
    ("365", "After a year"),
]


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        label="Name",
        help_text='What the token is for, so you can tell your tokens apart, e.g. "nightly export".',
    )
    expires_in_days = forms.TypedChoiceField(
        choices=EXPIRY_CHOICES,
        coerce=int,
        empty_value=None,
        required=False,
        label="Stops working",
        help_text="A token that expires is safer if it leaks; you can revoke any token below at any time.",
    )
