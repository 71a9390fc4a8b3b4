"""Where an exported profile goes: by its link (SPEC E1), or as a Lead or Contact (SPEC E5)."""

import pytest

from crmsync.domain.records import RecordRejected
from crmsync.domain.routing import CrmMatch, Route, route_by_link, route_lead_or_contact


def route(links=None, email="ana@example.com", found=None):
    return route_lead_or_contact(links or {}, email, found or {}, lead="Lead", contact="Contact")


def test_a_linked_profile_is_updated():
    assert route_by_link("insert_or_update", "Contact", "003A") == Route("Contact", "update", "003A")


def test_an_unlinked_profile_is_inserted():
    assert route_by_link("insert_or_update", "Contact", None) == Route("Contact", "insert")


def test_update_mode_never_creates_and_rejects_an_unlinked_profile():
    with pytest.raises(RecordRejected) as refused:
        route_by_link("update", "Contact", None)
    assert refused.value.code.value == "NOT_LINKED"


def test_upsert_lets_the_crm_decide_by_the_external_id():
    assert route_by_link("upsert", "Contact", "003A") == Route("Contact", "upsert")


def test_a_person_the_crm_does_not_know_becomes_a_lead():
    assert route() == Route("Lead", "insert")


def test_a_person_known_as_a_lead_by_email_is_updated_as_that_lead():
    assert route(found={"ana@example.com": [CrmMatch("Lead", "00QA")]}) == Route("Lead", "update", "00QA")


def test_a_person_known_as_a_contact_by_email_is_updated_as_that_contact():
    assert route(found={"ana@example.com": [CrmMatch("Contact", "003A")]}) == Route("Contact", "update", "003A")


def test_a_contact_wins_over_a_lead_with_the_same_email():
    found = {"ana@example.com": [CrmMatch("Lead", "00QA"), CrmMatch("Contact", "003A")]}
    assert route(found=found) == Route("Contact", "update", "003A")


def test_two_contacts_with_the_same_email_are_ambiguous_and_rejected():
    found = {"ana@example.com": [CrmMatch("Contact", "003A"), CrmMatch("Contact", "003B")]}
    with pytest.raises(RecordRejected) as refused:
        route(found=found)
    assert refused.value.code.value == "MULTIPLE_MATCHES"
    assert "003A, 003B" in refused.value.message


def test_a_link_wins_over_an_email_match():
    found = {"ana@example.com": [CrmMatch("Contact", "003A")]}
    assert route(links={"Lead": "00QZ"}, found=found) == Route("Lead", "update", "00QZ")


def test_a_person_without_email_and_without_link_becomes_a_lead():
    assert route(email=None) == Route("Lead", "insert")
