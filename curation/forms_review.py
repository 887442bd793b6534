"""Forms of the privacy-review pages, and the plain names of entity types and replacements.

They check what a person typed; the redaction services check the rules.
"""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from curation import pii
from curation.models import Finding

ENTITY_LABELS: dict[str, str] = {
    pii.PERSON: "Person's name",
    pii.EMAIL_ADDRESS: "Email address",
    pii.PHONE_NUMBER: "Phone number",
    pii.US_SSN: "Social Security number",
    pii.CREDIT_CARD: "Credit card number",
    pii.MEDICAL_RECORD_NUMBER: "Medical record number",
    pii.NPI: "Provider number (NPI)",
    pii.INSURANCE_ID: "Insurance member ID",
    pii.DATE_OF_BIRTH: "Date of birth",
    pii.US_ADDRESS: "Street address (US)",
    pii.STREET_ADDRESS: "Street address (outside the US)",
    pii.DATE: "Date (day and month)",
    pii.IBAN_CODE: "Bank account (IBAN)",
    pii.IP_ADDRESS: "IP address",
    pii.URL: "Web address (URL)",
    pii.MAC_ADDRESS: "Device address (MAC)",
    pii.US_DRIVER_LICENSE: "Driver's licence number",
    pii.US_PASSPORT: "Passport number (US)",
    pii.US_BANK_NUMBER: "Bank account number (US)",
    pii.US_ITIN: "Taxpayer number (US ITIN)",
    pii.MEDICAL_LICENSE: "Medical licence number",
    pii.UK_NHS: "NHS number",
    pii.NATIONAL_ID: "National ID (EU)",
    pii.LOCATION: "Place (city, region, country)",
    pii.DATE_TIME: "Any date or time",
    pii.ORGANIZATION: "Organisation",
    pii.NRP: "Nationality, religion or politics",
}
PROFILE_LABELS: dict[str, str] = {
    "healthcare": "Healthcare (HIPAA Safe Harbor identifiers)",
    "gdpr": "GDPR (Safe Harbor identifiers and EU national IDs)",
    "custom": "Custom choice of kinds",
}
# Every type the engine knows, the ones it looks for by default first.
ENTITY_TYPES: tuple[str, ...] = tuple(dict.fromkeys((*pii.DEFAULT_ENTITIES, *pii.ENTITY_TYPES)))
ENTITY_CHOICES = [(code, ENTITY_LABELS.get(code, code)) for code in ENTITY_TYPES]

OPERATOR_LABELS: dict[str, str] = {
    "pseudonym": "A realistic made-up value",
    "tag": "A tag, like <PERSON>",
    "mask": "Stars (****)",
    "hash": "A keyed code (same value, same code)",
}
OPERATOR_CHOICES = [
    (op, OPERATOR_LABELS.get(op, op)) for op in ("pseudonym", "tag", "mask", "hash") if op in pii.OPERATORS
]
DEFAULT_OPERATOR = "pseudonym"


def entity_label(code: str) -> str:
    return ENTITY_LABELS.get(code, code)


def _entity_from_words(words: str) -> str | None:
    """An entity type from its code (US_SSN) or its plain name (Social Security number), any case."""
    wanted = words.strip().casefold()
    for code, label in ENTITY_CHOICES:
        if wanted in (code.casefold(), label.casefold()):
            return code
    return None


