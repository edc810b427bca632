"""The worker's exactly-once use cases again, on PostgreSQL: there the cells go in by COPY
and the slide's statements are prebuilt, so the write path differs from SQLite's."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bloodcount.db.models import Analysis, Cell
from bloodcount.services.processing import process_slide
from tests.servicekit import ApiEnv, smear_bytes
from tests.support.stack import fresh_schema

# The same tests as the SQLite unit tier, run against this module's `queued` fixture.
from tests.unit.test_services_processing import (  # noqa: F401
    _slide,
    test_mark_failed_only_touches_unfinished_slides,
    test_missing_original_fails_the_slide_for_good,
    test_reconciler_resends_stuck_slides_and_gives_up_in_the_end,
    test_redelivery_after_success_does_nothing,
    test_transient_storage_error_is_retryable_then_gives_up,
    test_two_overlapping_deliveries_write_one_result,
    test_unknown_slide_is_skipped,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def queued(postgres_url, tmp_path):
    """As in the unit tier, on a fresh PostgreSQL schema: one queued batch of two slides."""
    with fresh_schema(postgres_url) as url:
        sent: list[str] = []
        env = ApiEnv(tmp_path, task_always_eager=False, database_url=url)
        env.app.extensions["bloodcount"].queue.enqueue_slides = sent.extend
        body = env.submit({"a.jpg": smear_bytes(1), "b.jpg": smear_bytes(2)}).get_json()
        env.sent = sent
        env.slide_ids = body["slide_ids"]
        try:
            yield env
        finally:
            env.close()


def test_copied_cell_rows_are_the_analysis_cells(queued):
    """Every field of every cell survives the COPY, in the order the analysis gave them."""
    slide_id = queued.slide_ids[0]
    expected = queued.analyzer.analyze_bytes(smear_bytes(1), "a.jpg").cells
    assert len(expected) > 10
    assert process_slide(queued.resources, slide_id, queued.analyzer) == "done"
    with queued.resources.sessions() as session:
        analysis = session.scalars(select(Analysis).where(Analysis.slide_id == slide_id)).one()
        rows = session.scalars(
            select(Cell).where(Cell.analysis_id == analysis.id).order_by(Cell.id)
        ).all()
    assert len(rows) == len(expected)
    for row, cell in zip(rows, expected, strict=True):
        assert row.label == cell.label
        assert (row.x0, row.y0, row.x1, row.y1) == tuple(int(round(v)) for v in cell.box)
        assert row.confidence == pytest.approx(cell.confidence)
        probabilities = (row.p_rbc, row.p_wbc, row.p_platelets)
        assert probabilities == pytest.approx(
            tuple(cell.probabilities[k] for k in ("RBC", "WBC", "Platelets"))
        )
        assert (row.edge, row.review, row.frame) == (cell.edge, cell.review, cell.frame)
    slide = _slide(queued, slide_id)
    assert (slide.rbc_count, slide.wbc_count, slide.platelet_count) == (
        analysis.rbc_count,
        analysis.wbc_count,
        analysis.platelet_count,
    )
    assert sum(1 for r in rows if r.label == "RBC") == slide.rbc_count
    assert sum(1 for r in rows if r.label == "RBC" and r.frame) == slide.rbc_frame_count
