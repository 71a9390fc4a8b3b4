"""Microsoft's own Dataverse SDK for Python (`powerplatform-dataverse-client`) against the emulator.

The SDK runs unchanged: it is given the org URL as `base_url` and an azure-identity credential whose
`authority` is the emulator (with instance discovery off, as for any non-public cloud); it trusts the test
CA the standard way requests and azure-core do, through `REQUESTS_CA_BUNDLE`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.identity import CertificateCredential, ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError
from PowerPlatform.Dataverse.models import UpsertItem

from tests.fixtures.dynamics_emulator import DynamicsEmulatorHandle


@pytest.fixture
def dataverse(
    dynamics_emulator: DynamicsEmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DataverseClient]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", dynamics_emulator.ca_bundle)
    app = dynamics_emulator.secret_app
    credential = ClientSecretCredential(
        app.tenant_id,
        app.client_id,
        str(app.client_secret),
        authority=dynamics_emulator.url,
        disable_instance_discovery=True,
    )
    with DataverseClient(dynamics_emulator.url, credential) as client:
        yield client


def test_sdk_creates_a_record_and_resolves_a_choice_label(dataverse: DataverseClient) -> None:
    record_id = dataverse.records.create(
        "contact", {"firstname": "Ada", "lastname": "Lovelace", "gendercode": "Female"}
    )

    record = dataverse.records.retrieve("contact", record_id, select=["fullname", "gendercode"])

    assert record["fullname"] == "Ada Lovelace"
    assert record["gendercode"] == 2


def test_sdk_lists_records_page_by_page(
    dynamics_emulator: DynamicsEmulatorHandle, dataverse: DataverseClient
) -> None:
    dynamics_emulator.control.put_records("contacts", [{"lastname": f"Sdk{i}"} for i in range(7)])

    pages = list(
        dataverse.records.list_pages(
            "contact", select=["lastname"], filter="startswith(lastname,'Sdk')", page_size=3
        )
    )

    assert [len(page) for page in pages] == [3, 3, 1]


def test_sdk_updates_and_deletes_a_record(
    dynamics_emulator: DynamicsEmulatorHandle, dataverse: DataverseClient
) -> None:
    record_id = dataverse.records.create("contact", {"lastname": "Before"})

    dataverse.records.update("contact", record_id, {"lastname": "After"})
    after = dataverse.records.retrieve("contact", record_id, select=["lastname"])["lastname"]
    dataverse.records.delete("contact", record_id)

    assert after == "After"
    assert dynamics_emulator.control.records("contacts") == []


def test_sdk_creates_many_records_with_create_multiple(
    dynamics_emulator: DynamicsEmulatorHandle, dataverse: DataverseClient
) -> None:
    ids = dataverse.records.create("contact", [{"lastname": f"Many{i}"} for i in range(5)])

    assert sorted(ids) == sorted(r["contactid"] for r in dynamics_emulator.control.records("contacts"))


def test_sdk_upserts_by_alternate_key(
    dynamics_emulator: DynamicsEmulatorHandle, dataverse: DataverseClient
) -> None:
    dataverse.records.upsert(
        "new_subscription", [UpsertItem(alternate_key={"new_externalid": "E-1"}, record={"new_name": "One"})]
    )
    dataverse.records.upsert(
        "new_subscription",
        [
            UpsertItem(alternate_key={"new_externalid": "E-1"}, record={"new_name": "One again"}),
            UpsertItem(alternate_key={"new_externalid": "E-2"}, record={"new_name": "Two"}),
        ],
    )

    names = {r["new_externalid"]: r["new_name"] for r in dynamics_emulator.control.records("new_subscriptions")}
    assert names == {"E-1": "One again", "E-2": "Two"}


def test_sdk_batch_changeset_references_a_created_record(
    dynamics_emulator: DynamicsEmulatorHandle, dataverse: DataverseClient
) -> None:
    batch = dataverse.batch.new()
    with batch.changeset() as changeset:
        reference = changeset.records.create("account", {"name": "ACME"})
        changeset.records.create(
            "contact", {"lastname": "Linked", "parentcustomerid_account@odata.bind": reference}
        )

    result = batch.execute()

    assert [item.status_code for item in result.responses] == [204, 204]
    (account,) = dynamics_emulator.control.records("accounts")
    assert dynamics_emulator.control.records("contacts")[0]["_parentcustomerid_value"] == account["accountid"]


def test_sdk_reads_table_metadata(dataverse: DataverseClient) -> None:
    info = dataverse.tables.get("new_subscription")

    assert info is not None
    assert info["entity_set_name"] == "new_subscriptions"
    assert info["primary_id_attribute"] == "new_subscriptionid"


def test_sdk_raises_http_error_with_the_dataverse_code(dataverse: DataverseClient) -> None:
    with pytest.raises(HttpError) as raised:
        dataverse.records.create("contact", {"lastname": "x" * 51})

    assert raised.value.status_code == 400
    assert raised.value.details["service_error_code"] == "0x80044331"


def test_sdk_authenticates_with_a_certificate_credential(
    dynamics_emulator: DynamicsEmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", dynamics_emulator.ca_bundle)
    app = dynamics_emulator.certificate_app
    pem = f"{app.private_key_pem}{app.certificate_pem}".encode()
    credential = CertificateCredential(
        app.tenant_id,
        app.client_id,
        certificate_data=pem,
        authority=dynamics_emulator.url,
        disable_instance_discovery=True,
    )

    with DataverseClient(dynamics_emulator.url, credential) as client:
        record_id = client.records.create("account", {"name": "Signed"})

    assert dynamics_emulator.control.records("accounts")[0]["accountid"] == record_id
