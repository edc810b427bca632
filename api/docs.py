"""The OpenAPI document (kept by hand in api/openapi.yaml) and a docs page that needs no CDN."""

from __future__ import annotations

from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify, render_template_string

SPEC_PATH = Path(__file__).resolve().parent / "openapi.yaml"
bp = Blueprint("docs", __name__, url_prefix="/api/v1")
METHODS = ("get", "post", "put", "patch", "delete")
PROBLEM_STATUSES = (400, 401, 404, 405, 409, 413, 422, 429, 500, 501, 503)


@cache
def load_spec() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(SPEC_PATH.read_text())


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(load_spec())


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ spec.info.title }} API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
code,pre{font-family:ui-monospace,monospace;background:#f4f4f4;padding:.1em .3em;border-radius:3px}
.op{border-top:1px solid #ddd;padding:.6rem 0}.m{display:inline-block;width:4.5em;font-weight:bold}
.get{color:#1565c0}.post{color:#2e7d32}table{border-collapse:collapse}td,th{padding:.2em .6em;text-align:left;border-bottom:1px solid #eee}
</style></head><body>
<h1>{{ spec.info.title }} <small>{{ spec.info.version }}</small></h1>
<p>{{ spec.info.description }}</p>
<p>Machine-readable: <a href="{{ url_for('docs.openapi_json') }}">openapi.json</a> (OpenAPI {{ spec.openapi }}).</p>
<h2>Operations</h2>
{% for op in operations %}<div class="op" id="{{ op.id }}">
<div><span class="m {{ op.method }}">{{ op.method|upper }}</span><code>{{ op.path }}</code> — {{ op.summary }}</div>
{% if op.description %}<p>{{ op.description }}</p>{% endif %}
{% if op.parameters %}<table><tr><th>parameter</th><th>in</th><th>meaning</th></tr>
{% for p in op.parameters %}<tr><td><code>{{ p.name }}</code></td><td>{{ p.in }}</td><td>{{ p.description }}</td></tr>{% endfor %}</table>{% endif %}
<p>Responses: {% for code, r in op.responses.items() %}<code>{{ code }}</code> {{ r.description }}{% if not loop.last %}; {% endif %}{% endfor %}</p>
</div>{% endfor %}
<h2>Problems</h2>
<p>Every error is <code>application/problem+json</code> (RFC 9457) with <code>type</code>, <code>title</code>,
<code>status</code>, <code>detail</code> (what went wrong and what to do) and <code>instance</code> (the path).</p>
<table>{% for code, phrase, text in problems %}<tr id="problem-{{ code }}"><td><code>{{ code }}</code></td><td>{{ phrase }}</td><td>{{ text }}</td></tr>{% endfor %}</table>
</body></html>"""


def _resolve(spec: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    ref = item.get("$ref")
    if not ref:
        return item
    node: Any = spec
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


@bp.get("/docs")
def docs_page():
    spec = load_spec()
    operations = []
    for path, item in spec["paths"].items():
        shared = [_resolve(spec, p) for p in item.get("parameters", [])]
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            operations.append(
                {
                    "id": op.get("operationId"),
                    "method": method,
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "parameters": shared + [_resolve(spec, p) for p in op.get("parameters", [])],
                    "responses": {code: _resolve(spec, r) for code, r in op["responses"].items()},
                }
            )
    problems = [
        (code, HTTPStatus(code).phrase, HTTPStatus(code).description) for code in PROBLEM_STATUSES
    ]
    return render_template_string(PAGE, spec=spec, operations=operations, problems=problems)
