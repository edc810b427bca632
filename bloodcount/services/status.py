"""A batch's status, progress and totals, derived from its slides' statuses on every read."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, case, func, select
from sqlalchemy.sql import ColumnElement

from bloodcount.db.models import Slide

TERMINAL = ("done", "failed")


def derive_status(counts: Mapping[str, int]) -> str:
    """Batch status from how many of its slides are in each slide status."""
    total = sum(counts.values())
    done, failed = counts.get("done", 0), counts.get("failed", 0)
    if counts.get("uploading", 0):
        return "uploading"
    if done + failed < total:
        return "processing" if counts.get("processing", 0) or done + failed else "queued"
    if failed == 0:
        return "done"
    return "failed" if done == 0 else "done_with_errors"


def _count(status: str) -> ColumnElement[int]:
    return func.sum(case((Slide.status == status, 1), else_=0)).cast(Integer)


def _done_sum(column) -> ColumnElement[int]:
    # Only finished slides count; one queued for reprocessing still holds old figures.
    return func.coalesce(func.sum(case((Slide.status == "done", column), else_=0)), 0)


def done_count_unframed(status, frame_count) -> ColumnElement[int]:
    """Finished slides without frame counts (counted before they were recorded)."""
    return func.sum(case(((status == "done") & frame_count.is_(None), 1), else_=0)).cast(Integer)


def done_count_warned(status, warnings) -> ColumnElement[int]:
    """Finished slides counted with warnings (json_array_length: SQLite and PostgreSQL).

    Nested CASE, not AND: PostgreSQL may evaluate either side of an AND first, and
    json_array_length fails on anything but an array.
    """
    return func.sum(
        case((status == "done", case((func.json_array_length(warnings) > 0, 1), else_=0)), else_=0)
    ).cast(Integer)


def progress_columns() -> list[ColumnElement]:
    """Aggregates over slides, one row per batch: fed to :func:`summary_from_row`."""
    return [
        func.count().label("total"),
        _count("uploading").label("uploading"),
        _count("queued").label("queued"),
        _count("processing").label("processing"),
        _count("done").label("done"),
        _count("failed").label("failed"),
        _done_sum(Slide.rbc_count).label("rbc"),
        _done_sum(Slide.wbc_count).label("wbc"),
        _done_sum(Slide.platelet_count).label("platelets"),
        _done_sum(Slide.rbc_frame_count).label("frame_rbc"),
        _done_sum(Slide.wbc_frame_count).label("frame_wbc"),
        _done_sum(Slide.platelet_frame_count).label("frame_platelets"),
        done_count_unframed(Slide.status, Slide.rbc_frame_count).label("unframed"),
        done_count_warned(Slide.status, Slide.warnings).label("warned"),
        func.max(Slide.finished_at).label("last_finished"),
    ]


def status_expression(agg) -> ColumnElement[str]:
    """SQL twin of :func:`derive_status` over a subquery of :func:`progress_columns`."""
    finished = agg.c.done + agg.c.failed
    return case(
        (agg.c.uploading > 0, "uploading"),
        (
            finished < agg.c.total,
            case(((agg.c.processing > 0) | (finished > 0), "processing"), else_="queued"),
        ),
        (agg.c.failed == 0, "done"),
        (agg.c.done == 0, "failed"),
        else_="done_with_errors",
    )


def progress_query(batch_ids_filter) -> Any:
    return (
        select(Slide.batch_id, *progress_columns()).where(batch_ids_filter).group_by(Slide.batch_id)
    )


def summary_from_row(row: Any) -> dict[str, Any]:
    """status, progress, totals (visible and in the counting frame) and finished_at of a batch."""
    counts = {
        s: int(getattr(row, s) or 0)
        for s in ("uploading", "queued", "processing", "done", "failed")
    }
    status = derive_status(counts)
    finished: datetime | None = (
        row.last_finished if status in ("done", "failed", "done_with_errors") else None
    )
    return {
        "status": status,
        "progress": {"total": int(row.total), **counts},
        "totals": {"RBC": int(row.rbc), "WBC": int(row.wbc), "Platelets": int(row.platelets)},
        # A sum that left out some slides would pass for the batch's total: none instead.
        "frame_totals": None
        if row.unframed
        else {
            "RBC": int(row.frame_rbc),
            "WBC": int(row.frame_wbc),
            "Platelets": int(row.frame_platelets),
        },
        # Finished slides whose counts carry warnings: the ones to look at first.
        "slides_with_warnings": int(row.warned or 0),
        "finished_at": finished,
    }
