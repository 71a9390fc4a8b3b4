"""A realistic, reproducible contact set for the demo and the benchmarks.

Names in many scripts and with accents, e-mail addresses that follow them, countries on several
continents, creation times spread over a year and across the day (so time-zone conversions show),
and a few rows the import must reject (over-long last names, e-mails shared by two CRM records).
The same people also exist as Dataverse rows (`dynamics_contacts`), under their own e-mail domain, for
the Dynamics emulator; Dataverse enforces its own limits (50-character last names, unique e-mail key),
so that set has no rejects.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

PEOPLE: list[tuple[str, str, str]] = [
    ("Éloïse", "Lefèvre", "France"),
    ("François", "Dupré", "France"),
    ("Zoé", "Mégret", "France"),
    ("Jürgen", "Müller", "Germany"),
    ("Anneliese", "Schäfer", "Germany"),
    ("José", "Peña", "Spain"),
    ("María José", "Núñez", "Spain"),
    ("João", "Gonçalves", "Portugal"),
    ("Łukasz", "Wójcik", "Poland"),
    ("Zsófia", "Kovács", "Hungary"),
    ("Şükrü", "Öztürk", "Turkey"),
    ("Björn", "Åkesson", "Sweden"),
    ("Søren", "Kierkegård", "Denmark"),
    ("Γιώργος", "Παπαδόπουλος", "Greece"),
    ("Дмитрий", "Иванов", "Russia"),
    ("Олена", "Шевченко", "Ukraine"),
    ("伟", "王", "China"),
    ("娜", "李", "China"),
    ("花子", "佐藤", "Japan"),
    ("민준", "김", "South Korea"),
    ("محمد", "العلي", "Morocco"),
    ("प्रिया", "शर्मा", "India"),
    ("Nguyễn", "Thị Hương", "Vietnam"),
    ("Chloé", "O'Brien", "Ireland"),
    ("Seán", "Ó Briain", "Ireland"),
    ("Amélie", "Tremblay", "Canada"),
    ("Thiago", "Araújo", "Brazil"),
    ("Aroha", "Ngāta", "New Zealand"),
    ("Kwame", "Mensah", "Ghana"),
    ("Emily", "Smith", "United States"),
    ("Noah", "García", "Mexico"),
]
SOURCES = ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other", None]


def ascii_slug(text: str) -> str:
    """Latin letters of a name for its e-mail address; scripts without them give an empty slug."""
    decomposed = unicodedata.normalize("NFKD", text)
    return (
        "".join(c for c in decomposed if c.isascii() and (c.isalnum() or c == " "))
        .strip()
        .lower()
        .replace(" ", "")
    )


def contacts(count: int, *, now: datetime, seed: int = 7, rejects: bool = True) -> Iterator[dict[str, Any]]:
    """`count` contacts modified over the year before `now`; with `rejects`, about 1 in 400 must be refused."""
    rng = random.Random(seed)
    for index in range(count):
        first, last, country = PEOPLE[index % len(PEOPLE)]
        local = f"{ascii_slug(first) or 'contact'}.{ascii_slug(last) or 'crm'}.{index}"
        modified = now - timedelta(days=rng.uniform(1, 365), seconds=rng.randint(0, 86_399))
        created = modified - timedelta(days=rng.uniform(0, 200))
        row: dict[str, Any] = {
            "FirstName": first,
            "LastName": last,
            "Email": f"{local}@example.org",
            "Phone": f"+33 1 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
            "MailingCountry": country,
            "Birthdate": (datetime(1950, 1, 1) + timedelta(days=rng.randint(0, 20_000))).date().isoformat(),
            "LeadSource": SOURCES[index % len(SOURCES)],
            "HasOptedOutOfEmail": index % 17 == 0,
            "DoNotCall": index % 23 == 0,
            "CreatedDate": created.isoformat(),
            "LastModifiedDate": modified.isoformat(),
            "SystemModstamp": modified.isoformat(),
        }
        if rejects and index % 400 == 199:
            row["LastName"] = last + " " + "-".join(["de la Fuente y Gómez"] * 5)  # over 80 characters
        if rejects and index % 400 == 399:
            row["Email"] = f"{ascii_slug(PEOPLE[0][0])}.{ascii_slug(PEOPLE[0][1])}.0@example.org"  # shared e-mail
        yield row


def subscriptions(contact_ids: list[str], *, now: datetime, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for index, contact in enumerate(contact_ids[: max(1, len(contact_ids) // 4)]):
        stamp = (now - timedelta(days=rng.uniform(1, 90))).isoformat()
        rows.append(
            {
                "Name": ["Newsletter", "Product news", "Events", "Offers"][index % 4],
                "Status__c": ["Active", "Active", "Paused", "Cancelled"][index % 4],
                "Channel__c": ["Email", "SMS", "Post"][index % 3],
                "Contact__c": contact,
                "Subscription_Key__c": f"SUB-{index:06d}",
                "SystemModstamp": stamp,
                "LastModifiedDate": stamp,
            }
        )
    return rows


DYNAMICS_DOMAIN = "example.net"
CHANNELS = [100_000_000, 100_000_001, 100_000_002]  # new_channel: Email, SMS, Postal Mail


def dynamics_contacts(count: int, *, now: datetime, seed: int = 13) -> Iterator[dict[str, Any]]:
    """`count` Dataverse contact rows (Web API names), the people of `contacts`, modified over the last year."""
    for index, row in enumerate(contacts(count, now=now, seed=seed, rejects=False)):
        yield {
            "firstname": row["FirstName"],
            "lastname": row["LastName"],
            "emailaddress1": row["Email"].replace("@example.org", f"@{DYNAMICS_DOMAIN}"),
            "telephone1": row["Phone"],
            "address1_country": row["MailingCountry"],
            "birthdate": row["Birthdate"],
            "donotemail": row["HasOptedOutOfEmail"],
            "donotphone": row["DoNotCall"],
            "preferredcontactmethodcode": index % 5 + 1,
            "createdon": row["CreatedDate"],
            "modifiedon": row["LastModifiedDate"],
        }


def dynamics_subscriptions(contact_ids: list[str], *, now: datetime, seed: int = 17) -> list[dict[str, Any]]:
    """Rows of the `new_subscription` custom table for a quarter of the contacts."""
    rng = random.Random(seed)
    rows = []
    for index, contact in enumerate(contact_ids[: max(1, len(contact_ids) // 4)]):
        stamp = (now - timedelta(days=rng.uniform(1, 90))).isoformat()
        rows.append(
            {
                "new_name": ["Newsletter", "Product news", "Events", "Offers"][index % 4],
                "new_externalid": f"SUB-{index:06d}",
                "new_channel": CHANNELS[index % 3],
                "new_optin": index % 5 != 0,
                "_new_contactid_value": contact,
                "new_subscribedon": stamp,
                "modifiedon": stamp,
            }
        )
    return rows


def marketing_people(count: int, *, seed: int = 23) -> list[dict[str, Any]]:
    """People who signed up on the marketing side (forms, events): attributes of new profiles."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        first, last, country = PEOPLE[(index * 7) % len(PEOPLE)]
        rows.append(
            {
                "firstName": first,
                "lastName": last,
                "email": f"{ascii_slug(first) or 'lead'}.{ascii_slug(last) or 'web'}.m{index}@example.com",
                "phone": f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
                "country": country,
                "company": ["Acme", "Globex", "Initech", "Umbrella", "Hooli"][index % 5],
            }
        )
    return rows


