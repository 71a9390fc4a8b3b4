"""Least privilege: each function is granted what its code calls, on its own resources, and nothing wider."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that also reads CloudFormation's short tags (!Ref, !Sub, !GetAtt)."""


def _tag(loader, suffix, node):
    value = (
        loader.construct_scalar(node)
        if isinstance(node, yaml.ScalarNode)
        else (
            loader.construct_sequence(node)
            if isinstance(node, yaml.SequenceNode)
            else loader.construct_mapping(node)
        )
    )
    return {suffix: value}


_CfnLoader.add_multi_constructor("!", _tag)
TEMPLATE = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass

# What each function's code calls (stores, connectors, services): (action, resource logical id or None).
NEEDED = {
    "ImportStartFunction": {
        ("dynamodb:GetItem", "DefinitionsTable"),
        ("dynamodb:GetItem", "WatermarksTable"),
        ("dynamodb:GetItem", "RunsTable"),
        ("dynamodb:PutItem", "RunsTable"),
        ("dynamodb:DeleteItem", "RunsTable"),
        ("dynamodb:Query", "EnumerationsTable"),
        ("s3:GetObject", "DataBucket"),
        ("s3:PutObject", "DataBucket"),
        ("secretsmanager:GetSecretValue", None),
    },
    "ImportPageFunction": {
        ("dynamodb:GetItem", "DefinitionsTable"),
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:BatchGetItem", "ProfilesTable"),
        ("dynamodb:PutItem", "ProfilesTable"),
        ("dynamodb:UpdateItem", "ProfilesTable"),
        ("dynamodb:ConditionCheckItem", "ProfilesTable"),
        ("dynamodb:BatchWriteItem", "ResourcesTable"),
        ("dynamodb:BatchGetItem", "ResourcesTable"),
        ("sqs:SendMessage", "RejectsQueue"),
        ("dynamodb:BatchWriteItem", "RejectsTable"),
        ("s3:GetObject", "DataBucket"),
        ("s3:PutObject", "DataBucket"),
        ("secretsmanager:GetSecretValue", None),
    },
    "ImportFinishFunction": {
        ("dynamodb:DeleteItem", "RunsTable"),
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:UpdateItem", "WatermarksTable"),
    },
    "EnumerationsSyncFunction": {
        ("dynamodb:GetItem", "DefinitionsTable"),
        ("dynamodb:GetItem", "RunsTable"),
        ("dynamodb:PutItem", "RunsTable"),
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:DeleteItem", "RunsTable"),
        ("dynamodb:Query", "EnumerationsTable"),
        ("dynamodb:BatchWriteItem", "EnumerationsTable"),
        ("secretsmanager:GetSecretValue", None),
    },
    "ExportStartFunction": {
        ("dynamodb:GetItem", "DefinitionsTable"),
        ("dynamodb:GetItem", "WatermarksTable"),
        ("dynamodb:GetItem", "RunsTable"),
        ("dynamodb:PutItem", "RunsTable"),
        ("dynamodb:BatchWriteItem", "RunsTable"),
        ("dynamodb:Query", "EnumerationsTable"),
        ("dynamodb:BatchGetItem", "ProfilesTable"),
        ("dynamodb:Query", "ProfilesTable"),
        ("s3:GetObject", "DataBucket"),
        ("s3:PutObject", "DataBucket"),
        ("sqs:SendMessage", "RejectsQueue"),
        ("dynamodb:BatchWriteItem", "RejectsTable"),
        ("secretsmanager:GetSecretValue", None),
    },
    "ExportBatchFunction": {
        ("dynamodb:GetItem", "DefinitionsTable"),
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:UpdateItem", "ProfilesTable"),
        ("dynamodb:ConditionCheckItem", "ProfilesTable"),
        ("s3:GetObject", "DataBucket"),
        ("s3:PutObject", "DataBucket"),
        ("sqs:SendMessage", "RejectsQueue"),
        ("dynamodb:BatchWriteItem", "RejectsTable"),
        ("secretsmanager:GetSecretValue", None),
    },
    "ExportFinishFunction": {
        ("dynamodb:Query", "RunsTable"),
        ("dynamodb:DeleteItem", "RunsTable"),
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:UpdateItem", "WatermarksTable"),
    },
    "DeletionImportStartFunction": {
        ("dynamodb:GetItem", "DefinitionsTable"),
        ("dynamodb:GetItem", "WatermarksTable"),
        ("dynamodb:PutItem", "RunsTable"),
        ("dynamodb:DeleteItem", "RunsTable"),
        ("secretsmanager:GetSecretValue", None),
    },
    "DeletionImportPageFunction": {
        ("dynamodb:GetItem", "DefinitionsTable"),
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:BatchGetItem", "ProfilesTable"),
        ("dynamodb:UpdateItem", "ProfilesTable"),
        ("dynamodb:DeleteItem", "ProfilesTable"),
        ("dynamodb:Query", "ProfilesTable"),
        ("dynamodb:BatchGetItem", "ResourcesTable"),
        ("dynamodb:BatchWriteItem", "ResourcesTable"),
        ("dynamodb:Query", "ResourcesTable"),
        ("s3:GetObject", "DataBucket"),
        ("s3:PutObject", "DataBucket"),
        ("secretsmanager:GetSecretValue", None),
    },
    "DeletionImportFinishFunction": {
        ("dynamodb:DeleteItem", "RunsTable"),
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:UpdateItem", "WatermarksTable"),
    },
    "DeleteStartFunction": {
        ("dynamodb:GetItem", "DefinitionsTable"),
        ("dynamodb:GetItem", "WatermarksTable"),
        ("dynamodb:PutItem", "RunsTable"),
        ("dynamodb:BatchWriteItem", "RunsTable"),
        ("dynamodb:BatchGetItem", "ProfilesTable"),
        ("dynamodb:Query", "ProfilesTable"),
        ("s3:GetObject", "DataBucket"),
        ("s3:PutObject", "DataBucket"),
        ("sqs:SendMessage", "RejectsQueue"),
        ("dynamodb:BatchWriteItem", "RejectsTable"),
        ("secretsmanager:GetSecretValue", None),
    },
    "DeleteBatchFunction": {
        ("dynamodb:GetItem", "DefinitionsTable"),
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:BatchGetItem", "ProfilesTable"),
        ("dynamodb:UpdateItem", "ProfilesTable"),
        ("s3:GetObject", "DataBucket"),
        ("s3:PutObject", "DataBucket"),
        ("sqs:SendMessage", "RejectsQueue"),
        ("dynamodb:BatchWriteItem", "RejectsTable"),
        ("secretsmanager:GetSecretValue", None),
    },
    "DeleteFinishFunction": {
        ("dynamodb:Query", "RunsTable"),
        ("dynamodb:DeleteItem", "RunsTable"),
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:UpdateItem", "WatermarksTable"),
    },
    "TwoWayStartFunction": {
        ("dynamodb:GetItem", "DefinitionsTable"),
        ("dynamodb:GetItem", "WatermarksTable"),
        ("dynamodb:PutItem", "RunsTable"),
        ("dynamodb:BatchWriteItem", "RunsTable"),
        ("dynamodb:BatchGetItem", "ProfilesTable"),
        ("dynamodb:Query", "ProfilesTable"),
        ("dynamodb:BatchWriteItem", "ProfilesTable"),
        ("dynamodb:PutItem", "ProfilesTable"),
        ("dynamodb:UpdateItem", "ProfilesTable"),
        ("dynamodb:ConditionCheckItem", "ProfilesTable"),
        ("dynamodb:Query", "ResourcesTable"),
        ("dynamodb:BatchGetItem", "ResourcesTable"),
        ("dynamodb:BatchWriteItem", "ResourcesTable"),
        ("dynamodb:BatchGetItem", "SyncLedgerTable"),
        ("dynamodb:BatchWriteItem", "SyncLedgerTable"),
        ("s3:PutObject", "DataBucket"),
        ("secretsmanager:GetSecretValue", None),
    },
    "TwoWayBatchFunction": {
        ("dynamodb:GetItem", "DefinitionsTable"),
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:BatchGetItem", "ProfilesTable"),
        ("dynamodb:UpdateItem", "ProfilesTable"),
        ("dynamodb:PutItem", "ProfilesTable"),
        ("dynamodb:ConditionCheckItem", "ProfilesTable"),
        ("dynamodb:BatchGetItem", "ResourcesTable"),
        ("dynamodb:UpdateItem", "ResourcesTable"),
        ("dynamodb:BatchWriteItem", "SyncLedgerTable"),
        ("dynamodb:PutItem", "ConsentTable"),
        ("s3:GetObject", "DataBucket"),
        ("s3:PutObject", "DataBucket"),
        ("sqs:SendMessage", "RejectsQueue"),
        ("secretsmanager:GetSecretValue", None),
    },
    "TwoWayFinishFunction": {
        ("dynamodb:Query", "RunsTable"),
        ("dynamodb:DeleteItem", "RunsTable"),
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:UpdateItem", "WatermarksTable"),
    },
    "InitialTransferExtractFunction": {
        ("dynamodb:GetItem", "DefinitionsTable"),
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:PutItem", "RunsTable"),
        ("dynamodb:BatchWriteItem", "RunsTable"),
        ("s3:PutObject", "DataBucket"),
        ("secretsmanager:GetSecretValue", None),
    },
    "InitialTransferFinishFunction": {
        ("dynamodb:Query", "RunsTable"),
        ("dynamodb:DeleteItem", "RunsTable"),
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:UpdateItem", "WatermarksTable"),
    },
    "EventsPushFunction": {
        ("sqs:ReceiveMessage", "EventsQueue"),
        ("sqs:DeleteMessage", "EventsQueue"),
        ("sqs:SendMessage", "EventsDeadLetterQueue"),
        ("sqs:SendMessage", "RejectsQueue"),
        ("dynamodb:BatchWriteItem", "RejectsTable"),
        ("dynamodb:BatchGetItem", "RejectsTable"),
        ("dynamodb:GetItem", "DefinitionsTable"),
        ("dynamodb:Scan", "DefinitionsTable"),
        ("dynamodb:BatchGetItem", "ProfilesTable"),
        ("s3:PutObject", "DataBucket"),
        ("s3:DeleteObject", "DataBucket"),
        ("secretsmanager:GetSecretValue", None),
    },
    "RejectsAgeFunction": {
        ("dynamodb:Scan", "DefinitionsTable"),
        ("dynamodb:Query", "RejectsTable"),
    },
    "RunFailedFunction": {
        ("dynamodb:UpdateItem", "RunsTable"),
        ("dynamodb:DeleteItem", "RunsTable"),
        ("dynamodb:PutItem", "RunsTable"),
    },
}

