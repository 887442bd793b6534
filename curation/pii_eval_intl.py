"""A second synthetic evaluation set for PII redaction: many countries, made differently from the tuning set.

curation/pii_eval.py writes US support tickets of a healthcare-CRM firm, and the recognizers were tuned
on them. This set is built another way, so that a score on it says something about text we did not write:

- people from 24 Faker locales (hu_HU, fi_FI, ja_JP, et_EE, tr_TR, sv_SE, fr_FR, de_DE, pl_PL, it_IT, es_ES,
  pt_BR, nl_NL, cs_CZ, da_DK, en_GB, en_AU, en_IN, no_NO, ro_RO, sk_SK, lt_LT, pt_PT, en_US). Japanese names
  are Faker's romanised ones (``first_romanized_name``/``last_romanized_name``): the texts are English, and a
  name in kanji inside English text is a different problem (the English model tags most foreign-script words
  as something). Names are sometimes single (a first name, a surname), in lists, and in dialogue lines;
- phone numbers from ``phonenumbers.example_number_for_type`` for every region it knows (fixed line and
  mobile, the last digits varied while the number stays valid), written NATIONAL, INTERNATIONAL, E164 and in
  variants people type (dots, dashes, no spaces, "+46 (0)8 ...", "0046 ...");
- payment cards of every network and length (Visa 13/16/19, Mastercard 51-55 and 2221-2720, Amex, Discover,
  JCB, Diners, Maestro 12-19, UnionPay, Mir, RuPay, Troy), generated here with a valid Luhn digit;
- IBANs of 20 countries with valid check digits (generated here: Faker's are not always valid), compact or
  in groups of four;
- IP addresses (v4, v6 full and compressed), street addresses from Faker ``address()`` of the locales whose
  providers write local addresses, dates in numeric and written forms, e-mail addresses on public domains and
  on names that are not public suffixes (``@hospital.example``, ``.internal``, ``.local``, ``.lan``, ``.corp``);
- medical record numbers after the words clinics use ("record", "chart", "patient ID", "MRN"), and a few
  US Social Security numbers of people living abroad.

The templates below were written once, in one sitting, before any detector ran on them, and are not to be
edited after looking at errors: a template changed to fit the detector makes this set a second tuning set.
What the set shows goes into docs/benchmarks-redaction.md as it is; fixes go into the recognizers, in general
form, and are checked on the hand-labelled set (tests/data/pii_handlabelled.jsonl) as well.

Gold types: PERSON, EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, IP_ADDRESS, STREET_ADDRESS,
DATE_TIME (dates tied to a person: birth, admission, visit), MEDICAL_RECORD_NUMBER, US_SSN.

    examples = generate_intl_set(1500, seed=7)
"""

from __future__ import annotations

import datetime as dt
import random
import re
import string
import unicodedata
from collections.abc import Callable

import phonenumbers
from faker import Faker
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from curation.pii_eval import EvalExample, GoldSpan, render_slots

INTL_GOLD_TYPES = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "US_SSN",
    "CREDIT_CARD",
    "MEDICAL_RECORD_NUMBER",
    "IBAN_CODE",
    "IP_ADDRESS",
    "STREET_ADDRESS",
    "DATE_TIME",
)

LOCALES = (
    "hu_HU",
    "fi_FI",
    "ja_JP",
    "et_EE",
    "tr_TR",
    "sv_SE",
    "fr_FR",
    "de_DE",
    "pl_PL",
    "it_IT",
    "es_ES",
    "pt_BR",
    "nl_NL",
    "cs_CZ",
    "da_DK",
    "en_GB",
    "en_AU",
    "en_IN",
    "no_NO",
    "ro_RO",
    "sk_SK",
    "lt_LT",
    "pt_PT",
    "en_US",
)
# Locales whose Faker address() writes a local address in Latin script (et_EE, tr_TR, lt_LT and ja_JP do not).
ADDRESS_LOCALES = (
    "hu_HU",
    "fi_FI",
    "sv_SE",
    "fr_FR",
    "de_DE",
    "pl_PL",
    "it_IT",
    "es_ES",
    "pt_BR",
    "nl_NL",
    "cs_CZ",
    "da_DK",
    "en_GB",
    "en_AU",
    "en_IN",
    "no_NO",
    "sk_SK",
    "pt_PT",
)
_LOCALE_REGION = {locale: locale.split("_")[1] for locale in LOCALES}
_LOCALE_REGION["en_GB"] = "GB"

