"""Batches: submit (multipart or presigned uploads), read status, list, retry, reprocess."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from bloodcount.db.models import Batch, Slide
from bloodcount.db.types import new_id, utcnow
from bloodcount.resources import Resources
from bloodcount.services.errors import Conflict, InvalidRequest, NotFound, NotSupported
from bloodcount.services.paging import Page, PageRequest, fetch_page
from bloodcount.services.status import progress_columns, status_expression, summary_from_row
from bloodcount.services.uploads import SlideFile, check_name
from bloodcount.storage import (
    ObjectInfo,
    ObjectNotFound,
    PresignNotSupported,
    each_concurrently,
    first_error,
    put_all,
)

log = logging.getLogger(__name__)

Enqueue = Callable[[Sequence[str]], None]
MAX_TEXT = 200


@dataclass(frozen=True)
class Submission:
    """What a submit answers: the batch, its slides, and whether it was made just now."""

    batch_id: str
    slide_ids: list[str]
    created: bool = True
    uploads: list[dict[str, Any]] = field(default_factory=list)
    expires_at: datetime | None = None


def batch_prefix(lab_id: int, batch_id: str) -> str:
    """Where every object of a batch is stored: its originals, overlays and display images."""
    return f"labs/{lab_id}/batches/{batch_id}/"


def original_key(lab_id: int, batch_id: str, slide_id: str, suffix: str = "") -> str:
    return f"{batch_prefix(lab_id, batch_id)}{slide_id}{suffix}"


def overlay_key(lab_id: int, batch_id: str, slide_id: str) -> str:
    return f"{batch_prefix(lab_id, batch_id)}{slide_id}.overlay.jpg"


# Originals every browser shows as they are. Any other accepted kind (TIFF) gets a JPEG of
# the slide as analysed, written by the worker beside its overlay (display_key).
BROWSER_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/bmp"})


def display_key(lab_id: int, batch_id: str, slide_id: str) -> str:
    return f"{batch_prefix(lab_id, batch_id)}{slide_id}.display.jpg"


def _check_text(name: str, value: str | None) -> str | None:
    if value is not None and (len(value) > MAX_TEXT or not value.strip()):
        raise InvalidRequest(f"{name} must be 1 to {MAX_TEXT} characters", parameter=name)
    return value


def _fingerprint(reference: str | None, parts: list[Any]) -> str:
    return hashlib.sha256(json.dumps([reference, parts], sort_keys=True).encode()).hexdigest()


def _replay(res: Resources, lab_id: int, key: str | None, fingerprint: str) -> Submission | None:
    """The batch an idempotency key already made, or None; Conflict if the body differs."""
    if key is None:
        return None
    with res.sessions() as session:
        batch = session.scalar(
            select(Batch).where(Batch.lab_id == lab_id, Batch.idempotency_key == key)
        )
        if batch is None:
            return None
        if batch.request_sha256 != fingerprint:
            raise InvalidRequest(
                f"Idempotency-Key {key!r} was already used for batch {batch.id} with a different "
                "request; send a new key for a new batch",
                batch_id=batch.id,
            )
        slide_ids = list(
            session.scalars(
                select(Slide.id).where(Slide.batch_id == batch.id).order_by(Slide.position)
            )
        )
    return Submission(batch.id, slide_ids, created=False)


def _insert_batch(
    res: Resources,
    batch: dict[str, Any],
    slides: list[dict[str, Any]],
) -> bool:
    """Batch and slide rows in one transaction; False if the idempotency key won a race."""
    try:
        with res.sessions.begin() as session:
            session.execute(insert(Batch), [batch])
            session.execute(insert(Slide), slides)
    except IntegrityError:
        if batch.get("idempotency_key"):
            return False
        raise
    return True


def submit_batch(
    res: Resources,
    lab_id: int,
    files: list[SlideFile],
    enqueue: Enqueue,
    reference: str | None = None,
    idempotency_key: str | None = None,
) -> Submission:
    """Store the originals, write the rows in one transaction, then enqueue every slide.

    All or nothing: objects are written first and deleted again if anything after fails,
    so a failed request leaves nothing visible. A failed enqueue is only logged: the rows
    are committed and the reconciler re-sends slides left queued.
    """
    _check_text("reference", reference)
    _check_text("Idempotency-Key", idempotency_key)
    fingerprint = _fingerprint(reference, [[f.filename, f.sha256] for f in files])
    if (replayed := _replay(res, lab_id, idempotency_key, fingerprint)) is not None:
        return replayed

    now = utcnow()
    batch_id = new_id()
    slides = []
    for position, f in enumerate(files):
        slide_id = new_id()
        slides.append(
            {
                "id": slide_id,
                "batch_id": batch_id,
                "lab_id": lab_id,
                "position": position,
                "filename": f.filename,  # at most MAX_SLIDE_NAME: checked at upload
                "object_key": original_key(lab_id, batch_id, slide_id, f.suffix),
                "content_type": f.content_type,
                "sha256": f.sha256,
                "size_bytes": len(f.data),
                "status": "queued",
                "created_at": now,
                "updated_at": now,
            }
        )
    written: list[str] = []
    try:
        put_all(
            res.store,
            [
                (row["object_key"], f.data, f.content_type)
                for row, f in zip(slides, files, strict=True)
            ],
        )
        written = [row["object_key"] for row in slides]
        inserted = _insert_batch(
            res,
            _batch_row(batch_id, lab_id, reference, idempotency_key, fingerprint, len(files), now),
            slides,
        )
    except BaseException:
        _delete_quietly(res, written)
        raise
    if not inserted:
        _delete_quietly(res, written)
        replayed = _replay(res, lab_id, idempotency_key, fingerprint)
        if replayed is None:  # pragma: no cover - the conflicting row vanished meanwhile
            raise Conflict("a concurrent request with the same Idempotency-Key failed; try again")
        return replayed
    slide_ids = [s["id"] for s in slides]
    _enqueue_quietly(enqueue, slide_ids)
    return Submission(batch_id, slide_ids)


def _batch_row(batch_id, lab_id, reference, key, fingerprint, count, now) -> dict[str, Any]:
    return {
        "id": batch_id,
        "lab_id": lab_id,
        "reference": reference,
        "idempotency_key": key,
        "request_sha256": fingerprint,
        "slide_count": count,
        "created_at": now,
        "updated_at": now,
    }


def _delete_quietly(res: Resources, keys: list[str]) -> None:
    for key in keys:
        try:
            res.store.delete(key)
        except Exception:  # the original error matters more; an orphan object is harmless
            log.warning("could not delete %s after a failed submit", key, exc_info=True)


def _enqueue_quietly(enqueue: Enqueue, slide_ids: list[str]) -> None:
    if not slide_ids:
        return
    try:
        enqueue(slide_ids)
    except Exception:
        # The rows are committed; the reconciler re-sends slides left queued too long.
        log.exception("enqueue of %d slides failed; the reconciler will send them", len(slide_ids))


def create_upload_batch(
    res: Resources,
    lab_id: int,
    files: list[dict[str, Any]],
    reference: str | None = None,
    idempotency_key: str | None = None,
) -> Submission:
    """A batch of slides waiting for upload, with one presigned PUT URL per file."""
    _check_text("reference", reference)
    _check_text("Idempotency-Key", idempotency_key)
    names = _upload_names(files, res.settings.max_files_per_batch)
    fingerprint = _fingerprint(reference, names)
    if (replayed := _replay(res, lab_id, idempotency_key, fingerprint)) is not None:
        return replayed
    expiry = res.settings.presign_expiry_seconds
    now = utcnow()
    batch_id = new_id()
    slides, uploads = [], []
    for position, name in enumerate(names):
        slide_id = new_id()
        key = original_key(lab_id, batch_id, slide_id)
        try:
            url = res.store.presigned_put_url(key, expiry)
        except PresignNotSupported:
            raise NotSupported(
                "this deployment keeps slides in a folder store, which cannot issue upload URLs; "
                "send the images as multipart/form-data to POST /api/v1/batches instead"
            ) from None
        slides.append(
            {
                "id": slide_id,
                "batch_id": batch_id,
                "lab_id": lab_id,
                "position": position,
                "filename": name,
                "object_key": key,
                "status": "uploading",
                "created_at": now,
                "updated_at": now,
            }
        )
        uploads.append({"slide_id": slide_id, "file": name, "method": "PUT", "url": url})
    row = _batch_row(batch_id, lab_id, reference, idempotency_key, fingerprint, len(names), now)
    if not _insert_batch(res, row, slides):
        replayed = _replay(res, lab_id, idempotency_key, fingerprint)
        if replayed is None:  # pragma: no cover
            raise Conflict("a concurrent request with the same Idempotency-Key failed; try again")
        return replayed
    return Submission(
        batch_id,
        [s["id"] for s in slides],
        uploads=uploads,
        expires_at=now + timedelta(seconds=expiry),
    )


def _upload_names(files: Any, max_files: int) -> list[str]:
    if not isinstance(files, list) or not files:
        raise InvalidRequest("'files' must be a non-empty list of {\"name\": ...} objects")
    if len(files) > max_files:
        raise InvalidRequest(
            f"more than {max_files} files in one batch (BLOODCOUNT_MAX_FILES_PER_BATCH)"
        )
    names = []
    for i, item in enumerate(files):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not 1 <= len(name) <= 500:
            raise InvalidRequest(f"files[{i}].name must be a file name of 1 to 500 characters")
        names.append(check_name(name, f"files[{i}].name"))
    return names


def submit_uploaded(res: Resources, lab_id: int, batch_id: str, enqueue: Enqueue) -> Submission:
    """Check that every presigned upload arrived, then queue the slides.

    Conflict (nothing queued) if any object is missing or empty. Calling it again once
    submitted answers the same slides without queuing them twice.
    """
    with res.sessions.begin() as session:
        owned_batch(session, lab_id, batch_id)
        rows = session.execute(
            select(Slide.id, Slide.filename, Slide.object_key, Slide.status)
            .where(Slide.batch_id == batch_id)
            .order_by(Slide.position)
        ).all()
        waiting = [r for r in rows if r.status == "uploading"]
        if not waiting:
            return Submission(batch_id, [r.id for r in rows], created=False)
        missing, sizes = [], {}
        # One HEAD per object; several at once, as 500 in a row to S3 would take seconds.
        infos = each_concurrently(lambda r: _info_or_none(res, r.object_key), waiting)
        if (error := first_error(infos)) is not None:
            raise error
        for r, info in zip(waiting, infos, strict=True):
            if info is None or info.size == 0:
                missing.append(r.filename)
                continue
            sizes[r.id] = (info.size, info.content_type)
        if missing:
            raise Conflict(
                f"{len(missing)} of {len(waiting)} files were not uploaded (or are empty): "
                f"{', '.join(missing[:10])}; PUT them to their URLs, then submit again",
                missing=missing,
            )
        now = utcnow()
        for r in waiting:
            size, content_type = sizes[r.id]
            session.execute(
                update(Slide)
                .where(Slide.id == r.id, Slide.status == "uploading")
                .values(status="queued", size_bytes=size, content_type=content_type, updated_at=now)
            )
    slide_ids = [r.id for r in waiting]
    _enqueue_quietly(enqueue, slide_ids)
    return Submission(batch_id, [r.id for r in rows])


def _info_or_none(res: Resources, key: str) -> ObjectInfo | None:
    try:
        return res.store.info(key)
    except ObjectNotFound:
        return None


def owned_batch(session, lab_id: int, batch_id: str) -> Batch:
    batch = session.scalar(select(Batch).where(Batch.id == batch_id, Batch.lab_id == lab_id))
    if batch is None:
        raise NotFound(f"no batch {batch_id!r} in your lab")
    return batch


# Built once with bind parameters: polling runs this on every request, and building and
# hashing the statement anew cost more CPU than PostgreSQL took to answer it.
_SUMMARY = (
    select(Batch.id, Batch.reference, Batch.created_at, *progress_columns())
    .join(Slide, Slide.batch_id == Batch.id)
    .where(Batch.id == bindparam("batch_id"), Batch.lab_id == bindparam("lab_id"))
    .group_by(Batch.id, Batch.reference, Batch.created_at)
)


def batch_summary(res: Resources, lab_id: int, batch_id: str) -> dict[str, Any]:
    """Status, progress, totals of one batch: one aggregate query over its slides."""
    with res.engine.connect() as connection:
        row = connection.execute(_SUMMARY, {"batch_id": batch_id, "lab_id": lab_id}).first()
    if row is None:
        raise NotFound(f"no batch {batch_id!r} in your lab")
    return _batch_item(row)


def _batch_item(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "reference": row.reference,
        "created_at": row.created_at,
        **summary_from_row(row),
    }


def list_batches(
    res: Resources,
    lab_id: int,
    page: PageRequest,
    status: str | None = None,
    reference: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> Page:
    """The lab's batches, newest first, filtered by derived status, reference and date."""
    agg = (
        select(Slide.batch_id, *progress_columns())
        .where(Slide.lab_id == lab_id)
        .group_by(Slide.batch_id)
        .subquery()
    )
    derived = status_expression(agg)
    query = (
        select(
            Batch.id, Batch.reference, Batch.created_at, *[c for c in agg.c if c.name != "batch_id"]
        )
        .join(agg, agg.c.batch_id == Batch.id)
        .where(Batch.lab_id == lab_id)
        .order_by(Batch.created_at.desc(), Batch.id)
    )
    if status is not None:
        query = query.where(derived == status)
    if reference is not None:
        query = query.where(Batch.reference == reference)
    if created_from is not None:
        query = query.where(Batch.created_at >= created_from)
    if created_to is not None:
        query = query.where(Batch.created_at < created_to)
    with res.sessions() as session:
        return fetch_page(session, query, page, _batch_item)


