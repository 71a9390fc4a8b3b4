"""An import sync checked against the CRM's description: change tracking, labels and lookups (SPEC I5, I7, S3)."""

import pytest

from crmsync.config import ImportSync
from crmsync.connectors.port import FieldDescription, ObjectDescription
from crmsync.domain.types import CrmFieldType
from crmsync.errors import ConfigurationError
from crmsync.services.import_plan import resolve_import_plan


def contact(*, change_tracking=True) -> ObjectDescription:
    fields = {
        "contactid": CrmFieldType.ID,
        "modifiedon": CrmFieldType.DATETIME,
        "emailaddress1": CrmFieldType.STRING,
        "donotemail": CrmFieldType.BOOLEAN,
        "preferredcontactmethodcode": CrmFieldType.INTEGER,
        "parentcustomerid": CrmFieldType.REFERENCE,
    }
    return ObjectDescription(
        name="contact",
        id_field="contactid",
        fields={name: FieldDescription(name=name, crm_type=kind) for name, kind in fields.items()},
        entity_set="contacts",
        change_tracking=change_tracking,
    )


def sync(**overrides) -> ImportSync:
    return ImportSync.model_validate(
        {
            "id": "dyn-contacts",
            "operation": "import",
            "connection": "dyn",
            "object": "contact",
            "fields": [{"remote": "emailaddress1", "local": "email"}],
            **overrides,
        }
    )


def test_auto_reads_change_tracking_where_the_table_has_it_and_the_sync_no_filter():
    assert resolve_import_plan(sync(), contact(), "dynamics").change_tracking is True
    assert resolve_import_plan(sync(), contact(change_tracking=False), "dynamics").change_tracking is False


@pytest.mark.parametrize(
    "overrides",
    [
        {"filter": {"field": "donotemail", "op": "eq", "value": 0}},
        {"order_by": [{"field": "emailaddress1"}]},
        {"watermark": {"mode": "modified"}},
    ],
)
def test_a_filter_a_sort_or_mode_modified_reads_a_modifiedon_window(overrides):
    plan = resolve_import_plan(sync(**overrides), contact(), "dynamics")
    assert (plan.change_tracking, plan.watermark_field) == (False, "modifiedon")


def test_mode_change_tracking_is_refused_naming_every_reason():
    with pytest.raises(ConfigurationError) as refused:
        resolve_import_plan(
            sync(watermark={"mode": "change_tracking"}, filter={"field": "donotemail", "op": "eq", "value": 1}),
            contact(change_tracking=False),
            "dynamics",
        )
    assert refused.value.problems == [
        "sync dyn-contacts: watermark.mode: change_tracking cannot be used: contact has no change tracking in the "
        "CRM; the sync has a filter (use mode auto or modified)"
    ]


def test_a_label_is_text_whatever_the_field_type_and_the_query_asks_for_it():
    plan = resolve_import_plan(
        sync(fields=[{"remote": "preferredcontactmethodcode", "local": "channel", "label": True}]),
        contact(),
        "dynamics",
    )
    (field,) = plan.fields
    assert (field.crm_type, field.local_type.value) == (CrmFieldType.STRING, "string")
    query = plan.query()
    assert query.labels == ("preferredcontactmethodcode",)
    assert query.field_types["preferredcontactmethodcode"] is CrmFieldType.INTEGER


def test_every_column_read_carries_its_crm_type_so_lookups_are_read_by_their_property():
    plan = resolve_import_plan(
        sync(fields=[{"remote": "parentcustomerid", "local": "company"}]), contact(), "dynamics"
    )
    assert plan.query().field_types == {
        "contactid": CrmFieldType.ID,
        "modifiedon": CrmFieldType.DATETIME,
        "parentcustomerid": CrmFieldType.REFERENCE,
    }