# A transfer starts as an import does (its plan, the watermark, the lease) but stages no population; a
# transfer part is loaded through the import page's own load path.
NEEDED["InitialTransferStartFunction"] = NEEDED["ImportStartFunction"] - {
    ("s3:GetObject", "DataBucket"),
    ("s3:PutObject", "DataBucket"),
}
NEEDED["InitialTransferPartFunction"] = set(NEEDED["ImportPageFunction"])
# The completeness check reads the ids held locally and this run's rejects, then loads what it re-reads;
# first it adds up the parts' ledger (a Query of the runs table), whose results name the parts' rejected ids.
NEEDED["InitialTransferCheckFunction"] = NEEDED["ImportPageFunction"] | {
    ("dynamodb:Query", "ProfilesTable"),
    ("dynamodb:Query", "ResourcesTable"),
    ("dynamodb:Query", "RejectsTable"),
    ("dynamodb:Query", "RunsTable"),
    ("s3:GetObject", "DataBucket"),
}


def statements(logical_id):
    for policy in TEMPLATE["Resources"][logical_id]["Properties"].get("Policies", []):
        yield from policy.get("Statement", [])


def mentions(resource, logical_id) -> bool:
    return logical_id in repr(resource)


@pytest.mark.parametrize("function", sorted(NEEDED))
def test_function_is_granted_what_its_code_calls(function):
    granted = list(statements(function))
    for action, target in NEEDED[function]:
        assert any(
            action in s["Action"] and (target is None or mentions(s["Resource"], target)) for s in granted
        ), f"{function} lacks {action} on {target}"