def list_slides(
    res: Resources, lab_id: int, batch_id: str, page: PageRequest, status: str | None = None
) -> Page:
    """A batch's slides in upload order, with their status and counts; ``status``: only
    the slides in that status (a large batch's failed ones, say)."""
    query = (
        select(Slide)
        .where(Slide.batch_id == batch_id, Slide.lab_id == lab_id)
        .order_by(Slide.position, Slide.id)
    )
    if status is not None:
        query = query.where(Slide.status == status)
    with res.sessions() as session:
        owned_batch(session, lab_id, batch_id)
        return fetch_page(session, query, page, lambda row: slide_item(row[0]))


def slide_item(slide: Slide) -> dict[str, Any]:
    """The short form of a slide, as listed and as reported."""
    counted = slide.status == "done"
    return {
        "id": slide.id,
        "batch_id": slide.batch_id,
        "position": slide.position,
        "file": slide.filename,
        "status": slide.status,
        "error": slide.error,
        "width": slide.width,
        "height": slide.height,
        "counts": {
            "RBC": slide.rbc_count,
            "WBC": slide.wbc_count,
            "Platelets": slide.platelet_count,
        }
        if counted
        else None,
        # In the unbiased counting frame; None too for slides counted before it was recorded.
        "frame_counts": {
            "RBC": slide.rbc_frame_count,
            "WBC": slide.wbc_frame_count,
            "Platelets": slide.platelet_frame_count,
        }
        if counted and slide.rbc_frame_count is not None
        else None,
        # Reasons to look before trusting the counts; None too for slides counted before
        # they were recorded.
        "warnings": slide.warnings if counted else None,
        "attempts": slide.attempts,
        "finished_at": slide.finished_at,
    }