# Written once; see the module docstring. {slot} is filled by the slot of that name; a slot used twice in one
# template gets the same value.
TEMPLATES: tuple[tuple[str, str], ...] = (
    (
        "ticket",
        "Hello, my name is {person} and I work at the {city_word} branch. Since Monday I cannot open the "
        "patient list. Please call me on {phone} or write to {email}.",
    ),
    (
        "ticket",
        "Customer {person} ({email}) reports that the invoice PDF shows the wrong bank account. It should be "
        "{iban}. Phone: {phone}.",
    ),
    (
        "email",
        "Dear {person_first},\n\nthank you for your order. We have charged {amount} EUR to your card {card}. "
        "If you did not make this purchase, contact us at {phone}.\n\nKind regards,\n{agent}\n{agent_email}",
    ),
    (
        "email",
        "Hi {agent_first},\n\nplease update my address in the portal. New address:\n{address}\n\nMy date of "
        "birth is {dob} if you need to verify me.\n\nThanks,\n{person}",
    ),
    (
        "chat",
        "{person_first}: did anyone look at the login errors from {ip}?\n{agent_first}: yes, that's the clinic "
        "in {city_word}, I called {person2_first} there\n{person_first}: ok thanks",
    ),
    (
        "chat",
        "[{time}] {person}: the export for {patient} is stuck again\n[{time2}] {agent}: I restarted it, "
        "record {mrn} should show up in a minute",
    ),
    (
        "github_issue",
        "### Bug report\nReported by {person} ({email}).\n\nSteps: log in from {ip}, open the patient "
        "{patient}, click Export. The server answers 500.\n\nExpected: the PDF.",
    ),
    (
        "github_issue",
        "Stack trace attached. The request came from {ip6} and the payload contained the card number {card} "
        "in plain text (field `payment.pan`). Assigning to {agent_first}.",
    ),
    (
        "crm_note",
        "Called {person} on {phone} about the unpaid invoice. Agreed to pay by bank transfer from {iban} "
        "before {date}. Follow up with {person_last} next week.",
    ),
    (
        "crm_note",
        "New lead: {person}, {job}. Mobile {phone}, e-mail {email}. Office: {address}.",
    ),
    (
        "clinical_note",
        "Patient {patient}, born {dob}, admitted on {date} with chest pain. Chart {mrn}. Next of kin: "
        "{person} ({phone}).",
    ),
    (
        "clinical_note",
        "Referral letter for {patient} (patient ID {mrn}, DOB {dob}). Address: {address}. GP: Dr. "
        "{doctor_last}, tel. {phone}.",
    ),
    (
        "clinical_note",
        "{patient_last}, {patient_first} - seen {date}. Results sent to {email}. Please file under the "
        "medical record for record {mrn}.",
    ),
    (
        "code_comment",
        "# test data, remove before release: name={patient}, phone={phone}, iban={iban}",
    ),
    (
        "code_comment",
        '// customer {person} said the form rejects "{phone}" as invalid; see ticket {ticket}',
    ),
    (
        "signature",
        "Best regards\n\n{person}\n{job}\n{company}\n{address}\nTel: {phone}\nMobile: {phone2}\n{email}",
    ),
    (
        "signature",
        "--\n{person} | {job} | {phone} | {email}",
    ),
    (
        "list",
        "The company was founded in {year} by {person}, {person2} and {person3}, who still run it from {city_word}.",
    ),
    (
        "list",
        "Attendees: {person}, {person2}, {person3}, {agent}. Apologies: {person4_last}.",
    ),
    (
        "list",
        "On call this week: {person_last} (Mon-Wed), {person2_last} (Thu-Fri). Escalations go to {agent_first}.",
    ),
    (
        "ticket",
        "The payment with card {card} failed three times for customer {person}. The bank says the card is "
        "fine. Our IBAN for manual payment: {iban}.",
    ),
    (
        "email",
        "Subject: change of bank details\n\nHello,\nfrom next month please pay my salary to {iban} instead. "
        "My personal number and address have not changed: {address}.\n\n{person}",
    ),
    (
        "ticket",
        "Reset requested for user {email_internal} (owner {person}). Last login from {ip} on {date}.",
    ),
    (
        "email",
        "To: {email_internal}\nCc: {agent_email}\n\nHi {person_first}, the lab results for {patient} are "
        "ready. You can reach the lab on {phone}.",
    ),
    (
        "chat",
        "{agent_first}: who is the contact at the {city_word} office?\n{person_first}: {person}, "
        "{email_internal}, {phone}",
    ),
    (
        "clinical_note",
        "Discharge {date}. {patient} (MRN {mrn}) to continue medication at home, {address}. Appointment "
        "with {doctor} on {date2}.",
    ),
    (
        "crm_note",
        "{person} asked us to delete all data we hold about them (GDPR art. 17). Their SSN {ssn} from the US "
        "payroll file must go too. Confirmed by phone {phone}.",
    ),
    (
        "ticket",
        "Card {card} (holder {person}) was used from IP {ip} for a payment we do not recognise. Please block "
        "it and call the holder back at {phone}.",
    ),
    (
        "signature",
        "Med vänliga hälsningar / Kind regards\n{person}\n{phone}",
    ),
    (
        "github_issue",
        "cc @{handle} - this is the same bug {person_first} saw last week. Repro with the account of "
        "{person2} (born {dob}).",
    ),
)

