"""The Dynamics connector against the Dataverse emulator, over HTTPS, with the real msal and requests."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from crmsync.config import DynamicsConnection
from crmsync.connectors.dynamics.connector import ID_CHUNK
from crmsync.connectors.port import RecordQuery
from crmsync.connectors.retry import RetryPolicy
from crmsync.domain.filters import AllOf, Condition
from crmsync.domain.types import CrmFieldType
from crmsync.errors import (
    ConfigurationError,
    CrmAuthenticationFailed,
    CrmRateLimited,
    CrmRequestRejected,
    CrmSecretInvalid,
    CrmUnavailable,
    DeltaTokenExpired,
)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
CONTACT_TYPES = {
    "contactid": CrmFieldType.ID,
    "modifiedon": CrmFieldType.DATETIME,
    "parentcustomerid": CrmFieldType.REFERENCE,
    "donotemail": CrmFieldType.BOOLEAN,
}


def seed_contacts(emulator, count, start=T0, step=timedelta(minutes=1), **fields):
    rows = [
        {
            "firstname": f"Ana{i}",
            "lastname": f"Lima{i}",
            "emailaddress1": f"ana{i}.{uuid.uuid4().hex[:6]}@example.com",
            "modifiedon": (start + i * step).isoformat(),
            **fields,
        }
        for i in range(count)
    ]
    return emulator.control.put_records("contacts", rows)


def contacts_query(page_size=2000, **kwargs):
    kwargs.setdefault("fields", ("contactid", "modifiedon", "firstname", "emailaddress1"))
    return RecordQuery(object="contact", page_size=page_size, field_types=CONTACT_TYPES, **kwargs)


def window(start=None, end=None, **kwargs):
    return contacts_query(window_field="modifiedon", window_start=start, window_end=end, **kwargs)


def token_calls(emulator) -> int:
    return sum(n for key, n in emulator.control.stats()["calls"].items() if "oauth2/v2.0/token" in key)


def read_all(connector, page):
    records, pages = list(page.records), 1
    while page.next_cursor:
        page = connector.read_next_page(page.next_cursor)
        records += page.records
        pages += 1
    return records, pages, page


# -- authentication (SPEC C2) ----------------------------------------------------------------------------
@pytest.mark.parametrize("flow", ["client_secret", "certificate"])
def test_each_credential_kind_gets_a_token_through_msal(make_dynamics_connector, flow):
    assert make_dynamics_connector(flow).describe("contact").entity_set == "contacts"


def test_a_certificate_given_by_thumbprint_also_signs_in(make_dynamics_connector, dynamics_emulator):
    app = dynamics_emulator.certificate_app
    secret = {"client_id": app.client_id, "private_key": app.private_key_pem, "thumbprint": app.thumbprint}
    assert make_dynamics_connector("certificate", secret=secret).server_time() is not None


def test_the_token_is_acquired_once_and_served_from_the_cache(dynamics, dynamics_emulator):
    dynamics.describe("contact")
    dynamics.server_time()
    dynamics.read_first_page(contacts_query())
    assert token_calls(dynamics_emulator) == 1


def test_wrong_client_secret_fails_naming_the_scope_and_the_aadsts_code_without_retrying(
    make_dynamics_connector, dynamics_emulator
):
    secret = {"client_id": dynamics_emulator.secret_app.client_id, "client_secret": "wrong"}
    with pytest.raises(CrmAuthenticationFailed) as refused:
        make_dynamics_connector(secret=secret).describe("contact")
    assert f"scope {dynamics_emulator.url}/.default" in str(refused.value)
    assert "invalid_client (AADSTS7000215)" in str(refused.value)
    assert "wrong" not in str(refused.value)
    assert token_calls(dynamics_emulator) == 1


def test_secret_missing_a_field_names_the_field(make_dynamics_connector):
    with pytest.raises(CrmSecretInvalid, match="lacks client_secret"):
        make_dynamics_connector(secret={"client_id": "abc"})


def test_a_private_key_that_is_not_pem_is_named_as_such(make_dynamics_connector):
    with pytest.raises(CrmSecretInvalid, match="private_key is not a usable PEM private key"):
        make_dynamics_connector("certificate", secret={"client_id": "a", "private_key": "x", "thumbprint": "AB"})


def test_an_unknown_tenant_is_an_authentication_failure_naming_the_authority(
    make_dynamics_connector, dynamics_emulator
):
    other = "11111111-2222-4333-8444-555555555555"
    connector = make_dynamics_connector(tenant_id=other, authority=f"{dynamics_emulator.url}/{other}")
    with pytest.raises(CrmAuthenticationFailed, match="does not know the authority"):
        connector.server_time()


def test_expired_token_mid_run_is_renewed_once(dynamics, dynamics_emulator):
    seed_contacts(dynamics_emulator, 3)
    dynamics.describe("contact")
    dynamics_emulator.control.expire_access_tokens()
    assert len(dynamics.read_first_page(contacts_query()).records) == 3
    assert token_calls(dynamics_emulator) == 2


def test_a_token_for_the_wrong_resource_fails_naming_the_scope_and_the_resource_the_org_wants(
    make_dynamics_connector, dynamics_emulator
):
    dynamics_emulator.control.register_resource("https://other.crm4.dynamics.com")
    connector = make_dynamics_connector(resource="https://other.crm4.dynamics.com")
    with pytest.raises(CrmAuthenticationFailed) as refused:
        connector.describe("contact")
    message = str(refused.value)
    assert "for scope https://other.crm4.dynamics.com/.default, also after renewing it" in message
    assert "issued for another resource" in message
    assert (
        f"the org accepts tokens for {dynamics_emulator.url} (scope {dynamics_emulator.url}/.default)" in message
    )


def test_a_resource_the_tenant_does_not_know_is_refused_by_entra_naming_the_scope(make_dynamics_connector):
    with pytest.raises(
        CrmAuthenticationFailed, match=r"scope https://nowhere\.example\.com/\.default: invalid_resource"
    ):
        make_dynamics_connector(resource="https://nowhere.example.com").describe("contact")


def test_non_https_url_or_authority_is_refused_by_configuration(dynamics_emulator):
    base = {"kind": "dynamics", "name": "d", "tenant_id": dynamics_emulator.tenant_id, "secret": "crmsync/d"}
    with pytest.raises(ValueError, match="is not an https:// URL"):
        DynamicsConnection.model_validate({**base, "instance_url": "http://acme.crm4.dynamics.com"})
    with pytest.raises(ValueError, match="is not an https:// URL"):
        DynamicsConnection.model_validate(
            {**base, "instance_url": dynamics_emulator.url, "authority": "http://login.example.com/t"}
        )


# -- schema (SPEC S1, S3) --------------------------------------------------------------------------------
def test_describe_maps_attribute_types_and_reads_the_table_identity(dynamics):
    contact = dynamics.describe("contact")
    assert {name: contact.field(name).crm_type for name in CONTACT_TYPES} == CONTACT_TYPES
    assert contact.field("birthdate").crm_type is CrmFieldType.DATE
    assert contact.field("preferredcontactmethodcode").crm_type is CrmFieldType.INTEGER
    assert (contact.id_field, contact.entity_set, contact.change_tracking) == ("contactid", "contacts", True)
    assert dynamics.describe("systemuser").change_tracking is False


def test_an_unknown_table_is_a_configuration_error(dynamics):
    with pytest.raises(ConfigurationError, match="no table 'contactt'"):
        dynamics.describe("contactt")


def test_an_entity_set_name_given_as_table_hints_at_the_logical_name(dynamics):
    with pytest.raises(ConfigurationError, match="'contacts' is the entity set of table 'contact'"):
        dynamics.describe("contacts")


def test_list_objects_and_limits_report_what_the_org_tells(dynamics):
    objects = {o.name: o for o in dynamics.list_objects()}
    assert objects["new_subscription"].custom is True
    assert objects["contact"].custom is False
    limits = dynamics.limits()
    assert 0 < limits.details["requests_remaining"] < 6000
    assert limits.details["execution_ms_remaining"] > 0


def test_server_time_is_the_crm_clock_not_ours(dynamics, dynamics_emulator):
    dynamics_emulator.control.set_clock("2030-01-02T03:04:05Z", frozen=True)
    assert dynamics.server_time() == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


# -- reading (SPEC I1-I8) --------------------------------------------------------------------------------
def test_window_reads_start_inclusive_end_exclusive(dynamics, dynamics_emulator):
    seed_contacts(dynamics_emulator, 5)
    page = dynamics.read_first_page(window(T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)))
    assert [r["firstname"] for r in page.records] == ["Ana1", "Ana2"]


def test_pages_follow_next_links_until_the_last(dynamics, dynamics_emulator):
    seed_contacts(dynamics_emulator, 45)
    records, pages, _ = read_all(dynamics, dynamics.read_first_page(window(page_size=20)))
    assert (pages, len(records), len({r["contactid"] for r in records})) == (3, 45, 45)
    assert [r["firstname"] for r in records[:2]] == ["Ana0", "Ana1"]


def test_a_next_link_to_another_host_is_refused_before_any_call(dynamics, dynamics_emulator):
    seed_contacts(dynamics_emulator, 3)
    page = dynamics.read_first_page(window(page_size=1))
    stolen = json.loads(page.next_cursor)
    stolen["link"] = stolen["link"].replace(dynamics_emulator.url, "https://evil.example.com")
    calls = dynamics.api_calls
    with pytest.raises(ConfigurationError, match=r"only 127\.0\.0\.1"):
        dynamics.read_next_page(json.dumps(stolen))
    with pytest.raises(ConfigurationError, match="not a Dynamics next link"):
        dynamics.read_next_page("https://evil.example.com/steal")
    assert dynamics.api_calls == calls


def test_filter_renders_into_a_query_the_crm_accepts(dynamics, dynamics_emulator):
    seed_contacts(dynamics_emulator, 2, donotemail=False)
    seed_contacts(dynamics_emulator, 1, donotemail=True)
    seed_contacts(dynamics_emulator, 1, donotemail=False, emailaddress1=None)
    condition = AllOf(
        all=[Condition(field="donotemail", op="eq", value=0), Condition(field="emailaddress1", op="is_not_empty")]
    )
    assert len(dynamics.read_first_page(contacts_query(filter=condition)).records) == 2


def test_query_text_in_a_filter_cannot_reach_the_crm(dynamics):
    """A filter value is a number by construction; a tampered tree is refused before any call."""
    dynamics.describe("contact")
    calls = dynamics.api_calls
    injected_field = Condition.model_construct(field="lastname eq 'x' or contactid", op="is_empty", value=None)
    injected_value = Condition.model_construct(field="donotemail", op="eq", value="0 or 1 eq 1")
    for tampered in (injected_field, injected_value):
        with pytest.raises(ConfigurationError):
            dynamics.read_first_page(contacts_query(filter=tampered))
    assert dynamics.api_calls == calls


def test_a_field_that_is_not_an_attribute_is_refused_by_the_crm_as_a_permanent_error(dynamics):
    with pytest.raises(CrmRequestRejected, match="Could not find a property named 'nosuchfield'"):
        dynamics.read_first_page(contacts_query(fields=("contactid", "nosuchfield")))


def test_lookups_arrive_under_their_logical_name_and_labels_replace_values(dynamics, dynamics_emulator):
    (account,) = dynamics_emulator.control.put_records("accounts", [{"name": "Contoso"}])
    seed_contacts(
        dynamics_emulator,
        1,
        _parentcustomerid_value=account,
        **{"_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "account"},
        preferredcontactmethodcode=2,
    )
    fields = ("contactid", "modifiedon", "parentcustomerid", "preferredcontactmethodcode")
    (raw,) = dynamics.read_first_page(contacts_query(fields=fields)).records
    (labelled,) = dynamics.read_first_page(
        contacts_query(fields=fields, labels=("parentcustomerid", "preferredcontactmethodcode"))
    ).records
    assert (raw["parentcustomerid"], raw["preferredcontactmethodcode"]) == (account, 2)
    assert (labelled["parentcustomerid"], labelled["preferredcontactmethodcode"]) == ("Contoso", "Email")
    assert not any("@" in key for key in labelled)


def _prefer_headers(monkeypatch) -> list[str]:
    """The Prefer header of every record read the connector sends (what Dataverse is asked to add)."""
    sent: list[str] = []
    original = requests.Session.send

    def send(self, request, **kwargs):
        if "/contacts?" in (request.url or ""):
            sent.append(request.headers.get("Prefer", ""))
        return original(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    return sent


def test_option_and_yes_no_labels_come_from_metadata_without_annotations(dynamics, dynamics_emulator, monkeypatch):
    seed_contacts(dynamics_emulator, 2, preferredcontactmethodcode=2, donotemail=True)
    prefer = _prefer_headers(monkeypatch)
    fields = ("contactid", "modifiedon", "preferredcontactmethodcode", "donotemail")

    records = dynamics.read_first_page(
        contacts_query(fields=fields, labels=("preferredcontactmethodcode", "donotemail"))
    ).records

    assert [(r["preferredcontactmethodcode"], r["donotemail"]) for r in records] == [("Email", "Do Not Allow")] * 2
    assert prefer == ["odata.maxpagesize=2000"]


def test_a_lookup_label_still_asks_for_formatted_values(dynamics, dynamics_emulator, monkeypatch):
    seed_contacts(dynamics_emulator, 1)
    prefer = _prefer_headers(monkeypatch)

    dynamics.read_first_page(
        contacts_query(fields=("contactid", "parentcustomerid"), labels=("parentcustomerid",))
    )

    assert prefer == [
        'odata.maxpagesize=2000,odata.include-annotations="OData.Community.Display.V1.FormattedValue"'
    ]


def test_option_labels_are_read_once_per_connector(dynamics, dynamics_emulator):
    seed_contacts(dynamics_emulator, 1, preferredcontactmethodcode=1)
    query = contacts_query(
        fields=("contactid", "preferredcontactmethodcode"), labels=("preferredcontactmethodcode",)
    )
    dynamics.read_first_page(query)
    dynamics_emulator.control.reset_stats()

    dynamics.read_first_page(query)

    calls = dynamics_emulator.control.stats()["calls"]
    assert [key for key in calls if "EntityDefinitions" in key or "contacts" in key] == [
        "GET /api/data/v9.2/contacts"
    ]


def test_records_by_id_return_only_those_that_exist_across_chunks(dynamics, dynamics_emulator):
    ids = seed_contacts(dynamics_emulator, ID_CHUNK * 2 + 5)
    unknown = str(uuid.uuid4())
    records = dynamics.read_by_ids(contacts_query(ids=(*ids, unknown)))
    assert sorted(r["contactid"] for r in records) == sorted(ids)


def test_reads_by_id_never_exceed_the_connection_max_concurrency(make_dynamics_connector, dynamics_emulator):
    ids = seed_contacts(dynamics_emulator, ID_CHUNK * 6)
    dynamics_emulator.control.configure(service_protection={"max_concurrent": 2, "concurrency_retry_after": 0})
    sleeps: list[float] = []
    connector = make_dynamics_connector(max_concurrency=2, retry=RetryPolicy(attempts=4, sleep=sleeps.append))
    assert len(connector.read_by_ids(contacts_query(ids=tuple(ids)))) == len(ids)
    assert sleeps == []


# -- service protection and failures ---------------------------------------------------------------------
def test_429_with_retry_after_is_waited_out_and_recovers(make_dynamics_connector, dynamics_emulator):
    seed_contacts(dynamics_emulator, 2)
    dynamics_emulator.control.add_fault(
        r"GET /api/data/v9\.2/contacts", status=429, times=2, headers={"Retry-After": "7"}
    )
    sleeps: list[float] = []
    connector = make_dynamics_connector(retry=RetryPolicy(attempts=4, sleep=sleeps.append))
    assert len(connector.read_first_page(contacts_query()).records) == 2
    assert sleeps == [7.0, 7.0]


def test_a_429_storm_longer_than_the_retry_budget_surfaces_as_rate_limited(dynamics, dynamics_emulator):
    dynamics_emulator.control.add_fault(r"GET /api/data/v9\.2/contacts", status=429, times=100)
    with pytest.raises(CrmRateLimited, match="0x80072322"):
        dynamics.read_first_page(contacts_query())


def test_503_burst_longer_than_the_budget_surfaces_as_unavailable(dynamics, dynamics_emulator):
    dynamics_emulator.control.add_fault(r"GET /api/data/v9\.2/contacts", status=503, times=100)
    with pytest.raises(CrmUnavailable):
        dynamics.read_first_page(contacts_query())


def test_a_cut_connection_is_retried(dynamics, dynamics_emulator):
    seed_contacts(dynamics_emulator, 2)
    dynamics_emulator.control.add_fault(r"GET /api/data/v9\.2/contacts", drop_response=True, times=1)
    assert len(dynamics.read_first_page(contacts_query()).records) == 2


# -- change tracking (SPEC I7, D1) -----------------------------------------------------------------------
def initial_load(connector, page_size=2000):
    records, _, last = read_all(connector, connector.read_changes(contacts_query(page_size=page_size), None))
    return records, last.delta_link


def test_an_initial_load_pages_every_record_and_ends_with_a_delta_link(dynamics, dynamics_emulator):
    seed_contacts(dynamics_emulator, 7)
    records, delta_link = initial_load(dynamics, page_size=3)
    assert len(records) == 7
    assert delta_link.startswith(f"{dynamics_emulator.api_url}/contacts?")
    assert "$deltatoken=" in delta_link


def test_a_delta_link_sees_creates_updates_and_deletes(dynamics, dynamics_emulator):
    kept, changed, removed = seed_contacts(dynamics_emulator, 3)
    _, delta_link = initial_load(dynamics)
    dynamics_emulator.control.put_records("contacts", [{"contactid": changed, "firstname": "Changed"}])
    (created,) = seed_contacts(dynamics_emulator, 1, firstname="Created")
    dynamics_emulator.control.delete_record("contacts", removed)

    changes, _, last = read_all(dynamics, dynamics.read_changes(contacts_query(), delta_link))
    page = dynamics.read_changes(contacts_query(), delta_link)

    assert {r["contactid"]: r["firstname"] for r in changes} == {changed: "Changed", created: "Created"}
    assert page.deleted_ids == (removed,)
    assert kept not in {r["contactid"] for r in changes}
    assert last.delta_link != delta_link


def test_an_expired_delta_link_is_reported_as_such(dynamics, dynamics_emulator):
    seed_contacts(dynamics_emulator, 1)
    _, delta_link = initial_load(dynamics)
    dynamics_emulator.control.expire_delta_tokens()
    with pytest.raises(DeltaTokenExpired, match="0x80044352"):
        dynamics.read_changes(contacts_query(), delta_link)


def test_a_delta_link_from_another_table_or_host_is_refused_before_any_call(dynamics, dynamics_emulator):
    dynamics.describe("contact")
    lead_link = dynamics.read_changes(RecordQuery(object="lead", fields=("leadid", "modifiedon")), None).delta_link
    calls = dynamics.api_calls
    with pytest.raises(ConfigurationError, match="the delta link reads 'leads', not 'contacts'"):
        dynamics.read_changes(contacts_query(), lead_link)
    with pytest.raises(ConfigurationError, match="refusing a delta link"):
        dynamics.check_delta_link(lead_link.replace("127.0.0.1", "localhost"), "lead")
    assert dynamics.api_calls == calls
