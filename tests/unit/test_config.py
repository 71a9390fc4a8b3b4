"""Configuration validation: every problem is one line naming where it is and which rule it breaks."""

from pathlib import Path

import pytest

from crmsync.config import config_json_schema, load_config, load_config_file, parse_config
from crmsync.errors import ConfigurationError

EXAMPLE = Path(__file__).parents[2] / "examples" / "syncs.yaml"


def base(**sync_overrides):
    sync = {
        "id": "sf-contacts",
        "operation": "import",
        "connection": "sf",
        "object": "Contact",
        "fields": [{"remote": "Email", "local": "email"}, {"remote": "FirstName", "local": "firstName"}],
    }
    sync.update(sync_overrides)
    return {
        "version": 1,
        "instance": "acme",
        "connections": [
            {
                "name": "sf",
                "kind": "salesforce",
                "instance_url": "https://acme.my.salesforce.com",
                "secret": "crmsync/sf",
            }
        ],
        "syncs": [sync],
    }


def problems_of(raw) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        parse_config(raw)
    return caught.value.problems


def test_example_configuration_is_valid():
    config = load_config(EXAMPLE.read_text(), environ={})
    assert [(s.id, s.operation) for s in config.syncs] == [
        ("sf-contacts", "import"),
        ("sf-subscriptions", "import"),
        ("dyn-contacts", "import"),
        ("dyn-subscriptions", "import"),
        ("sf-people-export", "export"),
        ("dyn-people-export", "export"),
        ("sf-optouts", "two_way"),
        ("dyn-optouts", "two_way"),
        ("sf-contacts-transfer", "initial_transfer"),
        ("dyn-contacts-transfer", "initial_transfer"),
        ("sf-contacts-deleted", "import_deleted"),
        ("sf-contacts-compare", "import_deleted"),
        ("dyn-contacts-deleted", "import_deleted"),
        ("sf-contacts-delete", "delete"),
        ("sf-email-events", "events"),
        ("dyn-email-events", "events"),
        ("sf-enumerations", "enumerations"),
        ("dyn-enumerations", "enumerations"),
    ]
    assert config.connection("dyn-prod").authority is None


def test_default_option_name_is_lastimport_instance_sync():
    config = parse_config(base())
    assert config.syncs[0].watermark_option(config.instance) == "LASTIMPORT_acme_sf-contacts"


def test_http_instance_url_is_refused_naming_the_https_rule():
    raw = base()
    raw["connections"][0]["instance_url"] = "http://acme.my.salesforce.com"
    assert problems_of(raw) == [
        "connections[0].instance_url: 'http://acme.my.salesforce.com' is not an https:// URL "
        "(rule C1: only https:// URLs are accepted)"
    ]


def test_credentials_in_a_url_are_refused():
    raw = base()
    raw["connections"][0]["instance_url"] = "https://user:pw@acme.my.salesforce.com"
    assert "credentials must not be written in a URL" in problems_of(raw)[0]


def test_mixing_and_with_or_on_one_level_is_refused():
    raw = base(filter={"all": [{"field": "A", "op": "is_empty"}], "any": [{"field": "B", "op": "is_empty"}]})
    (problem,) = problems_of(raw)
    assert problem.startswith("syncs[0] (sf-contacts).filter:")
    assert "rule I5: one operator type per level" in problem


def test_and_not_is_refused():
    raw = base(filter={"all": [{"field": "A", "op": "is_empty"}, {"not": {"field": "B", "op": "gt", "value": 1}}]})
    (problem,) = problems_of(raw)
    assert problem.startswith("syncs[0] (sf-contacts).filter.all[1]:")
    assert "rule I5: no AND NOT" in problem


def test_or_not_is_allowed():
    config = parse_config(
        base(filter={"any": [{"field": "A", "op": "is_empty"}, {"not": {"field": "B", "op": "gt", "value": 1}}]})
    )
    assert config.syncs[0].filter is not None


def test_comparison_with_text_is_refused():
    raw = base(filter={"field": "Name", "op": "eq", "value": "O'Brien"})
    (problem,) = problems_of(raw)
    assert "filter.value" in problem
    assert "rule I5: the value side must evaluate to a number" in problem


def test_injection_attempt_in_a_value_is_refused_not_rendered():
    raw = base(filter={"field": "Amount", "op": "gt", "value": "1 OR Id != null"})
    assert "rule I5" in problems_of(raw)[0]


def test_backslash_and_quote_in_a_value_are_refused():
    raw = base(filter={"field": "Amount", "op": "gt", "value": "1\\' OR '1'='1"})
    assert "rule I5" in problems_of(raw)[0]


def test_value_expression_is_evaluated_to_a_number():
    config = parse_config(base(filter={"field": "Amount", "op": "ge", "value": "1000 * 5 + 1"}))
    assert config.syncs[0].filter.value == 5001


def test_comparison_with_null_needs_is_empty():
    (problem,) = problems_of(base(filter={"field": "Email", "op": "eq", "value": None}))
    assert "use op 'is_empty'" in problem
    assert "rule I5: comparisons only against null or numbers" in problem