class RedactionStartForm(forms.Form):
    """What to look for and how each kind of personal data will be replaced once approved."""

    profile = forms.ChoiceField(
        label="Profile",
        choices=list(PROFILE_LABELS.items()),
        initial=pii.DEFAULT_PROFILE,
        required=False,
        widget=forms.RadioSelect,
        help_text="A profile ticks the kinds its rules name. To change the ticks yourself, choose "
        "“Custom choice of kinds”.",
    )
    entities = forms.MultipleChoiceField(
        label="What to look for",
        choices=ENTITY_CHOICES,
        initial=list(pii.DEFAULT_ENTITIES),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one kind of personal data to look for."},
    )
    allow_list = forms.CharField(
        label="Never flag these words",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line, for example product names that look like names of people.",
    )
    deny_list = forms.CharField(
        label="Always flag these words",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One per line. To give a word its own kind, add it after a bar: "
        "“Dr. Okafor | Person's name”. Words without one get the kind chosen below.",
    )
    deny_type = forms.ChoiceField(label="Kind of the always-flagged words", choices=ENTITY_CHOICES, initial=pii.PERSON)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for code in ENTITY_TYPES:
            default = pii.DEFAULT_THRESHOLDS.get(code, pii.DEFAULT_THRESHOLD)
            self.fields[f"threshold_{code}"] = forms.FloatField(
                label=f"Lowest score for {entity_label(code)}",
                required=False,
                min_value=0,
                max_value=1,
                widget=forms.NumberInput(attrs={"step": "0.05", "placeholder": f"{default:g}"}),
            )
            self.fields[f"operator_{code}"] = forms.ChoiceField(
                label=f"Replace {entity_label(code)} with", choices=OPERATOR_CHOICES, initial=DEFAULT_OPERATOR
            )

    def rows(self) -> list[dict]:
        """One row per entity type for the table: its checkbox, lowest score and replacement."""
        boxes = {box.data["value"]: box for box in self["entities"]}
        return [
            {
                "code": code,
                "label": entity_label(code),
                "box": boxes[code],
                "threshold": self[f"threshold_{code}"],
                "operator": self[f"operator_{code}"],
                "default_on": code in pii.DEFAULT_ENTITIES,
            }
            for code in ENTITY_TYPES
        ]

    def clean_allow_list(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["allow_list"].splitlines() if line.strip()]

    def clean_deny_list(self) -> list[tuple[str, str | None]]:
        terms = []
        for number, line in enumerate(self.cleaned_data["deny_list"].splitlines(), start=1):
            term, bar, kind = line.partition("|")
            if not term.strip():
                continue
            code = None
            if bar:
                code = _entity_from_words(kind)
                if code is None:
                    raise ValidationError(
                        f"Line {number}: “{kind.strip()}” is not a kind of personal data. "
                        f"Use one of: {', '.join(label for _, label in ENTITY_CHOICES)}."
                    )
            terms.append((term.strip(), code))
        return terms

    def clean(self):
        data = super().clean()
        # The ticks only count for a custom choice; a profile brings its own kinds.
        if data.get("profile") in pii.PROFILES:
            data["entities"] = list(pii.PROFILES[data["profile"]])
            self.errors.pop("entities", None)
        return data

    def config(self) -> dict:
        """The detection configuration for services.redaction_run_start."""
        data = self.cleaned_data
        entities = list(data["entities"])
        return {
            "entities": entities,
            "thresholds": {
                code: data[f"threshold_{code}"] for code in entities if data.get(f"threshold_{code}") is not None
            },
            "operators": {code: data[f"operator_{code}"] for code in entities},
            "default_operator": DEFAULT_OPERATOR,
            "allow_list": data["allow_list"],
            "deny_list": {term: code or data["deny_type"] for term, code in data["deny_list"]},
        }


class ReviewFilterForm(forms.Form):
    """The filters of the review queue, read from the address (GET)."""

    SHOW_CHOICES = [("pending", "Rows with findings not yet reviewed"), ("all", "All rows with findings")]

    show = forms.ChoiceField(label="Show", choices=SHOW_CHOICES, required=False)
    entity_type = forms.ChoiceField(label="Kind", choices=[("", "All kinds"), *ENTITY_CHOICES], required=False)
    status = forms.ChoiceField(
        label="Decision", choices=[("", "Any decision"), *Finding.Status.choices], required=False
    )
    min_score = forms.FloatField(
        label="Score from", required=False, min_value=0, max_value=1, widget=forms.NumberInput(attrs={"step": "0.05"})
    )
    max_score = forms.FloatField(
        label="to", required=False, min_value=0, max_value=1, widget=forms.NumberInput(attrs={"step": "0.05"})
    )

    def filters(self) -> dict:
        """Valid filters only: a wrong value in the address is ignored, the rest applies."""
        if not self.is_bound:
            return {"unreviewed": True}
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {
            "unreviewed": data.get("show", "") != "all",
            "entity_type": data.get("entity_type") or "",
            "status": data.get("status") or "",
            "min_score": data.get("min_score"),
            "max_score": data.get("max_score"),
        }


class BulkDecideForm(forms.Form):
    status = forms.ChoiceField(
        choices=[(Finding.Status.ACCEPTED, "Redact"), (Finding.Status.REJECTED, "Keep as is")],
        error_messages={
            "required": "Choose to redact or to keep as is.",
            "invalid_choice": "Choose redact or keep as is.",
        },
    )
    entity_type = forms.ChoiceField(label="Kind", choices=[("", "Every kind"), *ENTITY_CHOICES], required=False)
    min_score = forms.FloatField(
        label="Score from", required=False, min_value=0, max_value=1, widget=forms.NumberInput(attrs={"step": "0.05"})
    )
    max_score = forms.FloatField(
        label="to", required=False, min_value=0, max_value=1, widget=forms.NumberInput(attrs={"step": "0.05"})
    )


class FindingDecideForm(forms.Form):
    status = forms.ChoiceField(choices=Finding.Status.choices)
    revision = forms.IntegerField(min_value=0)
    entity_type = forms.ChoiceField(choices=ENTITY_CHOICES, required=False)


class FindingAddForm(forms.Form):
    example = forms.IntegerField(min_value=1)
    field = forms.CharField(max_length=120)
    start = forms.IntegerField(label="From character", min_value=0)
    end = forms.IntegerField(label="To character", min_value=1)
    entity_type = forms.ChoiceField(label="Kind", choices=ENTITY_CHOICES)
