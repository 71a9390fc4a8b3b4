"""The Lambda layer ships exactly the runtime dependencies the project declares."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_layer_requirements_equal_project_dependencies():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    layer = [
        line.strip()
        for line in (ROOT / "layers/crmsync/requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(layer, key=str.lower) == sorted(declared, key=str.lower)


def test_every_dependency_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert "==" in requirement, requirement
