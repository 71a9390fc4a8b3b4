"""The stack's CloudWatch dashboard charts, per sync, metrics that the steps really emit."""

import json
import re

from crmsync import runtime
from tests.unit.test_template_iam import TEMPLATE

BODY = TEMPLATE["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Sub"]
WIDGETS = json.loads(BODY.replace("${AWS::Region}", "eu-west-1").replace("${AWS::StackName}", "crmsync"))[
    "widgets"
]
EXPRESSIONS = [m[0]["expression"] for w in WIDGETS if w["type"] == "metric" for m in w["properties"]["metrics"]]
EMITTED = {
    *runtime.COUNTED.values(),
    "RunsFailed",
    "RunsSucceeded",
    "RunDuration",
    "CrmApiRemaining",
    "CrmApiUsedPercent",
}


def test_every_chart_searches_the_crmsync_namespace_by_sync():
    assert EXPRESSIONS
    assert all(e.startswith("SEARCH('{crmsync,service,sync} MetricName=") for e in EXPRESSIONS)


def test_every_charted_metric_is_one_the_steps_emit():
    charted = {re.search(r'MetricName="(\w+)"', e).group(1) for e in EXPRESSIONS}
    assert charted <= EMITTED
    assert {
        "RecordsRead",
        "RecordsCreated",
        "RecordsUpdated",
        "RecordsRejected",
        "RunsFailed",
        "RunDuration",
    } <= charted
    assert "CrmApiUsedPercent" in charted
