"""The Lambda layer as `sam build` makes it (layers/crmsync/build_layer.py through the layer's Makefile): under
40 MB unpacked, and enough on its own for every handler, with only what the Lambda runtime (boto3) and AWS's
Powertools layer bring besides.

The layer is built once for this interpreter (the wheels Lambda gets are the same releases for python3.12 on
manylinux x86_64), which takes pip about half a minute."""

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import build_layer
import pytest

ROOT = Path(__file__).parents[2]
# One worker builds the layer once for all of them under `make test`.
pytestmark = pytest.mark.xdist_group("layer_build")

# What the python3.12 Lambda runtime ships (boto3 and its dependencies) and what AWS's Powertools layer adds.
RUNTIME = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")
POWERTOOLS_LAYER = ("aws_lambda_powertools", "aws_xray_sdk", "wrapt", "typing_extensions")


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, build_layer.Report]:
    out = tmp_path_factory.mktemp("layer")
    report = build_layer.build(out, for_lambda=False)
    return out / "python", report


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with links to this venv's copies of what the runtime and the Powertools layer provide."""
    folder = tmp_path_factory.mktemp("runtime")
    for name in RUNTIME + POWERTOOLS_LAYER:
        spec = importlib.util.find_spec(name)
        assert spec is not None, name
        assert spec.origin is not None, name
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (folder / source.name).symlink_to(source)
    return folder


def test_the_layer_is_under_40_mb_unpacked(layer):
    root, report = layer
    listing = ", ".join(f"{name} {size / 1e6:.1f}" for name, size in list(report.per_package.items())[:8])
    assert report.bytes < 40_000_000, f"{report.bytes / 1e6:.1f} MB: {listing}"
    assert report.bytes == sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def test_the_layer_ships_no_aws_sdk_bytecode_or_lxml_sources(layer):
    root, _ = layer
    shipped = {p.relative_to(root).as_posix() for p in root.rglob("*")}
    assert not {p.split("/")[0] for p in shipped} & {"boto3", "botocore", "aws_lambda_powertools"}
    leftovers = [p for p in shipped if re.search(r"(\.pyc$|__pycache__|^lxml/.*\.(h|pyx|pxd|pxi)$)", p)]
    assert leftovers == []


def test_every_handler_and_core_module_imports_and_works_from_the_layer_alone(layer, runtime):
    root, _ = layer
    script = textwrap.dedent(
        """
        import importlib, importlib.util, pathlib, sys
        layer, runtime, functions = sys.argv[1:4]
        sys.path[:0] = [layer, runtime]
        for app in sorted(pathlib.Path(functions).glob("*/app.py")):
            spec = importlib.util.spec_from_file_location("handler_" + app.parent.name, app)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            assert callable(module.handler), app
        core = pathlib.Path(layer) / "crmsync"
        for path in sorted(core.rglob("*.py")):
            parts = path.relative_to(core.parent).with_suffix("").parts
            importlib.import_module(".".join(parts[:-1] if parts[-1] == "__init__" else parts))

        # The compiled parts the connectors use, stripped of their symbols by the build, still work.
        import jwt, yaml, zeep
        from cryptography.hazmat.primitives.asymmetric import rsa
        from lxml import etree
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode({"sub": "x"}, key, algorithm="RS256")
        assert jwt.decode(token, key.public_key(), algorithms=["RS256"]) == {"sub": "x"}
        assert yaml.load("a: [1, 2]", Loader=yaml.CSafeLoader) == {"a": [1, 2]}
        assert etree.fromstring(b"<a><b>1</b></a>").findtext("b") == "1"

        outside = sorted(
            name for name, module in sys.modules.items()
            if getattr(module, "__file__", None)
            and not module.__file__.startswith((layer, runtime, sys.base_prefix))
        )
        assert outside == [], outside
        print("imported", sum(1 for m in sys.modules if m.startswith("crmsync")), "crmsync modules")
        """
    )
    env = {"PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": "eu-west-1", "POWERTOOLS_TRACE_DISABLED": "1"}
    # -I -S: no site-packages (this venv's), no user site, no PYTHONPATH: the layer and the runtime only.
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(root), str(runtime), str(ROOT / "functions")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "crmsync modules" in result.stdout


def test_nothing_in_the_layer_imports_a_module_the_build_prunes(layer):
    root, _ = layer
    for module, reason in build_layer.PRUNED_MODULES.items():
        package, name = module.rsplit(".", 1)
        pattern = re.compile(
            rf"^\s*(import\s+{re.escape(module)}\b|from\s+{re.escape(module)}\b"
            rf"|from\s+{re.escape(package)}\s+import\s+[^\n]*\b{name}\b)",
            re.MULTILINE,
        )
        users = [
            path.relative_to(root).as_posix()
            for path in root.rglob("*.py")
            if not path.relative_to(root).as_posix().startswith(package.replace(".", "/") + "/")
            and pattern.search(path.read_text(errors="replace"))
        ]
        assert users == [], f"{module} is pruned ({reason}) but imported by {users}"


def test_sam_builds_the_layer_with_this_script():
    from tests.unit.test_template_iam import TEMPLATE

    layer = TEMPLATE["Resources"]["CoreLayer"]
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    makefile = (ROOT / layer["Properties"]["ContentUri"] / "Makefile").read_text()
    assert re.search(r"^build-CoreLayer:\n\t.*build_layer\.py \"?\$\(ARTIFACTS_DIR\)", makefile, re.MULTILINE)
