"""One slide in full: its current counts and cells, every earlier analysis, its images."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bloodcount.db.models import Analysis, Cell, Slide
from bloodcount.resources import Resources
from bloodcount.services.batches import BROWSER_IMAGE_TYPES, display_key, slide_item
from bloodcount.services.errors import NotFound


def _owned_slide(session, lab_id: int, slide_id: str) -> Slide:
    slide = session.scalar(select(Slide).where(Slide.id == slide_id, Slide.lab_id == lab_id))
    if slide is None:
        raise NotFound(f"no slide {slide_id!r} in your lab")
    return slide


def cell_item(cell: Cell) -> dict[str, Any]:
    """A stored cell in the shape of the analysis contract."""
    return {
        "label": cell.label,
        "confidence": cell.confidence,
        "box": [cell.x0, cell.y0, cell.x1, cell.y1],
        "probabilities": {"RBC": cell.p_rbc, "WBC": cell.p_wbc, "Platelets": cell.p_platelets},
        "edge": cell.edge,
        "review": cell.review,
        "frame": cell.frame,
    }


def slide_detail(res: Resources, lab_id: int, slide_id: str) -> dict[str, Any]:
    """Counts, cells, model provenance, timings and the history of analyses of a slide."""
    with res.sessions() as session:
        slide = _owned_slide(session, lab_id, slide_id)
        analyses = list(
            session.scalars(
                select(Analysis).where(Analysis.slide_id == slide_id).order_by(Analysis.id)
            )
        )
        current = next((a for a in analyses if a.current), None)
        cells = []
        if current is not None and slide.status == "done":
            cells = [
                cell_item(c)
                for c in session.scalars(
                    select(Cell).where(Cell.analysis_id == current.id).order_by(Cell.id)
                )
            ]
        detail = slide_item(slide)
        detail.update(
            {
                "content_type": slide.content_type,
                "sha256": slide.sha256,
                "size_bytes": slide.size_bytes,
                "created_at": slide.created_at,
                "started_at": slide.started_at,
                "model": {
                    "name": slide.model_name,
                    "version": slide.model_version,
                    "sha256": slide.model_sha256,
                }
                if slide.model_name
                else None,
                "timings_ms": {
                    "decode": slide.decode_ms,
                    "detect": slide.detect_ms,
                    "classify": slide.classify_ms,
                    "total": slide.total_ms,
                }
                if slide.total_ms is not None
                else None,
                "has_overlay": bool(slide.overlay_key) and slide.status == "done",
                "has_display": _has_display(slide, counted=bool(analyses)),
                "cells": cells,
                "analyses": [
                    {
                        "id": a.id,
                        "current": a.current,
                        "created_at": a.created_at,
                        "model": {
                            "name": a.model_name,
                            "version": a.model_version,
                            "sha256": a.model_sha256,
                        },
                        "counts": {
                            "RBC": a.rbc_count,
                            "WBC": a.wbc_count,
                            "Platelets": a.platelet_count,
                        },
                    }
                    for a in analyses
                ],
            }
        )
    return detail


def _has_display(slide: Slide, counted: bool) -> bool:
    """Whether the page has an image to show: a browser-ready original, or (TIFF) the JPEG
    written when the slide was counted, which stays while it is being counted again."""
    return slide.content_type in BROWSER_IMAGE_TYPES or counted


def slide_object(res: Resources, lab_id: int, slide_id: str, which: str) -> tuple[str, str]:
    """(object key, content type) of a slide's original ``image``, its ``overlay``, or its
    ``display`` image: the original where a browser shows it, else the worker's JPEG."""
    with res.sessions() as session:
        slide = _owned_slide(session, lab_id, slide_id)
        if which == "image" or (which == "display" and slide.content_type in BROWSER_IMAGE_TYPES):
            return slide.object_key, slide.content_type or "application/octet-stream"
        if which == "display":
            counted = session.scalar(
                select(Analysis.id).where(Analysis.slide_id == slide.id).limit(1)
            )
            if not _has_display(slide, counted=counted is not None):
                raise NotFound(
                    f"slide {slide_id!r} has no image a browser can show yet (status "
                    f"{slide.status}); its {slide.content_type} original is converted when "
                    "the slide is analysed"
                )
            return display_key(slide.lab_id, slide.batch_id, slide.id), "image/jpeg"
        if not slide.overlay_key or slide.status != "done":
            raise NotFound(
                f"slide {slide_id!r} has no overlay yet (status {slide.status}); "
                "it is drawn when the slide is analysed"
            )
        return slide.overlay_key, "image/jpeg"