_JOBS = (
    "Head of Finance",
    "Practice Manager",
    "IT Administrator",
    "Chief Nurse",
    "Sales Director",
    "Data Protection Officer",
    "Office Manager",
)
_COMPANIES = ("Nordlys Health AB", "Medivet Kft.", "Zorgpunt B.V.", "Clinica Solaris S.r.l.", "Terveystalo Oy")
_CITY_WORDS = ("Budapest", "Tampere", "Tallinn", "Lyon", "Gdansk", "Porto", "Utrecht", "Brno", "Aarhus", "Izmir")
_INTERNAL_DOMAINS = ("hospital.example", "acme.internal", "clinic.local", "corp.lan", "medcenter.corp", "it.test")

# IBAN: country -> (length, BBAN made of "n" digits, "a" upper-case letters, "c" alphanumerics)
_IBAN_FORMATS = {
    "DE": "18n",
    "FR": "10n11c2n",
    "ES": "20n",
    "IT": "1a10n12c",
    "NL": "4a10n",
    "BE": "12n",
    "AT": "16n",
    "PL": "24n",
    "SE": "20n",
    "DK": "14n",
    "FI": "14n",
    "HU": "24n",
    "CZ": "20n",
    "PT": "21n",
    "GB": "4a14n",
    "IE": "4a14n",
    "EE": "16n",
    "NO": "11n",
    "RO": "4a16c",
    "TR": "5n1n16c",
}


def _luhn_digit(body: str) -> str:
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return str((10 - total % 10) % 10)


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


