"""Generated documentation stays in step with the code."""

import json
from pathlib import Path

from crmsync.config import config_json_schema

ROOT = Path(__file__).parents[2]


def test_published_json_schema_is_current():
    published = json.loads((ROOT / "docs/config.schema.json").read_text())
    assert published == config_json_schema(), "regenerate with: crmsync config schema -o docs/config.schema.json"