# ------------------------------------------------------------------------------------- seeding
# What `crmsync demo` and `crmsync local up --seed` load into the emulators, so that the documented
# workflow (apply examples/syncs.yaml, run its syncs) works against them.
EXPORT_ID_FIELD = "Marketing_Profile_Id__c"


def seed_salesforce(crm: Any, *, contacts_count: int, now: datetime) -> list[str]:
    """Contacts (with a few rows the import must reject) and the Subscription__c custom object's rows;
    the Contact ids, in order."""
    rows = list(contacts(contacts_count, now=now))
    ids: list[str] = []
    for start in range(0, len(rows), 5000):
        ids += crm.seed("Contact", rows[start : start + 5000])
    crm.seed("Subscription__c", subscriptions(ids, now=now))
    return ids


def define_export_fields(crm: Any) -> None:
    """The external id that `sf-people-export` upserts Leads and Contacts by (examples/syncs.yaml)."""
    for sobject in ("Lead", "Contact"):
        crm.define_object(
            sobject,
            fields=[{"name": EXPORT_ID_FIELD, "type": "string", "length": 64, "externalId": True, "unique": True}],
        )


def seed_dynamics(crm: Any, *, contacts_count: int, now: datetime) -> tuple[list[str], list[str]]:
    """Contacts and rows of the custom table new_subscription; their ids."""
    rows = list(dynamics_contacts(contacts_count, now=now))
    ids: list[str] = []
    for start in range(0, len(rows), 5000):
        ids += crm.put_records("contacts", rows[start : start + 5000])
    subscription_ids = crm.put_records("new_subscriptions", dynamics_subscriptions(ids, now=now))
    return ids, subscription_ids