# network -> (prefixes, lengths, grouping): grouping None means groups of four
_CARDS = (
    ("visa", ("4",), (13, 16, 19)),
    ("mastercard", ("51", "52", "53", "54", "55", "2221", "2500", "2720"), (16,)),
    ("amex", ("34", "37"), (15,)),
    ("discover", ("6011", "644", "65"), (16, 19)),
    ("jcb", ("3528", "3540", "3589"), (16, 17, 18, 19)),
    ("diners", ("300", "305", "36", "38", "39"), (14, 16)),
    ("maestro", ("5018", "5020", "5038", "5893", "6304", "6759", "6761", "6763"), (12, 13, 15, 16, 18, 19)),
    ("unionpay", ("62",), (16, 17, 18, 19)),
    ("mir", ("2200", "2204"), (16,)),
    ("rupay", ("60", "6521", "508"), (16,)),
    ("troy", ("9792",), (16,)),
)


def card_number(rng: random.Random) -> str:
    network, prefixes, lengths = rng.choice(_CARDS)
    prefix = rng.choice(prefixes)
    length = rng.choice(lengths)
    body = prefix + _digits(rng, length - len(prefix) - 1)
    number = body + _luhn_digit(body)
    style = rng.random()
    if style < 0.25:
        return number
    if network == "amex" or network == "diners" and length == 14:
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number[i : i + 4] for i in range(0, length, 4)]
    return ("-" if style < 0.4 else " ").join(groups)


def iban(rng: random.Random) -> str:
    country = rng.choice(sorted(_IBAN_FORMATS))
    bban = ""
    for count, kind in re.findall(r"(\d+)([nac])", _IBAN_FORMATS[country]):
        alphabet = {"n": string.digits, "a": string.ascii_uppercase, "c": string.digits + string.ascii_uppercase}[kind]
        bban += "".join(rng.choice(alphabet) for _ in range(int(count)))
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    check = 98 - int(numeric) % 97
    value = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def iban_valid(value: str) -> bool:
    compact = value.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


_PHONE_TYPES = (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE)


def phone_number(rng: random.Random, region: str | None = None) -> str:
    """A valid number of `region` (or any region), varied in its last digits, written as people write it."""
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    for _ in range(50):
        chosen = region if region and rng.random() < 0.7 else rng.choice(regions)
        example = phonenumbers.example_number_for_type(chosen, rng.choice(_PHONE_TYPES))
        if example is None:
            continue
        national = str(example.national_number)
        for _ in range(10):
            varied = national[:-3] + _digits(rng, 3) if len(national) > 5 else national
            number = phonenumbers.PhoneNumber(country_code=example.country_code, national_number=int(varied))
            if example.italian_leading_zero:
                number.italian_leading_zero = True
                number.number_of_leading_zeros = example.number_of_leading_zeros
            if phonenumbers.is_valid_number(number):
                return _written(rng, number)
    raise RuntimeError("no valid phone number found")


def _written(rng: random.Random, number: phonenumbers.PhoneNumber) -> str:
    international = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(number)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region) if region else None
    trunk = metadata.national_prefix if metadata else None
    shape = rng.randrange(9)
    if shape == 0:
        return national
    if shape == 1:
        return e164
    if shape == 2:
        return international.replace(" ", ".", rng.randint(0, 9)).replace("-", ".")
    if shape == 3:
        return international.replace(" ", "-").replace("+", "00", rng.random() < 0.3)
    if shape == 4 and trunk == "0":
        cc, _, rest = international.partition(" ")
        return f"{cc} (0){rest}"
    if shape == 5:
        return re.sub(r"[\s().-]", "", national) if not national.startswith("(") else national
    if shape == 6:
        return "00" + international[1:]
    if shape == 7:
        return national.replace(" ", "-")
    return international


_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def written_date(rng: random.Random, start_year: int, end_year: int) -> str:
    date = dt.date(rng.randint(start_year, end_year), rng.randint(1, 12), rng.randint(1, 28))
    shape = rng.randrange(8)
    return (
        f"{date.day:02d}.{date.month:02d}.{date.year}",
        f"{date.day}.{date.month}.{date.year}",
        date.isoformat(),
        f"{date.day:02d}/{date.month:02d}/{date.year}",
        f"{date.day} {_MONTHS[date.month - 1]} {date.year}",
        f"{date.day} {_MONTHS[date.month - 1][:3]} {date.year}",
        f"{_MONTHS[date.month - 1]} {date.day}, {date.year}",
        f"{date.year}/{date.month:02d}/{date.day:02d}",
    )[shape]


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


