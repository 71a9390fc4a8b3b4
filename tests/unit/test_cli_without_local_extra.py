"""`pip install 'crmsync[cli]'` brings no moto and no emulator server: the operator's commands must not
import them. Each test runs the CLI in a fresh interpreter where those packages cannot be imported."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
BLOCKED = ("moto", "werkzeug", "trustme", "flask")
RUNNER = f"""
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Blocked())
sys.argv = ["crmsync", *sys.argv[1:]]
from crmsync_local.cli import main
main()
"""


def crmsync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUNNER, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "PYTHONPATH": f"{ROOT / 'layers/crmsync'}:{ROOT / 'local'}",
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "100",
        },
    )


def test_help_works_without_the_local_stack():
    result = crmsync("--help")
    assert result.returncode == 0, result.stderr
    assert "status" in result.stdout


def test_version_works_without_the_local_stack():
    result = crmsync("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("crmsync ")


def test_config_validate_works_without_the_local_stack():
    result = crmsync("config", "validate", "examples/syncs.yaml")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_local_commands_say_which_extra_they_need():
    result = crmsync("local", "up")
    assert result.returncode == 2
    assert "pip install 'crmsync[local]'" in result.stderr
