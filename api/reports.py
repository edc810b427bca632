"""Count reports: one batch as CSV or JSON, and totals across batches."""

from __future__ import annotations

from flask import Response, jsonify

from api.auth import protected
from api.context import lab_id, resources
from api.params import choice_param, date_range
from bloodcount import services
from bloodcount.services.reports import BATCH_FIELDS, SLIDE_FIELDS

bp = protected("reports")


def _csv(text: str, filename: str) -> Response:
    response = Response(text, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@bp.get("/batches/<batch_id>/report.csv")
def batch_csv(batch_id: str):
    report = services.batch_report(resources(), lab_id(), batch_id)
    return _csv(services.to_csv(report["slides"], SLIDE_FIELDS), f"batch-{batch_id}.csv")


@bp.get("/batches/<batch_id>/report.json")
def batch_json(batch_id: str):
    return jsonify(services.batch_report(resources(), lab_id(), batch_id))


@bp.get("/reports/counts")
def counts():
    fmt = choice_param("format", ("json", "csv")) or "json"
    report = services.counts_report(resources(), lab_id(), *date_range())
    if fmt == "csv":
        return _csv(services.to_csv(report["batches"], BATCH_FIELDS), "counts.csv")
    return jsonify(report)
