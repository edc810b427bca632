"""DELETE /api/v1/batches/<id>: the rows at once, the images after, nothing of another lab's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bloodcount import services
from bloodcount.db.models import Analysis, Batch, Cell, Slide
from bloodcount.db.types import utcnow
from bloodcount.services.processing import process_slide
from bloodcount.storage import StorageError
from tests.servicekit import ApiEnv, open_api_env, smear_bytes


@pytest.fixture
def api_env(tmp_path):
    yield from open_api_env(tmp_path)


def _rows(env, model, **where) -> int:
    query = select(func.count()).select_from(model)
    for name, value in where.items():
        query = query.where(getattr(model, name) == value)
    with env.resources.sessions() as session:
        return session.scalar(query)


def _keys(env, batch_id: str) -> list[str]:
    return [k for k in env.resources.store.list() if f"/batches/{batch_id}/" in k]


def test_delete_removes_the_batch_its_results_and_its_images_and_nothing_else(api_env):
    gone = api_env.submit({"a.jpg": smear_bytes(1), "b.png": smear_bytes(2, ".png")}).get_json()
    kept = api_env.submit({"c.jpg": smear_bytes(3)}).get_json()
    other_lab = api_env.submit({"d.jpg": smear_bytes(4)}, lab="Lab B").get_json()
    assert len(_keys(api_env, gone["id"])) == 4  # two originals, two overlays
    assert _rows(api_env, Cell) > 0

    # Another lab's key cannot delete it, nor learn that it exists.
    refused = api_env.delete(f"/api/v1/batches/{gone['id']}", lab="Lab B")
    assert refused.status_code == 404 and len(_keys(api_env, gone["id"])) == 4

    response = api_env.delete(f"/api/v1/batches/{gone['id']}")
    assert response.status_code == 200
    assert response.get_json() == {
        "id": gone["id"],
        "slides_deleted": 2,
        "objects_deleted": 4,
        "objects_left": 0,
    }
    assert _keys(api_env, gone["id"]) == []
    assert _rows(api_env, Batch, id=gone["id"]) == 0
    assert _rows(api_env, Slide, batch_id=gone["id"]) == 0
    with api_env.resources.sessions() as session:
        orphan_cells = session.scalar(
            select(func.count())
            .select_from(Cell)
            .where(Cell.analysis_id.not_in(select(Analysis.id)))
        )
    assert orphan_cells == 0  # the cells went with their analyses
    for slide_id in gone["slide_ids"]:
        assert _rows(api_env, Analysis, slide_id=slide_id) == 0
        assert api_env.get(f"/api/v1/slides/{slide_id}").status_code == 404
    assert api_env.get(f"/api/v1/batches/{gone['id']}").status_code == 404
    listed = [b["id"] for b in api_env.get("/api/v1/batches").get_json()["items"]]
    assert listed == [kept["id"]]
    counts = api_env.get("/api/v1/reports/counts").get_json()
    assert [b["batch_id"] for b in counts["batches"]] == [kept["id"]]

    # The rest stays whole: the lab's other batch, and the other lab's.
    for env_lab, batch in (("Lab A", kept), ("Lab B", other_lab)):
        assert (
            api_env.get(f"/api/v1/batches/{batch['id']}", lab=env_lab).get_json()["status"]
            == "done"
        )
        assert len(_keys(api_env, batch["id"])) == 2
    assert api_env.delete(f"/api/v1/batches/{gone['id']}").status_code == 404


def test_images_the_store_fails_to_delete_are_counted_and_swept_later(api_env, monkeypatch):
    body = api_env.submit({"a.jpg": smear_bytes(1), "b.jpg": smear_bytes(2)}).get_json()
    store = api_env.resources.store
    real_delete = store.delete

    def flaky_delete(key: str) -> None:
        if key.endswith(".overlay.jpg"):
            raise StorageError("store unavailable")
        real_delete(key)

    monkeypatch.setattr(store, "delete", flaky_delete)
    outcome = api_env.delete(f"/api/v1/batches/{body['id']}").get_json()
    assert (outcome["objects_deleted"], outcome["objects_left"]) == (2, 2)
    assert _rows(api_env, Slide) == 0  # the rows went all the same
    monkeypatch.setattr(store, "delete", real_delete)
    # Orphans now: the housekeeping sweep deletes them once old enough.
    assert services.sweep_orphans(api_env.resources) == []
    later = utcnow() + timedelta(seconds=api_env.settings.orphan_after_seconds + 60)
    assert len(services.sweep_orphans(api_env.resources, now=later)) == 2
    assert _keys(api_env, body["id"]) == []


def test_a_slide_being_analysed_when_its_batch_is_deleted_leaves_no_rows(tmp_path, monkeypatch):
    env = ApiEnv(tmp_path, task_always_eager=False)
    try:
        env.app.extensions["bloodcount"].queue.enqueue_slides = lambda ids: None
        body = env.submit({"a.jpg": smear_bytes(1)}).get_json()
        original = env.analyzer.analyze_bytes

        def deleted_meanwhile(*args, **kwargs):
            assert env.delete(f"/api/v1/batches/{body['id']}").status_code == 200
            return original(*args, **kwargs)

        monkeypatch.setattr(env.analyzer, "analyze_bytes", deleted_meanwhile)
        assert process_slide(env.resources, body["slide_ids"][0], env.analyzer) == "superseded"
        assert _rows(env, Slide) == _rows(env, Analysis) == _rows(env, Cell) == 0
        # A redelivered message finds nothing to do.
        assert process_slide(env.resources, body["slide_ids"][0], env.analyzer) == "skipped"
    finally:
        env.close()