def test_join_on_the_left_side_is_refused():
    (problem,) = problems_of(base(filter={"field": "Account.Name", "op": "is_empty"}))
    assert "rule I5: no joins" in problem


def test_expression_on_the_left_side_is_refused():
    (problem,) = problems_of(base(filter={"field": "Amount * 2", "op": "gt", "value": 1}))
    assert "rule I5: the left side must be a single field" in problem


def test_field_names_that_are_not_identifiers_are_refused():
    (problem,) = problems_of(base(fields=[{"remote": "Email) FROM User--", "local": "email"}]))
    assert problem.startswith("syncs[0] (sf-contacts).fields[0].remote:")


def test_every_problem_is_reported_on_its_own_line():
    raw = base(schedule="every hour", object="Con tact")
    raw["connections"][0]["instance_url"] = "http://x.example.com"
    assert len(problems_of(raw)) == 3


def test_unknown_setting_is_named():
    (problem,) = problems_of(base(watermark={"feild": "SystemModstamp"}))
    assert problem == "syncs[0] (sf-contacts).watermark.feild: unknown setting (check its spelling)"


def test_sync_must_name_a_defined_connection():
    (problem,) = problems_of(base(connection="nope"))
    assert problem == "syncs[0] (sf-contacts).connection: no connection named 'nope' (defined: sf)"


def test_reconciliation_key_must_be_a_mapped_attribute():
    (problem,) = problems_of(base(reconciliation={"key": "mail"}))
    assert "reconciliation.key: 'mail' is not a mapped local attribute" in problem


def test_local_attribute_mapped_twice_is_refused():
    (problem,) = problems_of(
        base(fields=[{"remote": "Email", "local": "email"}, {"remote": "Email2__c", "local": "email"}])
    )
    assert "fields[1].local: 'email' is already mapped by fields[0]" in problem


def test_replacement_value_must_fit_the_declared_local_type():
    (problem,) = problems_of(
        base(
            fields=[{"remote": "Gender__c", "local": "gender", "type": "integer", "replace": {"F": 1, "M": "two"}}]
        )
    )
    assert "replacement 'M' -> 'two' does not fit the local type integer" in problem


def test_schedule_accepts_eventbridge_rate_and_cron():
    assert parse_config(base(schedule="rate(20 minutes)")).syncs[0].schedule == "rate(20 minutes)"
    assert parse_config(base(schedule="cron(0/20 * * * ? *)")).syncs[0].schedule == "cron(0/20 * * * ? *)"


def test_five_field_cron_is_refused_with_the_eventbridge_form():
    (problem,) = problems_of(base(schedule="cron(*/20 * * * *)"))
    assert "EventBridge cron has 6 fields" in problem


def test_unknown_time_zone_is_refused():
    (problem,) = problems_of(base(target={"timezone": "Europe/Pariss"}))
    assert "'Europe/Pariss' is not an IANA time zone" in problem


def test_invalid_yaml_names_line_and_column():
    with pytest.raises(ConfigurationError) as caught:
        load_config("syncs: [\n  - id: x\n", source="syncs.yaml")
    assert caught.value.problems[0].startswith("syncs.yaml:")
    assert "invalid YAML" in caught.value.problems[0]


def test_environment_variables_are_interpolated():
    text = EXAMPLE.read_text()
    config = load_config(text, environ={"CRMSYNC_SALESFORCE_URL": "https://127.0.0.1:8443"})
    assert config.connections[0].instance_url == "https://127.0.0.1:8443"


def test_unset_environment_variable_without_default_is_a_problem():
    raw = base()
    raw["connections"][0]["instance_url"] = "${SF_URL}"
    with pytest.raises(ConfigurationError) as caught:
        parse_config(raw, environ={})
    assert caught.value.problems == ["connections[0].instance_url: environment variable SF_URL is not set"]


def test_json_schema_describes_connections_and_syncs():
    schema = config_json_schema()
    assert {"connections", "syncs", "instance"} <= set(schema["properties"])
    assert "SalesforceConnection" in schema["$defs"]


def dynamics_base(**connection):
    raw = base()
    raw["connections"].append(
        {
            "name": "dyn",
            "kind": "dynamics",
            "instance_url": "https://acme.crm4.dynamics.com",
            "tenant_id": "acme.onmicrosoft.com",
            "secret": "crmsync/dyn",
            **connection,
        }
    )
    return raw


def test_dynamics_scope_is_the_org_url_or_the_configured_resource_and_an_empty_authority_is_the_default():
    config = parse_config(dynamics_base(authority=""))
    connection = config.connection("dyn")
    assert (connection.scope, connection.effective_authority) == (
        "https://acme.crm4.dynamics.com/.default",
        "https://login.microsoftonline.com/acme.onmicrosoft.com",
    )
    other = parse_config(dynamics_base(resource="https://acme.api.crm4.dynamics.com")).connection("dyn")
    assert other.scope == "https://acme.api.crm4.dynamics.com/.default"


