"""JSON Schemas of the files bloodcount writes, and a validator for them."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema ``name`` (e.g. "analysis-v1") as a dict."""
    return json.loads((SCHEMA_DIR / f"{name}.json").read_text())


def validate(document: Any, name: str = "analysis-v1") -> None:
    """Raise ``jsonschema.ValidationError`` if ``document`` breaks schema ``name``."""
    import jsonschema

    jsonschema.validate(document, load_schema(name), cls=jsonschema.Draft202012Validator)
