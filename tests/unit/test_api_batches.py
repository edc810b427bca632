"""POST/GET /api/v1/batches on embedded settings with tasks run in-process."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select, text

from bloodcount.db.models import Analysis, Batch, Cell, Slide
from tests.servicekit import ApiEnv, open_api_env, smear_bytes, zip_of


@pytest.fixture
def api_env(tmp_path):
    yield from open_api_env(tmp_path)


SLIDES = {"a.jpg": smear_bytes(1), "b.png": smear_bytes(2, ".png")}


def _rows(env, model) -> int:
    with env.resources.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_submit_processes_images_and_zips_with_the_analyzers_counts(api_env):
    archive = zip_of(
        {
            "inner/c.jpg": smear_bytes(3),
            "__MACOSX/._c.jpg": b"junk",
            "d.txt.bmp": smear_bytes(4, ".bmp"),
        }
    )
    response = api_env.submit({**SLIDES, "more.zip": archive}, reference="RUN-7")
    assert response.status_code == 202
    body = response.get_json()
    assert response.headers["Location"] == f"/api/v1/batches/{body['id']}"
    assert len(body["slide_ids"]) == 4

    batch = api_env.get(body["links"]["self"]).get_json()
    assert batch["status"] == "done" and batch["reference"] == "RUN-7"
    assert batch["progress"] == {
        "total": 4,
        "uploading": 0,
        "queued": 0,
        "processing": 0,
        "done": 4,
        "failed": 0,
    }

    slides = api_env.get(body["links"]["slides"]).get_json()["items"]
    assert [s["file"] for s in slides] == [
        "a.jpg",
        "b.png",
        "more.zip/d.txt.bmp",
        "more.zip/inner/c.jpg",
    ]
    sources = [SLIDES["a.jpg"], SLIDES["b.png"], smear_bytes(4, ".bmp"), smear_bytes(3)]
    results = [api_env.analyzer.analyze_bytes(data, "x") for data in sources]
    expected = [r.counts for r in results]
    assert [s["counts"] for s in slides] == expected
    assert [s["frame_counts"] for s in slides] == [r.frame_counts for r in results]
    assert batch["totals"] == {k: sum(c[k] for c in expected) for k in ("RBC", "WBC", "Platelets")}
    assert sum(batch["totals"].values()) > 0
    framed = {k: sum(r.frame_counts[k] for r in results) for k in ("RBC", "WBC", "Platelets")}
    assert batch["frame_totals"] == framed
    assert batch["slides_with_warnings"] == 0

    detail = api_env.get(f"/api/v1/slides/{slides[0]['id']}").get_json()
    assert len(detail["cells"]) == sum(detail["counts"].values())
    cell = detail["cells"][0]
    assert set(cell) == {"label", "confidence", "box", "probabilities", "edge", "review", "frame"}
    framed = {k: sum(c["label"] == k and c["frame"] for c in detail["cells"]) for k in expected[0]}
    assert detail["frame_counts"] == framed
    assert detail["model"] == api_env.analyzer.model_info
    overlay = api_env.get(detail["overlay_url"])
    assert overlay.status_code == 200 and overlay.data.startswith(b"\xff\xd8\xff")
    image = api_env.get(detail["links"]["image"])
    assert image.data == SLIDES["a.jpg"] and image.mimetype == "image/jpeg"


def test_files_are_sniffed_by_content_not_name(api_env):
    response = api_env.submit({"slide.txt": smear_bytes(5, ".png")})
    assert response.status_code == 202
    slide = api_env.get(f"/api/v1/slides/{response.get_json()['slide_ids'][0]}").get_json()
    assert slide["content_type"] == "image/png" and slide["status"] == "done"


@pytest.mark.parametrize("bad", [b"hello, not an image", zip_of({"notes.txt": b"plain text"})])
def test_a_non_image_refuses_the_whole_request_and_leaves_nothing(api_env, bad):
    response = api_env.submit({"good.jpg": SLIDES["a.jpg"], "bad.jpg": bad})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert "bad.jpg" in response.get_json()["detail"]
    assert _rows(api_env, Batch) == 0 and _rows(api_env, Slide) == 0
    assert list(api_env.resources.store.list()) == []


def test_a_storage_failure_midway_deletes_what_was_written(api_env, monkeypatch):
    from bloodcount.storage import StorageError

    store = api_env.resources.store
    real_put, calls = store.put, []

    def failing_put(key, data, content_type=None):
        calls.append(key)
        if len(calls) == 2:
            raise StorageError("disk full")
        real_put(key, data, content_type)

    monkeypatch.setattr(store, "put", failing_put)
    response = api_env.submit(SLIDES)
    assert response.status_code == 503
    assert response.get_json()["title"] == "Object store unavailable"
    assert list(store.list()) == [] and _rows(api_env, Slide) == 0


def test_a_database_failure_deletes_the_stored_originals(api_env, monkeypatch):
    from sqlalchemy.exc import OperationalError

    import bloodcount.services.batches as batches

    def broken(*args, **kwargs):
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(batches, "_insert_batch", broken)
    response = api_env.submit(SLIDES)
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert list(api_env.resources.store.list()) == []


def test_a_failed_enqueue_still_answers_202_and_the_slides_stay_queued(api_env, monkeypatch):
    queue = api_env.app.extensions["bloodcount"].queue

    def broker_down(ids):
        raise ConnectionError("broker down")

    monkeypatch.setattr(queue, "enqueue_slides", broker_down)
    response = api_env.submit(SLIDES)
    assert response.status_code == 202
    batch = api_env.get(response.headers["Location"]).get_json()
    assert batch["status"] == "queued" and batch["progress"]["queued"] == 2


def test_idempotency_key_returns_the_same_batch_and_refuses_another_body(api_env):
    first = api_env.submit(SLIDES, reference="R", **{"Idempotency-Key": "k-1"})
    again = api_env.submit(SLIDES, reference="R", **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.get_json()["slide_ids"] == first.get_json()["slide_ids"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = api_env.submit({"a.jpg": SLIDES["a.jpg"]}, reference="R", **{"Idempotency-Key": "k-1"})
    assert other.status_code == 422 and "Idempotency-Key" in other.get_json()["detail"]
    assert _rows(api_env, Batch) == 1 and _rows(api_env, Slide) == 2
    # The same key is another lab's own business.
    assert (
        api_env.submit(SLIDES, lab="Lab B", **{"Idempotency-Key": "k-1"}).get_json()["id"]
        != first.get_json()["id"]
    )


def test_polling_has_etag_304_and_retry_after_while_running(tmp_path):
    env = ApiEnv(tmp_path, task_always_eager=False)  # real producer, filesystem broker
    try:
        response = env.submit(SLIDES)
        assert response.status_code == 202
        # The messages sit in the broker folder for a worker that is not running.
        assert len(list((tmp_path / "broker" / "queue").iterdir())) == 2
        poll = env.get(response.headers["Location"])
        assert poll.get_json()["status"] == "queued"
        assert poll.headers["Retry-After"] == "2" and poll.headers["ETag"]
        again = env.get(
            response.headers["Location"], headers={"If-None-Match": poll.headers["ETag"]}
        )
        assert again.status_code == 304 and not again.data
    finally:
        env.close()


def test_finished_batch_has_no_retry_after_and_a_new_etag(api_env):
    location = api_env.submit(SLIDES).headers["Location"]
    poll = api_env.get(location)
    assert poll.get_json()["status"] == "done" and "Retry-After" not in poll.headers
    assert api_env.get(location, headers={"If-None-Match": '"stale"'}).status_code == 200


def test_listing_batches_pages_and_filters(api_env):
    ids = [
        api_env.submit({"a.jpg": SLIDES["a.jpg"]}, reference=f"R{i}").get_json()["id"]
        for i in range(5)
    ]
    api_env.submit({"bad.jpg": b"\xff\xd8\xff not really a jpeg"}, reference="BAD")
    page1 = api_env.get("/api/v1/batches?per_page=2&status=done").get_json()
    assert page1["total"] == 5 and len(page1["items"]) == 2
    assert [b["id"] for b in page1["items"]] == ids[::-1][:2]  # newest first
    assert page1["next"].endswith("&page=2")
    page3 = api_env.get(page1["next"][: -len("2")] + "3").get_json()
    assert [b["id"] for b in page3["items"]] == [ids[0]] and page3["next"] is None
    failed = api_env.get("/api/v1/batches?status=failed").get_json()["items"]
    assert [b["reference"] for b in failed] == ["BAD"]
    assert [b["id"] for b in api_env.get("/api/v1/batches?reference=R3").get_json()["items"]] == [
        ids[3]
    ]
    assert api_env.get("/api/v1/batches?from=2999-01-01").get_json()["total"] == 0
    assert api_env.get("/api/v1/batches?to=2999-01-01T00:00:00Z").get_json()["total"] == 6
    slides = api_env.get(f"/api/v1/batches/{ids[0]}/slides?per_page=1").get_json()
    assert slides["total"] == 1 and slides["next"] is None


@pytest.mark.parametrize(
    "query", ["page=0", "per_page=1000", "page=x", "status=nope", "from=yesterday"]
)
def test_bad_query_parameters_are_422_problems(api_env, query):
    response = api_env.get(f"/api/v1/batches?{query}")
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert query.split("=")[0] in response.get_json()["detail"]


def test_retry_and_reprocess_keep_every_analysis(api_env):
    body = api_env.submit(
        {"good.jpg": SLIDES["a.jpg"], "bad.jpg": b"\xff\xd8\xff broken"}
    ).get_json()
    batch_id = body["id"]
    assert api_env.get(f"/api/v1/batches/{batch_id}").get_json()["status"] == "done_with_errors"

    retried = api_env.post(f"/api/v1/batches/{batch_id}/retry")
    assert retried.status_code == 202 and retried.get_json()["slide_ids"] == [body["slide_ids"][1]]
    bad = api_env.get(f"/api/v1/slides/{body['slide_ids'][1]}").get_json()
    assert bad["status"] == "failed" and "JPEG" in bad["error"] and bad["attempts"] == 1

    api_env.analyzer.classifier.info = {"name": "stand-in", "version": "v2", "sha256": "2" * 64}
    try:
        assert api_env.post(f"/api/v1/batches/{batch_id}/reprocess").status_code == 202
    finally:
        del api_env.analyzer.classifier.info
    good = api_env.get(f"/api/v1/slides/{body['slide_ids'][0]}").get_json()
    assert [(a["model"]["version"], a["current"]) for a in good["analyses"]] == [
        ("test", False),
        ("v2", True),
    ]
    assert good["model"]["version"] == "v2"
    assert good["analyses"][0]["counts"] == good["analyses"][1]["counts"] == good["counts"]
    with api_env.resources.sessions() as session:
        per_analysis = session.execute(
            select(Cell.analysis_id, func.count()).group_by(Cell.analysis_id)
        ).all()
        assert session.scalar(select(func.count()).select_from(Analysis)) == 2
    assert [n for _, n in per_analysis] == [sum(good["counts"].values())] * 2


def test_retry_without_failures_and_reprocess_while_running_are_409(tmp_path):
    env = ApiEnv(tmp_path, task_always_eager=False)
    try:
        batch_id = env.submit(SLIDES).get_json()["id"]
        for action in ("retry", "reprocess"):
            response = env.post(f"/api/v1/batches/{batch_id}/{action}")
            assert response.status_code == 409 and response.mimetype == "application/problem+json"
    finally:
        env.close()


def test_presigned_uploads_need_s3(api_env):
    response = api_env.post("/api/v1/batches", json={"files": [{"name": "big.tif"}]})
    assert response.status_code == 501
    assert "multipart/form-data" in response.get_json()["detail"]


def test_submission_limits(tmp_path):
    env = ApiEnv(tmp_path, max_files_per_batch=2, max_upload_bytes=400_000)
    try:
        three = {f"{i}.jpg": SLIDES["a.jpg"] for i in range(3)}
        assert env.submit(three).status_code == 413
        bomb = zip_of({"huge.bmp": b"BM" + bytes(500_000)})
        assert len(bomb) < 10_000
        response = env.submit({"bomb.zip": bomb})
        assert (
            response.status_code == 413
            and "BLOODCOUNT_MAX_UPLOAD_BYTES" in response.get_json()["detail"]
        )
        assert env.submit({}).status_code == 422
        assert env.post("/api/v1/batches", data="x", content_type="text/plain").status_code == 422
    finally:
        env.close()


def test_reports_csv_json_and_counts(api_env):
    body = api_env.submit(
        {"a.jpg": SLIDES["a.jpg"], "bad.jpg": b"\xff\xd8\xff broken"}, reference="REP"
    ).get_json()
    csv_text = api_env.get(f"/api/v1/batches/{body['id']}/report.csv").data.decode()
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith(
        "batch_id,reference,slide_id,position,file,status,error,RBC,WBC,Platelets"
    )
    assert len(lines) == 3 and ",failed," in lines[2]
    assert lines[0].endswith(",finished_at,frame_RBC,frame_WBC,frame_Platelets,warnings")
    report = api_env.get(f"/api/v1/batches/{body['id']}/report.json").get_json()
    done, failed = report["slides"]
    assert done["frame_RBC"] is not None and done["frame_RBC"] <= done["RBC"]
    assert failed["frame_RBC"] is None and failed["RBC"] is None
    with api_env.resources.engine.connect() as connection:
        # SQL NULL, not the JSON value null: json_array_length fails on the latter.
        stored = connection.execute(
            text("SELECT warnings IS NULL FROM slides WHERE id = :id"), {"id": failed["slide_id"]}
        ).scalar_one()
    assert stored
    assert report["batch"]["status"] == "done_with_errors"
    assert report["slides"][0]["RBC"] == report["batch"]["totals"]["RBC"]
    counts = api_env.get("/api/v1/reports/counts?from=2000-01-01").get_json()
    assert counts["totals"]["slides"] == 2 and counts["totals"]["failed"] == 1
    (row,) = counts["batches"]
    assert [row[f"frame_{k}"] for k in ("RBC", "WBC", "Platelets")] == [
        done[f"frame_{k}"] for k in ("RBC", "WBC", "Platelets")
    ]
    assert counts["totals"]["frame_RBC"] == done["frame_RBC"]
    assert counts["batches"][0]["submitted_at"].endswith("Z")
    assert api_env.get("/api/v1/reports/counts", lab="Lab B").get_json()["totals"]["slides"] == 0
    as_csv = api_env.get("/api/v1/reports/counts?format=csv")
    assert as_csv.mimetype == "text/csv" and "REP" in as_csv.data.decode()
    assert (
        as_csv.data.decode()
        .splitlines()[0]
        .endswith(",Platelets,frame_RBC,frame_WBC,frame_Platelets,slides_with_warnings")
    )
    assert (
        api_env.get("/api/v1/reports/counts?from=2999-01-01").get_json()["totals"]["batches"] == 0
    )


def test_frame_totals_are_null_while_a_finished_slide_lacks_frame_counts(api_env):
    old = api_env.submit({"a.jpg": SLIDES["a.jpg"], "b.png": SLIDES["b.png"]}).get_json()["id"]
    new = api_env.submit({"a.jpg": SLIDES["a.jpg"]}).get_json()["id"]
    with api_env.resources.sessions() as session, session.begin():
        # As migration 0003 leaves a slide counted before it: counts, no frame counts.
        slide = session.scalars(select(Slide).where(Slide.batch_id == old)).first()
        slide.rbc_frame_count = slide.wbc_frame_count = slide.platelet_frame_count = None
    assert api_env.get(f"/api/v1/batches/{old}").get_json()["frame_totals"] is None
    with api_env.resources.sessions() as session, session.begin():
        # Frame counts unlike the visible ones (these synthetic smears cut no cell), so the
        # sums below can only come from the frame columns.
        slide = session.scalars(select(Slide).where(Slide.batch_id == new)).one()
        slide.rbc_frame_count, slide.wbc_frame_count, slide.platelet_frame_count = 5, 1, 2
    fresh = api_env.get(f"/api/v1/batches/{new}").get_json()
    assert fresh["frame_totals"] == {"RBC": 5, "WBC": 1, "Platelets": 2} != fresh["totals"]
    counts = api_env.get("/api/v1/reports/counts").get_json()
    rows = {row["batch_id"]: row for row in counts["batches"]}
    assert rows[old]["frame_RBC"] is None and rows[old]["RBC"] > 0
    assert [rows[new][f"frame_{k}"] for k in ("RBC", "WBC", "Platelets")] == [5, 1, 2]
    # The sum over batches would leave the old slide out, so there is none.
    assert counts["totals"]["frame_RBC"] is None and counts["totals"]["RBC"] > 0
    text = api_env.get("/api/v1/reports/counts?format=csv").data.decode()
    by_batch = {row["batch_id"]: row for row in csv.DictReader(io.StringIO(text))}
    assert by_batch[old]["frame_RBC"] == "" and by_batch[new]["frame_RBC"] == "5"


def _png(image) -> bytes:
    import cv2

    return cv2.imencode(".png", image)[1].tobytes()


def test_a_blank_field_is_counted_with_a_warning_in_every_view(api_env):
    import numpy as np

    blank = _png(np.full((480, 640, 3), 235, np.uint8))
    body = api_env.submit({"smear.jpg": SLIDES["a.jpg"], "blank.png": blank}).get_json()
    smear, empty = api_env.get(f"/api/v1/batches/{body['id']}/slides").get_json()["items"]
    assert smear["status"] == empty["status"] == "done"
    assert smear["warnings"] == [] and empty["counts"]["RBC"] == 0
    batch = api_env.get(f"/api/v1/batches/{body['id']}").get_json()
    assert batch["slides_with_warnings"] == 1
    counts = api_env.get("/api/v1/reports/counts").get_json()
    assert counts["batches"][0]["slides_with_warnings"] == 1
    assert counts["totals"]["slides_with_warnings"] == 1
    header = api_env.get("/api/v1/reports/counts?format=csv").data.decode().splitlines()[0]
    assert header.endswith(",frame_Platelets,slides_with_warnings")
    assert [w["code"] for w in empty["warnings"]] == ["no_red_cells"]
    assert empty["warnings"][0]["message"].startswith("no red cells found")
    detail = api_env.get(f"/api/v1/slides/{empty['id']}").get_json()
    assert detail["warnings"] == empty["warnings"]
    report = api_env.get(f"/api/v1/batches/{body['id']}/report.json").get_json()
    assert [r["warnings"] for r in report["slides"]] == [[], empty["warnings"]]
    lines = api_env.get(f"/api/v1/batches/{body['id']}/report.csv").data.decode().splitlines()
    assert lines[0].endswith(",frame_Platelets,warnings")
    assert lines[1].endswith(",") and lines[2].endswith(",no_red_cells")


def test_multipart_field_may_be_named_file(api_env):
    response = api_env.post(
        "/api/v1/batches",
        data={"file": (io.BytesIO(SLIDES["a.jpg"]), "one.jpg")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202


def test_camera_jpegs_with_data_after_the_image_are_counted_like_the_plain_file(api_env):
    from tests.unit.test_services_uploads import _jpeg_and_mpo

    jpeg, mpo = _jpeg_and_mpo(9)
    files = {"plain.jpg": jpeg, "motion.jpg": jpeg + b"\x00" * 20_000, "mpo.jpg": mpo}
    body = api_env.submit(files).get_json()
    slides = api_env.get(f"/api/v1/batches/{body['id']}/slides").get_json()["items"]
    assert [s["status"] for s in slides] == ["done"] * 3, [s.get("error") for s in slides]
    counts = {s["file"]: s["counts"] for s in slides}
    assert counts["plain.jpg"]["RBC"] > 0
    assert counts["motion.jpg"] == counts["mpo.jpg"] == counts["plain.jpg"]


def test_the_display_image_is_the_original_or_for_a_tiff_a_jpeg_of_the_slide_as_analysed(
    api_env,
):
    import numpy as np
    from PIL import Image

    from bloodcount.vision.decode import decode_image

    # A TIFF (no browser shows one) turned on its side by EXIF: the page must show the
    # pixels the cells' boxes refer to, oriented as analysed.
    smear = Image.open(io.BytesIO(smear_bytes(11, ".png", width=320, height=240)))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    smear.save(buf, "TIFF", exif=exif)
    tiff = buf.getvalue()
    body = api_env.submit({"a.jpg": SLIDES["a.jpg"], "b.tif": tiff}).get_json()
    jpeg_slide, tiff_slide = (
        api_env.get(f"/api/v1/slides/{i}").get_json() for i in body["slide_ids"]
    )
    assert jpeg_slide["has_display"] and tiff_slide["has_display"]
    assert (tiff_slide["width"], tiff_slide["height"]) == (240, 320)

    shown = api_env.get(jpeg_slide["links"]["display"])
    assert shown.data == SLIDES["a.jpg"] and shown.mimetype == "image/jpeg"
    shown = api_env.get(tiff_slide["links"]["display"])
    assert shown.status_code == 200 and shown.mimetype == "image/jpeg"
    with Image.open(io.BytesIO(shown.data)) as img:
        assert img.format == "JPEG" and 0x0112 not in img.getexif()  # shown as stored
    pixels = decode_image(shown.data, 10**7).astype(int)
    analysed = decode_image(tiff, 10**7).astype(int)
    # A JPEG of the same pixels (this smear's noise costs about 3 levels), not of a turned copy.
    assert np.abs(pixels - analysed).mean() < 5.0 < np.abs(pixels - analysed[::-1, ::-1]).mean()

    # A TIFF slide counted before display images were kept: a 404 that says what to do.
    (key,) = [k for k in api_env.resources.store.list() if k.endswith(".display.jpg")]
    assert tiff_slide["id"] in key
    api_env.resources.store.delete(key)
    missing = api_env.get(tiff_slide["links"]["display"])
    assert missing.status_code == 404 and "reprocess its batch" in missing.get_json()["detail"]


def test_a_bigtiff_is_accepted_and_counted_like_the_same_classic_tiff(api_env):
    from PIL import Image

    smear = Image.open(io.BytesIO(smear_bytes(12, ".png", width=320, height=240)))
    classic, big = io.BytesIO(), io.BytesIO()
    smear.save(classic, "TIFF")
    smear.save(big, "TIFF", big_tiff=True)
    assert big.getvalue()[:4] == b"II+\x00"
    body = api_env.submit({"classic.tif": classic.getvalue(), "big.tif": big.getvalue()})
    assert body.status_code == 202, body.get_json()
    slides = api_env.get(f"/api/v1/batches/{body.get_json()['id']}/slides").get_json()["items"]
    assert [s["status"] for s in slides] == ["done", "done"]
    assert slides[0]["counts"] == slides[1]["counts"] and slides[0]["counts"]["RBC"] > 0


def test_a_tiff_has_no_display_image_until_counted_and_keeps_it_while_counted_again(tmp_path):
    from PIL import Image

    from bloodcount.services.processing import process_slide

    env = ApiEnv(tmp_path, task_always_eager=False)
    try:
        env.app.extensions["bloodcount"].queue.enqueue_slides = lambda ids: None
        buf = io.BytesIO()
        Image.open(io.BytesIO(smear_bytes(13, ".png", width=320, height=240))).save(buf, "TIFF")
        slide_id = env.submit({"s.tif": buf.getvalue()}).get_json()["slide_ids"][0]
        url = f"/api/v1/slides/{slide_id}"

        queued = env.get(url).get_json()
        assert not queued["has_display"] and queued["links"]["display"] is None
        waiting = env.get(f"{url}/display")
        assert waiting.status_code == 404 and "converted when" in waiting.get_json()["detail"]

        assert process_slide(env.resources, slide_id, env.analyzer) == "done"
        assert env.get(url).get_json()["has_display"]
        first = env.get(f"{url}/display")
        assert first.status_code == 200 and first.mimetype == "image/jpeg"

        batch_id = env.get(url).get_json()["batch_id"]
        assert env.post(f"/api/v1/batches/{batch_id}/reprocess").status_code == 202
        again = env.get(url).get_json()
        assert again["status"] == "queued" and again["has_display"]
        assert env.get(f"{url}/display").data == first.data  # the last count's image
    finally:
        env.close()


def test_a_batchs_slides_filtered_by_status(api_env):
    """A lab pulls a large batch's failed slides without paging through the rest."""
    body = api_env.submit({**SLIDES, "c.jpg": smear_bytes(3)}).get_json()
    failed_id = body["slide_ids"][1]
    with api_env.resources.sessions.begin() as session:
        session.get(Slide, failed_id).status = "failed"
    url = body["links"]["slides"]
    failed = api_env.get(f"{url}?status=failed").get_json()
    assert [s["id"] for s in failed["items"]] == [failed_id] and failed["total"] == 1
    done = api_env.get(f"{url}?status=done&per_page=1").get_json()
    assert done["total"] == 2 and done["next"] == f"{url}?status=done&per_page=1&page=2"
    refused = api_env.get(f"{url}?status=finished")
    assert refused.status_code == 422 and "status must be one of" in refused.get_json()["detail"]
