"""Count reports, read from the ``count_report`` view (the same rows labs' SQL tools see)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, case, column, func, select, table

from bloodcount.db.types import UTCDateTime
from bloodcount.resources import Resources
from bloodcount.services.batches import batch_summary
from bloodcount.services.status import done_count_unframed, done_count_warned

# Columns whose values need converting on the way out (JSON is text on SQLite).
_TYPES = {"submitted_at": UTCDateTime(), "finished_at": UTCDateTime(), "warnings": JSON()}
VIEW = table(
    "count_report",
    *(
        column(name, _TYPES.get(name))
        for name in (
            "slide_id",
            "lab_id",
            "lab",
            "batch_id",
            "reference",
            "position",
            "file",
            "status",
            "error",
            "rbc_count",
            "wbc_count",
            "platelet_count",
            "model_name",
            "model_version",
            "model_sha256",
            "submitted_at",
            "finished_at",
            "rbc_frame_count",
            "wbc_frame_count",
            "platelet_frame_count",
            "warnings",
        )
    ),
)
SLIDE_FIELDS = [
    "batch_id",
    "reference",
    "slide_id",
    "position",
    "file",
    "status",
    "error",
    "RBC",
    "WBC",
    "Platelets",
    "model_name",
    "model_version",
    "model_sha256",
    "finished_at",
    # Last, so the columns labs' spreadsheets already read stay where they were.
    "frame_RBC",
    "frame_WBC",
    "frame_Platelets",
    # A list of {"code", "message"} in JSON; in CSV the codes, ";"-separated.
    "warnings",
]
BATCH_FIELDS = [
    "batch_id",
    "reference",
    "submitted_at",
    "slides",
    "done",
    "failed",
    "RBC",
    "WBC",
    "Platelets",
    # Last, as in SLIDE_FIELDS; empty for a batch with slides counted before the frame was.
    "frame_RBC",
    "frame_WBC",
    "frame_Platelets",
    "slides_with_warnings",
]
COUNTS = ("RBC", "WBC", "Platelets")
FRAME_COUNTS = ("frame_RBC", "frame_WBC", "frame_Platelets")


def batch_report(res: Resources, lab_id: int, batch_id: str) -> dict[str, Any]:
    """The batch's summary and one row per slide (raises NotFound for another lab's batch)."""
    summary = batch_summary(res, lab_id, batch_id)
    v = VIEW.c
    query = (
        select(
            v.batch_id,
            v.reference,
            v.slide_id,
            v.position,
            v.file,
            v.status,
            v.error,
            v.rbc_count.label("RBC"),
            v.wbc_count.label("WBC"),
            v.platelet_count.label("Platelets"),
            v.model_name,
            v.model_version,
            v.model_sha256,
            v.finished_at,
            v.rbc_frame_count.label("frame_RBC"),
            v.wbc_frame_count.label("frame_WBC"),
            v.platelet_frame_count.label("frame_Platelets"),
            v.warnings,
        )
        .where(v.lab_id == lab_id, v.batch_id == batch_id)
        .order_by(v.position)
    )
    with res.engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(query)]
    for row in rows:
        if row["status"] != "done":  # a slide being reprocessed still holds old figures
            for key in COUNTS + FRAME_COUNTS + ("warnings",):
                row[key] = None
    return {"batch": summary, "slides": rows}


def counts_report(
    res: Resources, lab_id: int, submitted_from: datetime | None, submitted_to: datetime | None
) -> dict[str, Any]:
    """Per-batch totals of finished slides for batches submitted in [from, to), and the sum
    (visible counts, and the counting frame's where every finished slide has them)."""
    v = VIEW.c
    query = (
        select(
            v.batch_id,
            v.reference,
            v.submitted_at,
            func.count().label("slides"),
            func.sum(case((v.status == "done", 1), else_=0)).label("done"),
            func.sum(case((v.status == "failed", 1), else_=0)).label("failed"),
            _sum_if_done(v.rbc_count).label("RBC"),
            _sum_if_done(v.wbc_count).label("WBC"),
            _sum_if_done(v.platelet_count).label("Platelets"),
            _sum_if_done(v.rbc_frame_count).label("frame_RBC"),
            _sum_if_done(v.wbc_frame_count).label("frame_WBC"),
            _sum_if_done(v.platelet_frame_count).label("frame_Platelets"),
            done_count_unframed(v.status, v.rbc_frame_count).label("unframed"),
            done_count_warned(v.status, v.warnings).label("slides_with_warnings"),
        )
        .where(v.lab_id == lab_id)
        .group_by(v.batch_id, v.reference, v.submitted_at)
        .order_by(v.submitted_at, v.batch_id)
    )
    if submitted_from is not None:
        query = query.where(v.submitted_at >= submitted_from)
    if submitted_to is not None:
        query = query.where(v.submitted_at < submitted_to)
    with res.engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(query)]
    for row in rows:
        for key in ("slides", "done", "failed", "slides_with_warnings") + COUNTS:
            row[key] = int(row[key] or 0)
        # Slides counted before frame counts were recorded leave the batch's frame sums
        # short: no figure rather than one that passes for the total.
        unframed = int(row.pop("unframed") or 0)
        for key in FRAME_COUNTS:
            row[key] = None if unframed else int(row[key] or 0)
    totals: dict[str, int | None] = {
        k: sum(r[k] for r in rows)
        for k in ("slides", "done", "failed", "slides_with_warnings") + COUNTS
    }
    for key in FRAME_COUNTS:
        values = [r[key] for r in rows]
        totals[key] = None if None in values else sum(values)
    return {
        "from": submitted_from,
        "to": submitted_to,
        "batches": rows,
        "totals": {"batches": len(rows), **totals},
    }


def _sum_if_done(col):
    return func.coalesce(func.sum(case((VIEW.c.status == "done", col), else_=0)), 0)
