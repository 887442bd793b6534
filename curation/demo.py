"""Synthetic, realistic support tickets for the demo (plain Python, seeded, no network).

A healthcare-CRM software firm answers its clinic and hospital customers. Messages carry the kind
of personal and health data real tickets do (names, emails, phones, SSNs, medical record numbers,
dates of birth, street addresses) so that redaction has something real to find. Every value is
invented by Faker with a fixed seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from faker import Faker

SEGMENTS = ("clinic", "hospital", "pharmacy")
CHANNELS = ("email", "portal", "phone")

# (category, customer message template, agent reply template)
_TEMPLATES = (
    (
        "login",
        "Hi, this is {name} from {org}. I can't log in to the patient portal since this morning; it says my "
        "password expired. My work email is {email} and you can call me at {phone}.",
        "Hello {first}, thank you for letting us know, and sorry for the trouble this morning. I've reset your "
        "portal password and sent a link to your work email; it is valid for 24 hours. If it doesn't arrive "
        "within ten minutes, reply here and I'll call you.",
    ),
    (
        "billing",
        "Our invoice {invoice} charges us for 45 seats but {org} only has 38 users. Please correct it. "
        "Billing contact: {name}, {email}.",
        "Hi {first}, you're right, and I apologise for the mix-up. I've corrected invoice {invoice} to 38 seats "
        "and issued a credit for the difference. You'll receive the updated invoice by email today.",
    ),
    (
        "records",
        "The chart for patient {patient} (MRN {mrn}, DOB {dob}) shows a duplicate allergy entry after the sync "
        "last night. Can you merge them? I'm {name}, charge nurse at {org}.",
        "Thank you, {first}. I understand how important accurate allergy records are. I've merged the duplicate "
        "entry for that chart and checked the sync log: it was a one-off retry. The chart now shows one entry.",
    ),
    (
        "integration",
        "Since the upgrade, lab results from our HL7 feed arrive twice in {org}'s inbox. Ticket raised by {name} "
        "({phone}). It affects patient {patient}, MRN {mrn}, among others.",
        "Hi {first}, thanks for the detailed report. The upgrade turned on a second listener for your HL7 feed. "
        "I've switched it off and removed the duplicates from the last 48 hours. Please tell us if you see any "
        "new duplicate results.",
    ),
    (
        "scheduling",
        "Patient {patient} (DOB {dob}) could not book a follow-up online; the calendar shows no slots for Dr. "
        "{doctor} although the clinic is open. Please help. {name}, front desk, {org}.",
        "Hello {first}, thanks for flagging this. Dr. {doctor}'s online calendar was set to a closed template "
        "after the holiday. I've restored the normal template, so slots are visible again, and the patient can "
        "book now.",
    ),
    (
        "privacy",
        "A patient, {patient}, asked for a copy of everything we store about them. SSN on file: {ssn}, address "
        "{address}. What is the fastest way to export it? - {name}, privacy officer at {org}",
        "Hi {first}, thank you for handling this carefully. Use Reports > Patient data export, choose the "
        "patient, and tick 'Include audit trail'. The export is encrypted; the password is sent separately to "
        "your email. It meets the 30-day access-request deadline.",
    ),
)


def generate_tickets(count: int = 300, seed: int = 7) -> Iterator[dict]:
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    for number in range(1, count + 1):
        category, message, reply = rng.choice(_TEMPLATES)
        first, last = fake.first_name(), fake.last_name()
        values = {
            "name": f"{first} {last}",
            "first": first,
            "org": f"{fake.last_name()} {rng.choice(['Family Clinic', 'Medical Center', 'Pharmacy', 'Health'])}",
            "email": f"{first.lower()}.{last.lower()}@{fake.domain_name()}",
            "phone": fake.numerify("(###) 555-####"),
            "invoice": f"INV-{rng.randint(10000, 99999)}",
            "patient": fake.name(),
            "mrn": f"MRN-{rng.randint(1000000, 9999999)}",
            "dob": fake.date_of_birth(minimum_age=1, maximum_age=95).strftime("%m/%d/%Y"),
            "ssn": fake.ssn(),
            "address": fake.address().replace("\n", ", "),
            "doctor": fake.last_name(),
        }
        yield {
            "ticket_id": f"T-{20000 + number}",
            "customer_message": message.format(**values),
            "agent_reply": reply.format(**values),
            "category": category,
            "segment": rng.choice(SEGMENTS),
            "channel": rng.choice(CHANNELS),
        }


def write_tickets(path: Path, count: int = 300, seed: int = 7) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for ticket in generate_tickets(count, seed):
            handle.write(json.dumps(ticket, ensure_ascii=False) + "\n")
    return path
