"""Generated documentation stays in step with the code."""

import json
import re
import shlex
from pathlib import Path

import pytest
import typer.main
from typer import _click as click
from typer.core import TyperGroup

from crmsync.config import config_json_schema
from crmsync_local.cli import app

ROOT = Path(__file__).parents[2]


def test_published_json_schema_is_current():
    published = json.loads((ROOT / "docs/config.schema.json").read_text())
    assert published == config_json_schema(), "regenerate with: crmsync config schema -o docs/config.schema.json"


# ------------------------------------------------------------------------------------- the docs' examples
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(?:bash|sh|shell)\n(.*?)```", re.DOTALL)


def documented_commands() -> list[tuple[str, list[str]]]:
    """Every `crmsync ...` command of the docs' shell blocks, split as the shell would (comments, `&`, `&&`)."""
    found = []
    for path in DOCS:
        for block in FENCE.findall(path.read_text(encoding="utf-8")):
            pending = ""
            for line in block.replace("\\\n", " ").splitlines():
                try:  # a quoted string may span lines: read on until it closes
                    words = shlex.split(pending + line, comments=True)
                except ValueError:
                    pending += line + "\n"
                    continue
                pending = ""
                command: list[str] = []
                for word in [*words, "&&"]:
                    if word not in ("&&", "||", ";", "&"):
                        command.append(word)
                        continue
                    if command[:1] == ["crmsync"]:
                        found.append((f"{path.name}: {' '.join(command)}", command[1:]))
                    command = []
    return found


def parse(command: click.Command, args: list[str], name: str = "crmsync") -> None:
    """Parse `args` as the CLI would, down to the leaf command, without running anything."""
    context = command.make_context(name, list(args))
    if isinstance(command, TyperGroup):
        rest = [*context._protected_args, *context.args]
        sub_name, sub, sub_args = command.resolve_command(context, rest)
        assert sub is not None, f"no command {rest[:1]}"
        parse(sub, sub_args, sub_name or "")


COMMANDS = documented_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) > 20


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_documented_command_parses(where, args):
    parse(typer.main.get_command(app), args)


def test_every_command_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    root = typer.main.get_command(app)

    def leaves(command, path):
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                yield from leaves(sub, [*path, name])
        else:
            yield " ".join(path)

    def documented(path: str) -> bool:
        parent, leaf = path.rsplit(" ", 1)  # a row may list alternatives: `crmsync watermark get|set|reset`
        return re.search(rf"`{re.escape(parent)} [\w\\|-]*\b{re.escape(leaf)}\b", readme) is not None

    missing = [p for p in leaves(root, ["crmsync"]) if not documented(p)]
    assert not missing


def test_the_readme_names_no_path_outside_the_repository():
    assert "../" not in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_rule_a_message_names_is_explained_in_docs_rules():
    rules = (ROOT / "docs/rules.md").read_text(encoding="utf-8")
    named = set()
    for source in (ROOT / "layers/crmsync/crmsync").rglob("*.py"):
        named |= set(re.findall(r"rule ([A-Z]\d+)", source.read_text(encoding="utf-8")))
    assert named
    assert sorted(r for r in named if f"| **{r}** |" not in rules) == []
