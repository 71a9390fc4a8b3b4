"""Build the crmsync Lambda layer: `python3.12 build_layer.py OUT_DIR` puts it in OUT_DIR/python/.

`sam build` runs this through the Makefile beside it (the layer's `BuildMethod: makefile`), and `make layer`
runs it to measure the layer without SAM. Standard library and pip only: it runs before any venv exists.

Why a script rather than SAM's own `python3.12` build: SAM installs the requirements as the wheels ship
them, and those weigh 44.6 MB unpacked, over the 40 MB the layer is held to (issue 18; Lambda's limit is
250 MB for a function and all its layers, and every MB is cold-start time). The weight is in a few
packages, and most of it is not code that runs:

- shared objects shipped with their symbol tables or debug info: cryptography's Rust module (14.3 MB,
  11.5 MB stripped) and PyYAML's libyaml module (2.7 MB, 0.4 MB). `strip --strip-unneeded` keeps the
  dynamic symbols that the import machinery resolves (`PyInit_*`), as Linux distributions do for theirs;
- lxml's C headers and Cython sources (`includes/`, `*.pyx`, `*.pxd`, `*.pxi`, `*.h`): for compiling
  against lxml, never read at run time;
- lxml modules that nothing in the layer imports (PRUNED_MODULES): zeep, the only user of lxml here (through
  simple-salesforce), imports `lxml.etree` and `lxml.builder`;
- bytecode caches, console scripts, SBOM documents. Licence files and the rest of `*.dist-info` stay
  (`importlib.metadata` reads the metadata, and the licences require their notices to travel).

`tests/integration/test_layer_build.py` builds the layer, holds it under the limit, imports every handler
and every core module from the layer alone (plus what the runtime and AWS's Powertools layer bring), and
checks that nothing in it imports a module pruned here.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
PACKAGE = HERE / "crmsync"
LIMIT_BYTES = 40_000_000
# The Lambda runtime of template.yaml (Globals.Function.Runtime and Architectures).
LAMBDA_PYTHON = "3.12"
LAMBDA_PLATFORM = "manylinux2014_x86_64"

# Modules of a dependency that no module of the layer imports, with who uses the package instead.
PRUNED_MODULES: dict[str, str] = {
    "lxml.objectify": "zeep uses lxml.etree and lxml.builder only",
    "lxml.html": "zeep uses lxml.etree and lxml.builder only",
    "lxml.isoschematron": "zeep uses lxml.etree and lxml.builder only",
}
# Paths (relative to python/) that are never read at run time.
PRUNED_GLOBS = (
    "bin",
    "*/__pycache__",
    "*.dist-info/sboms",
    "lxml/includes",
    "lxml/*.pyx",
    "lxml/*.pxd",
    "lxml/*.pxi",
    "lxml/*.h",
    "*/tests",
)


def install(target: Path, for_lambda: bool) -> None:
    """Install the requirements' wheels into target: Lambda's platform and Python, or this interpreter's."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check"]
    command += ["--only-binary=:all:", "--target", str(target), "-r", str(REQUIREMENTS)]
    if for_lambda:
        command += ["--platform", LAMBDA_PLATFORM, "--python-version", LAMBDA_PYTHON, "--implementation", "cp"]
    subprocess.run(command, check=True)  # noqa: S603
    shutil.copytree(PACKAGE, target / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def module_paths(root: Path, module: str) -> list[Path]:
    """The files or package directory of a dotted module name: `lxml.html` -> lxml/html/, `lxml.objectify`
    -> lxml/objectify.*.so and lxml/objectify.pyx."""
    *parents, name = module.split(".")
    folder = root.joinpath(*parents)
    if (folder / name).is_dir():
        return [folder / name]
    return sorted(p for p in folder.glob(name + ".*") if p.is_file())


def prune(root: Path) -> list[str]:
    """Delete what PRUNED_GLOBS and PRUNED_MODULES name; returns the relative paths removed."""
    removed = []
    for module in PRUNED_MODULES:
        for path in module_paths(root, module):
            removed.append(_remove(root, path))
    for folder, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames) + sorted(filenames):
            path = Path(folder) / name
            if any(fnmatch.fnmatch(path.relative_to(root).as_posix(), pattern) for pattern in PRUNED_GLOBS):
                removed.append(_remove(root, path))
                if name in dirnames:
                    dirnames.remove(name)  # os.walk does not descend into what was removed
    return sorted(removed)


def _remove(root: Path, path: Path) -> str:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    return path.relative_to(root).as_posix()


def strip_shared_objects(root: Path) -> dict[str, tuple[int, int]]:
    """Strip the symbol tables and debug info of every shared object; {relative path: (before, after)} of
    those that shrank. Without binutils' `strip` on PATH nothing is stripped (the caller says so)."""
    tool = shutil.which("strip")
    if tool is None:
        return {}
    shrunk = {}
    for path in sorted(root.rglob("*.so")):
        before = path.stat().st_size
        subprocess.run([tool, "--strip-unneeded", str(path)], check=True)  # noqa: S603
        after = path.stat().st_size
        if after < before:
            shrunk[path.relative_to(root).as_posix()] = (before, after)
    return shrunk


def sizes(root: Path) -> dict[str, int]:
    """Bytes per top-level entry of python/ (a package and its dist-info are counted apart)."""
    totals: dict[str, int] = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            top = path.relative_to(root).parts[0]
            totals[top] = totals.get(top, 0) + path.stat().st_size
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


@dataclass
class Report:
    target: str
    bytes_as_installed: int
    bytes: int
    per_package: dict[str, int]
    removed: list[str]
    stripped: dict[str, tuple[int, int]]
    strip_tool: bool
    limit_bytes: int = LIMIT_BYTES


def build(out: Path, for_lambda: bool = True) -> Report:
    """Build the layer into out/python (emptied first) and say what it weighs."""
    root = out / "python"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    install(root, for_lambda)
    as_installed = sum(sizes(root).values())
    removed = prune(root)
    stripped = strip_shared_objects(root)
    per_package = sizes(root)
    here = f"python{sys.version.split()[0]} on this machine"
    return Report(
        target=f"python{LAMBDA_PYTHON} {LAMBDA_PLATFORM}" if for_lambda else here,
        bytes_as_installed=as_installed,
        bytes=sum(per_package.values()),
        per_package=per_package,
        removed=removed,
        stripped=stripped,
        strip_tool=shutil.which("strip") is not None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the crmsync Lambda layer into OUT/python.")
    parser.add_argument("out", type=Path, help="the layer goes to OUT/python (SAM passes $ARTIFACTS_DIR)")
    parser.add_argument(
        "--this-interpreter",
        action="store_true",
        help="install wheels for the running Python and platform instead of Lambda's (tests import the result)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = build(args.out, for_lambda=not args.this_interpreter)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        mb = 1_000_000
        print(f"layer for {report.target}: {report.bytes / mb:.1f} MB unpacked", end="")
        print(f" (as installed {report.bytes_as_installed / mb:.1f} MB; limit {LIMIT_BYTES / mb:.0f} MB)")
        for name, size in report.per_package.items():
            if size >= 100_000:
                print(f"  {size / mb:6.2f} MB  {name}")
    if not report.strip_tool:
        print("warning: no `strip` on PATH (binutils): shared objects keep their symbols", file=sys.stderr)
    if report.bytes > LIMIT_BYTES:
        print(f"error: the layer is over {LIMIT_BYTES / 1_000_000:.0f} MB unpacked", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