@pytest.mark.parametrize("function", sorted(NEEDED))
def test_function_policies_have_no_wildcard_actions_or_resources(function):
    for statement in statements(function):
        assert not any(a.endswith("*") for a in statement["Action"]), statement
        assert statement["Resource"] != "*", statement


def test_every_function_is_covered_by_this_table():
    functions = {k for k, v in TEMPLATE["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    assert functions == set(NEEDED)


def test_the_consent_ledger_is_append_only_for_every_function():
    functions = [k for k, v in TEMPLATE["Resources"].items() if v["Type"] == "AWS::Serverless::Function"]
    for function in functions:
        for statement in statements(function):
            if mentions(statement["Resource"], "ConsentTable"):
                assert statement["Action"] == ["dynamodb:PutItem"], (function, statement)


# The batch step of each batched operation (`batched_runs.BatchedOperation.batch`): it stores the batch's
# per-record results at runs/<sync>/<run>/results/<n>.json before marking the batch done (`BatchLedger.
# complete`), so its function writes under runs/ - a grant on another prefix of the bucket is not enough.
BATCH_STEP_FUNCTIONS = [
    "ExportBatchFunction",
    "DeleteBatchFunction",
    "TwoWayBatchFunction",
    "InitialTransferPartFunction",
]


@pytest.mark.parametrize("function", BATCH_STEP_FUNCTIONS)
def test_a_batch_step_may_write_its_results_under_runs(function):
    writes = [s["Resource"] for s in statements(function) if "s3:PutObject" in s["Action"]]
    assert any("${DataBucket.Arn}/runs/*" in repr(resource) for resource in writes), writes