def test_dynamics_non_https_authority_and_bad_tenant_are_refused():
    assert problems_of(dynamics_base(authority="http://login.example.com/x", tenant_id="a b")) == [
        "connections[1].tenant_id: 'a b' is not an Entra ID tenant (a GUID, or a domain such as acme.onmicrosoft.com)",
        "connections[1].authority: 'http://login.example.com/x' is not an https:// URL "
        "(rule C1: only https:// URLs are accepted)",
    ]


def test_labels_are_refused_on_a_salesforce_connection():
    raw = base(fields=[{"remote": "LeadSource", "local": "source", "label": True}])
    assert problems_of(raw) == [
        "syncs[0] (sf-contacts).fields[0].label: labels (formatted values) are read from Dynamics; Salesforce "
        "picklists arrive as their values"
    ]


def test_a_not_wrapped_in_a_one_item_any_under_an_all_is_still_and_not():
    # A AND (NOT B): the one-item `any` is no level of its own (issue 11, problem 4).
    raw = base(
        filter={
            "all": [
                {"field": "A", "op": "is_empty"},
                {"any": [{"not": {"field": "B", "op": "gt", "value": 1}}]},
            ]
        }
    )
    (problem,) = problems_of(raw)
    assert problem.startswith("syncs[0] (sf-contacts).filter.all[1].any[0]:")
    assert "rule I5: no AND NOT" in problem


def test_a_not_wrapped_in_several_one_item_levels_is_found_at_any_depth():
    deep = {"not": {"field": "B", "op": "gt", "value": 1}}
    for _ in range(4):
        deep = {"any": [deep]} if "all" in deep or "not" in deep else {"all": [deep]}
    raw = base(
        filter={"any": [{"field": "C", "op": "is_empty"}, {"all": [{"field": "A", "op": "is_empty"}, deep]}]}
    )
    (problem,) = problems_of(raw)
    assert "rule I5: no AND NOT" in problem


def test_a_not_among_several_or_items_under_an_all_is_allowed():
    config = parse_config(
        base(
            filter={
                "all": [
                    {"field": "A", "op": "is_empty"},
                    {"any": [{"not": {"field": "B", "op": "gt", "value": 1}}, {"field": "C", "op": "is_empty"}]},
                ]
            }
        )
    )
    assert config.syncs[0].filter is not None


def test_a_key_given_twice_is_refused_naming_its_line():
    text = EXAMPLE.read_text().replace("    object: Contact\n", "    object: Contact\n    object: User\n", 1)
    with pytest.raises(ConfigurationError) as caught:
        load_config(text, source="syncs.yaml", environ={"CRMSYNC_SALESFORCE_URL": "https://x.example"})
    (problem,) = caught.value.problems
    line = text.splitlines().index("    object: User") + 1
    assert problem.startswith(f"syncs.yaml:{line}:")
    assert "duplicate key 'object'" in problem


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "{}\n"])
def test_an_empty_configuration_is_refused(text):
    with pytest.raises(ConfigurationError) as caught:
        load_config(text)
    assert caught.value.problems
    assert all("version" in p or "connections" in p or "syncs" in p for p in caught.value.problems)


@pytest.mark.parametrize("missing", ["version", "connections", "syncs"])
def test_version_connections_and_syncs_are_required(missing):
    raw = base()
    del raw[missing]
    assert problems_of(raw) == [f"{missing}: required setting is missing"]


def test_a_misspelled_operation_key_names_the_allowed_operations_on_one_line():
    raw = base()
    raw["syncs"][0]["operaton"] = raw["syncs"][0].pop("operation")
    assert problems_of(raw) == [
        "syncs[0] (sf-contacts).operation: required setting is missing ('operaton' is not a setting: is it a "
        "misspelling of 'operation'?); use one of 'import', 'export', 'import_deleted', 'delete', 'events', 'enumerations', 'two_way', 'initial_transfer'"
    ]


def test_a_connection_without_a_kind_names_the_allowed_ones():
    raw = base()
    del raw["connections"][0]["kind"]
    assert problems_of(raw) == [
        "connections[0].kind: required setting is missing; use one of 'salesforce', 'dynamics'"
    ]


def test_a_configuration_file_that_is_not_utf8_names_its_line_and_column():
    data = b"version: 1\nconnections: []\n# cr\xe9\xe9 par Ren\xe9\nsyncs: []\n"
    with pytest.raises(ConfigurationError) as caught:
        load_config_file(data, source="syncs.yaml")
    assert caught.value.problems == [
        "syncs.yaml:3:5: byte 0xe9 is not UTF-8 (rule N4: input files are UTF-8 text); save the file as UTF-8"
    ]


def test_a_salesforce_page_size_over_2000_is_refused_instead_of_lowered():
    assert problems_of(base(page_size=3000)) == [
        "syncs[0] (sf-contacts).page_size: 3000 is over 2000, the most records a Salesforce query page returns"
    ]


def test_a_dynamics_page_size_up_to_5000_is_accepted():
    raw = dynamics_base()
    raw["syncs"] = [{**base()["syncs"][0], "connection": "dyn", "page_size": 5000}]
    assert parse_config(raw).syncs[0].page_size == 5000