def _requeue(
    res: Resources, lab_id: int, batch_id: str, which, enqueue: Enqueue, what: str
) -> list[str]:
    with res.sessions.begin() as session:
        owned_batch(session, lab_id, batch_id)
        statuses = dict(
            session.execute(select(Slide.id, Slide.status).where(Slide.batch_id == batch_id)).all()
        )
        ids = which(statuses)
        if not ids:
            raise Conflict(what)
        session.execute(
            update(Slide)
            .where(and_(Slide.id.in_(ids)))
            .values(
                status="queued",
                error=None,
                attempts=0,
                requeues=0,
                claim_token=None,
                started_at=None,
                finished_at=None,
                updated_at=utcnow(),
            )
        )
    _enqueue_quietly(enqueue, ids)
    return ids


def retry_failed(res: Resources, lab_id: int, batch_id: str, enqueue: Enqueue) -> list[str]:
    """Queue the batch's failed slides again; Conflict if none failed."""
    return _requeue(
        res,
        lab_id,
        batch_id,
        lambda statuses: [i for i, s in statuses.items() if s == "failed"],
        enqueue,
        "this batch has no failed slides to retry",
    )


def reprocess(res: Resources, lab_id: int, batch_id: str, enqueue: Enqueue) -> list[str]:
    """Queue every slide again for the current model; earlier analyses are kept.

    Conflict while any slide is unfinished: reprocessing a running batch would race it.
    """

    def finished_all(statuses: dict[str, str]) -> list[str]:
        if any(s not in ("done", "failed") for s in statuses.values()):
            raise Conflict("this batch is still running; reprocess it once every slide is finished")
        return list(statuses)

    return _requeue(res, lab_id, batch_id, finished_all, enqueue, "this batch has no slides")