Segment = tuple[str, str | None]


class _Cast:
    def __init__(self, rng: random.Random, fakers: dict[str, Faker]):
        self.rng = rng
        self.fakers = fakers
        self.values: dict[str, list[Segment]] = {}
        self.people: dict[str, tuple[str, str, str]] = {}
        self.locale = rng.choice(LOCALES)  # most people of one text share a country

    def fake(self, locale: str) -> Faker:
        fake = self.fakers[locale]
        fake.seed_instance(self.rng.getrandbits(32))
        return fake

    def person(self, role: str) -> tuple[str, str, str]:
        if role not in self.people:
            locale = self.locale if self.rng.random() < 0.6 else self.rng.choice(LOCALES)
            fake = self.fake(locale)
            if locale == "ja_JP":
                first, last = fake.first_romanized_name(), fake.last_romanized_name()
            else:
                first, last = fake.first_name(), fake.last_name()
            self.people[role] = (first, last, locale)
        return self.people[role]


def _name(role: str, part: str) -> Callable[[_Cast], list[Segment]]:
    def slot(cast: _Cast) -> list[Segment]:
        first, last, locale = cast.person(role)
        if part == "full" and locale in ("hu_HU", "ja_JP") and cast.rng.random() < 0.4:
            return [(f"{last} {first}", "PERSON")]  # family name first, as written at home
        return [({"full": f"{first} {last}", "first": first, "last": last}[part], "PERSON")]

    return slot


def _email(role: str, internal: bool = False) -> Callable[[_Cast], list[Segment]]:
    def slot(cast: _Cast) -> list[Segment]:
        first, last, locale = cast.person(role)
        rng = cast.rng
        local = rng.choice(
            [f"{first}.{last}", f"{first[0]}{last}", f"{first}", f"{last}.{first[0]}", f"{first}_{last}"]
        )
        local = "".join(ch for ch in _ascii(local).lower() if ch.isalnum() or ch in "._")
        if internal or rng.random() < 0.35:
            domain = rng.choice(_INTERNAL_DOMAINS)
        else:
            domain = rng.choice([cast.fake(locale if locale != "ja_JP" else "en_US").domain_name(), "gmail.com"])
        return [(f"{local}@{domain}", "EMAIL_ADDRESS")]

    return slot


def _phone(role: str) -> Callable[[_Cast], list[Segment]]:
    def slot(cast: _Cast) -> list[Segment]:
        _, _, locale = cast.person(role)
        return [(phone_number(cast.rng, _LOCALE_REGION[locale]), "PHONE_NUMBER")]

    return slot


def _address(cast: _Cast) -> list[Segment]:
    _, _, locale = cast.person("person")
    if locale not in ADDRESS_LOCALES:
        locale = cast.rng.choice(ADDRESS_LOCALES)
    value = cast.fake(locale).address()
    if cast.rng.random() < 0.5:
        value = value.replace("\n", ", ")
    return [(value, "STREET_ADDRESS")]


def _ssn(cast: _Cast) -> list[Segment]:
    rng = cast.rng
    return [(f"{rng.randint(1, 665):03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}", "US_SSN")]


