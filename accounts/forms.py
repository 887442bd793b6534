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


class AuditFilterForm(forms.Form):
    """The audit log's filters (a GET form). Choices come from what the log holds, see audit_filter_choices."""

    q = forms.CharField(
        required=False, max_length=200, label="Search", help_text="Words in the action, object, person or values."
    )
    person = forms.ChoiceField(required=False, label="Person")
    action = forms.ChoiceField(required=False, label="Action")
    object_type = forms.ChoiceField(required=False, label="Object type")
    object_id = forms.CharField(required=False, max_length=64, label="Object id")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, choices: dict[str, list[tuple[str, str]]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["person"].choices = [("", "Anyone")] + choices["person"]
        self.fields["action"].choices = [("", "All actions")] + choices["action"]
        self.fields["object_type"].choices = [("", "Any type")] + choices["object_type"]

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
        return cleaned

    def filters(self) -> dict:
        """The valid filters as keyword arguments of audit_event_list; a field with an error is left out."""
        self.is_valid()
        data = self.cleaned_data
        return {
            "person": data.get("person") or "",
            "action": (data.get("action") or "").strip(),
            "object_type": data.get("object_type") or "",
            "object_id": (data.get("object_id") or "").strip(),
            "since": data.get("since"),
            "until": data.get("until"),
            "search": (data.get("q") or "").strip(),
        }
