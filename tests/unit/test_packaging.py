"""The Lambda layer ships exactly the runtime dependencies the project declares; each extra installs what its
use needs and no more."""

import re
import tomllib
from pathlib import Path

import crmsync
from tests.unit.test_template_iam import TEMPLATE

ROOT = Path(__file__).parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[=<>!~; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_layer_requirements_equal_project_dependencies():
    declared = PROJECT["dependencies"]
    layer = [
        line.strip()
        for line in (ROOT / "layers/crmsync/requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(layer, key=str.lower) == sorted(declared, key=str.lower)


def test_every_dependency_is_pinned():
    extras = PROJECT["optional-dependencies"]
    for requirement in PROJECT["dependencies"] + [r for reqs in extras.values() for r in reqs]:
        if requirement.startswith("crmsync["):
            continue  # an extra that includes another extra of this project
        assert "==" in requirement, requirement


def test_the_layer_leaves_the_aws_sdk_and_powertools_to_the_runtime_and_aws_published_layer():
    assert not names(PROJECT["dependencies"]) & {"boto3", "botocore", "aws-lambda-powertools", "aws-xray-sdk"}


def test_every_function_gets_aws_published_powertools_layer_matching_the_pinned_version():
    pinned = next(r for r in PROJECT["optional-dependencies"]["cli"] if r.startswith("aws-lambda-powertools"))
    parameter = TEMPLATE["Parameters"]["PowertoolsLayerParameter"]["Default"]
    assert parameter.endswith("/python3.12/" + pinned.split("==")[1])
    assert {"Sub": "{{resolve:ssm:${PowertoolsLayerParameter}}}"} in TEMPLATE["Globals"]["Function"]["Layers"]


def test_the_cli_extra_brings_neither_moto_nor_the_emulators_servers():
    cli = names(PROJECT["optional-dependencies"]["cli"])
    assert {"typer", "rich", "boto3"} <= cli
    assert not cli & {"moto", "werkzeug", "trustme", "flask"}


def test_the_version_has_one_source():
    assert PROJECT["dynamic"] == ["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", crmsync.__version__)


def test_the_license_is_an_spdx_expression_with_its_text():
    assert PROJECT["license"] == "Apache-2.0"
    assert "Apache License" in (ROOT / PROJECT["license-files"][0]).read_text()