def _ip4(cast: _Cast) -> list[Segment]:
    rng = cast.rng
    first = rng.choice([rng.randint(11, 126), rng.randint(128, 191), rng.randint(193, 223), 192, 10])
    return [(f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}", "IP_ADDRESS")]


def _ip6(cast: _Cast) -> list[Segment]:
    rng = cast.rng
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if rng.random() < 0.5:
        value = "2001:db8:" + ":".join(groups[:2]) + "::" + groups[7]
    else:
        value = ":".join(groups)
    return [(value, "IP_ADDRESS")]


def _mrn(cast: _Cast) -> list[Segment]:
    rng = cast.rng
    return [
        (
            rng.choice([_digits(rng, 7), _digits(rng, 8), "00" + _digits(rng, 6), "H" + _digits(rng, 6)]),
            "MEDICAL_RECORD_NUMBER",
        )
    ]


def _plain(make: Callable[[random.Random], str], entity_type: str | None) -> Callable[[_Cast], list[Segment]]:
    return lambda cast: [(make(cast.rng), entity_type)]


SLOTS: dict[str, Callable[[_Cast], list[Segment]]] = {
    "person": _name("person", "full"),
    "person_first": _name("person", "first"),
    "person_last": _name("person", "last"),
    "person2": _name("person2", "full"),
    "person2_first": _name("person2", "first"),
    "person2_last": _name("person2", "last"),
    "person3": _name("person3", "full"),
    "person4_last": _name("person4", "last"),
    "patient": _name("patient", "full"),
    "patient_first": _name("patient", "first"),
    "patient_last": _name("patient", "last"),
    "agent": _name("agent", "full"),
    "agent_first": _name("agent", "first"),
    "doctor": _name("doctor", "full"),
    "doctor_last": _name("doctor", "last"),
    "email": _email("person"),
    "email_internal": _email("person", internal=True),
    "agent_email": _email("agent"),
    "handle": lambda cast: [
        (_ascii(f"{cast.person('person2')[0]}.{cast.person('person2')[1]}").lower().replace(" ", ""), "PERSON")
    ],
    "phone": _phone("person"),
    "phone2": _phone("person"),
    "card": _plain(card_number, "CREDIT_CARD"),
    "iban": _plain(iban, "IBAN_CODE"),
    "ip": _ip4,
    "ip6": _ip6,
    "address": _address,
    "dob": _plain(lambda rng: written_date(rng, 1935, 2010), "DATE_TIME"),
    "date": _plain(lambda rng: written_date(rng, 2022, 2026), "DATE_TIME"),
    "date2": _plain(lambda rng: written_date(rng, 2022, 2026), "DATE_TIME"),
    "mrn": _mrn,
    "ssn": _ssn,
    # not personal data
    "time": _plain(lambda rng: f"{rng.randint(8, 17)}:{rng.randint(0, 59):02d}", None),
    "time2": _plain(lambda rng: f"{rng.randint(8, 17)}:{rng.randint(0, 59):02d}", None),
    "amount": _plain(lambda rng: f"{rng.randint(5, 900)},{rng.randint(0, 99):02d}", None),
    "year": _plain(lambda rng: str(rng.randint(1990, 2020)), None),
    "job": _plain(lambda rng: rng.choice(_JOBS), None),
    "company": _plain(lambda rng: rng.choice(_COMPANIES), None),
    "city_word": _plain(lambda rng: rng.choice(_CITY_WORDS), None),
    "ticket": _plain(lambda rng: f"#{rng.randint(1000, 99999)}", None),
}


def _render(template: str, cast: _Cast) -> tuple[str, list[GoldSpan]]:
    return render_slots(template, cast.values, lambda name: SLOTS[name](cast))


def generate_intl_set(count: int = 1500, seed: int = 7) -> list[EvalExample]:
    """`count` examples; every template is used once before the rest are drawn at random."""
    rng = random.Random(seed)
    fakers = {locale: Faker(locale) for locale in LOCALES}
    examples = []
    for number in range(count):
        kind, template = TEMPLATES[number] if number < len(TEMPLATES) else rng.choice(TEMPLATES)
        cast = _Cast(random.Random(rng.getrandbits(64)), fakers)
        text, spans = _render(template, cast)
        examples.append(EvalExample(f"intl-{seed}-{number:05d}", kind, text, tuple(spans)))
    return examples
