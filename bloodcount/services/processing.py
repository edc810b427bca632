"""Worker-side use cases: analyse one slide exactly once, fail it for good, reconcile.

A slide is *claimed* (status processing, a fresh claim token) before it is analysed, and
its result is written only if that claim is still the latest, in one transaction with its
analysis and cells. So a redelivered message, a retry or a reconciler re-send can never
double a slide's cells: the later claim wins and earlier ones discard their work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from bloodcount.db.models import Analysis, Cell, Slide
from bloodcount.db.types import new_id, utcnow
from bloodcount.queue import slide_time_limits
from bloodcount.resources import Resources
from bloodcount.services.batches import (
    BROWSER_IMAGE_TYPES,
    Enqueue,
    display_key,
    overlay_key,
)
from bloodcount.services.errors import TransientError
from bloodcount.storage import ObjectNotFound, StorageError

log = logging.getLogger(__name__)

ACTIVE = ("queued", "processing")
_analyzers: dict[Any, Any] = {}


def shared_analyzer(settings) -> Any:
    """One Analyzer (and so one loaded model) per process and settings."""
    analyzer = _analyzers.get(settings)
    if analyzer is None:
        from bloodcount.analysis import Analyzer

        analyzer = _analyzers[settings] = Analyzer(settings)
    return analyzer


def max_attempts(settings) -> int:
    """Deliveries a slide may take (first try plus retries) before it is failed for good."""
    return settings.task_max_retries + 1


@dataclass(frozen=True)
class Claim:
    token: str
    attempts: int
    object_key: str
    filename: str
    lab_id: int
    batch_id: str
    last_error: str | None
    content_type: str | None


# The statements every slide runs, built once on the tables (not the ORM classes).
# Built per call through the ORM they cost the worker about 2 ms of a 25 ms slide
# (statement building, ORM value processing, cache keys); values go in as parameters.
_slides, _analyses, _cells = Slide.__table__, Analysis.__table__, Cell.__table__
_CLAIM = (
    update(_slides)
    .where(_slides.c.id == bindparam("b_id"), _slides.c.status.in_(ACTIVE))
    .values(
        status="processing",
        attempts=_slides.c.attempts + 1,
        claim_token=bindparam("b_token"),
        started_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
    )
    .returning(
        _slides.c.attempts,
        _slides.c.object_key,
        _slides.c.filename,
        _slides.c.lab_id,
        _slides.c.batch_id,
        _slides.c.error,
        _slides.c.content_type,
    )
)
# SET whatever columns the parameters name, on the slide only while this claim holds it.
_UPDATE_CLAIMED = update(_slides).where(
    _slides.c.id == bindparam("b_id"),
    _slides.c.status == "processing",
    _slides.c.claim_token == bindparam("b_token"),
)
_RETIRE_CURRENT = (
    update(_analyses)
    .where(_analyses.c.slide_id == bindparam("b_id"), _analyses.c.current.is_(True))
    .values(current=False)
)
_INSERT_ANALYSIS = insert(_analyses).returning(_analyses.c.id)


def claim_slide(res: Resources, slide_id: str) -> Claim | None:
    """Mark the slide processing under a new claim; None if it is not waiting for work."""
    token = new_id()
    with res.engine.begin() as connection:
        row = connection.execute(
            _CLAIM, {"b_id": slide_id, "b_token": token, "b_now": utcnow()}
        ).first()
    if row is None:
        return None
    return Claim(
        token,
        row.attempts,
        row.object_key,
        row.filename,
        row.lab_id,
        row.batch_id,
        row.error,
        row.content_type,
    )


def time_limit_reason(settings, killed: bool = False) -> str:
    """Why a slide failed at its time limit (``BLOODCOUNT_TASK_TIME_LIMIT``).

    ``killed``: the hard limit, where the worker process had to be killed (the soft limit
    could not interrupt it, e.g. inside native code); otherwise the soft limit stopped it.
    """
    soft, hard = slide_time_limits(settings)
    if killed:
        what = (
            f"the analysis took longer than its time limit of {hard:g} s "
            "(BLOODCOUNT_TASK_TIME_LIMIT) and its worker process was killed"
        )
    else:
        what = (
            f"the analysis was stopped after {soft:g} s, near its time limit of {hard:g} s "
            "(BLOODCOUNT_TASK_TIME_LIMIT)"
        )
    return what + "; retry the batch if the workers were overloaded"


def process_slide(
    res: Resources,
    slide_id: str,
    analyzer: Any = None,
    time_limit_errors: tuple[type[BaseException], ...] = (),
) -> str:
    """Analyse one queued slide and store its result; returns what happened.

    ``done``/``failed``: the result (or a permanent reason) was written. ``skipped``: the
    slide was not waiting (already finished, or unknown). ``superseded``: a later claim
    took the slide over while this one worked, so this result was discarded.
    Raises TransientError when storage or the database is unreachable: retry later.
    ``time_limit_errors``: what the caller's time limit raises (Celery's soft limit); one
    raised after the claim fails the slide, under that claim, with the time-limit reason.
    """
    try:
        claim = claim_slide(res, slide_id)
    except (OperationalError, DBAPIError) as exc:
        raise TransientError(f"database unavailable: {exc.__class__.__name__}") from exc
    if claim is None:
        log.info("slide %s is not waiting for work; nothing to do", slide_id)
        return "skipped"
    if claim.attempts > max_attempts(res.settings):
        reason = f"gave up after {claim.attempts - 1} attempts"
        if claim.last_error:
            reason += f"; last error: {claim.last_error}"
        return _finish_failed(res, slide_id, claim, reason)
    try:
        return _analyse_claimed(res, slide_id, claim, analyzer)
    except time_limit_errors:
        # Whatever was under way (a write in progress is rolled back) is abandoned; a
        # result already committed is kept: the slide is no longer "processing" then.
        return _finish_failed(res, slide_id, claim, time_limit_reason(res.settings))


def _analyse_claimed(res: Resources, slide_id: str, claim: Claim, analyzer: Any) -> str:
    try:
        data = res.store.get(claim.object_key)
    except ObjectNotFound:
        return _finish_failed(
            res,
            slide_id,
            claim,
            "the uploaded image is missing from the object store; submit it again",
        )
    except StorageError as exc:
        _note_error(res, slide_id, claim, f"object store unavailable: {exc}")
        raise TransientError(str(exc)) from exc

    started = time.perf_counter()
    analyzer = analyzer or shared_analyzer(res.settings)
    # A browser cannot show every original (TIFF): then the slide as analysed is kept too,
    # so the web page shows exactly the pixels the cells' boxes refer to.
    display = claim.content_type not in BROWSER_IMAGE_TYPES
    result = analyzer.analyze_bytes(data, claim.filename, overlay=True, display=display)
    total_ms = (time.perf_counter() - started) * 1000
    if result.status != "ok":
        return _finish_failed(
            res, slide_id, claim, result.error or "the image could not be analysed"
        )
    key = overlay_key(claim.lab_id, claim.batch_id, slide_id)
    try:
        if result.overlay is not None:
            res.store.put(key, result.overlay, "image/jpeg")
        if result.display is not None:
            shown = display_key(claim.lab_id, claim.batch_id, slide_id)
            res.store.put(shown, result.display, "image/jpeg")
        return _finish_done(res, slide_id, claim, result, analyzer.model_info, key, total_ms)
    except StorageError as exc:
        _note_error(res, slide_id, claim, f"object store unavailable: {exc}")
        raise TransientError(str(exc)) from exc
    except (OperationalError, DBAPIError) as exc:
        raise TransientError(f"database unavailable: {exc.__class__.__name__}") from exc


def _finish_done(res, slide_id, claim, result, model: dict, key: str, total_ms: float) -> str:
    counts = result.counts
    now = utcnow()
    # What the slide row and its analysis row both record: the counts and the model.
    outcome = {
        "rbc_count": counts["RBC"],
        "wbc_count": counts["WBC"],
        "platelet_count": counts["Platelets"],
        "model_name": model["name"],
        "model_version": model["version"],
        "model_sha256": model["sha256"],
        "total_ms": total_ms,
    }
    with res.engine.begin() as connection:
        updated = connection.execute(
            _UPDATE_CLAIMED,
            {
                "b_id": slide_id,
                "b_token": claim.token,
                "status": "done",
                "error": None,
                "width": result.width,
                "height": result.height,
                **outcome,
                "rbc_frame_count": result.frame_counts["RBC"],
                "wbc_frame_count": result.frame_counts["WBC"],
                "platelet_frame_count": result.frame_counts["Platelets"],
                "warnings": result.warnings,
                "overlay_key": key if result.overlay is not None else None,
                "decode_ms": result.timings.get("decode"),
                "detect_ms": _finding_ms(result.timings),
                "classify_ms": result.timings.get("classify"),
                "finished_at": now,
                "updated_at": now,
            },
        )
        if updated.rowcount != 1:
            connection.rollback()
            log.info("slide %s was claimed again or deleted meanwhile; result discarded", slide_id)
            return "superseded"
        connection.execute(_RETIRE_CURRENT, {"b_id": slide_id})
        analysis_id = connection.execute(
            _INSERT_ANALYSIS, {"slide_id": slide_id, "current": True, **outcome, "created_at": now}
        ).scalar_one()
        if result.cells:
            _insert_cells(connection, [_cell_row(analysis_id, c) for c in result.cells])
    return "done"


# Every column but the generated id, in table order: _cell_row fills each of them.
_CELL_COLUMNS = tuple(c.name for c in _cells.columns if c.name != "id")


def _insert_cells(connection, rows: list[dict[str, Any]]) -> None:
    """All of a slide's cells (tens to hundreds of rows) in the slide's transaction.

    On PostgreSQL one COPY: an executemany sends one INSERT per row, and those rows cost
    the worker and the database more than the rest of the slide's writes together.
    """
    if connection.dialect.driver != "psycopg":
        connection.execute(insert(_cells), rows)
        return
    columns = ", ".join(_CELL_COLUMNS)
    with connection.connection.driver_connection.cursor() as cursor:
        with cursor.copy(f"COPY {_cells.name} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(tuple(row[c] for c in _CELL_COLUMNS))


def _finding_ms(timings: dict[str, float]) -> float | None:
    """Time spent finding cells: the classical pipeline's "find" stage, or the dense
    pipeline's "scale" + "detect" stages (it has no separate classify stage)."""
    stages = [timings[k] for k in ("find", "scale", "detect") if k in timings]
    return sum(stages) if stages else None


def _cell_row(analysis_id: int, cell: Any) -> dict[str, Any]:
    x0, y0, x1, y1 = (int(round(v)) for v in cell.box)
    p = cell.probabilities
    return {
        "analysis_id": analysis_id,
        "label": cell.label,
        "confidence": float(cell.confidence),
        "p_rbc": float(p["RBC"]),
        "p_wbc": float(p["WBC"]),
        "p_platelets": float(p["Platelets"]),
        "x0": x0,
        "y0": y0,
        "x1": x1,
        "y1": y1,
        "edge": bool(cell.edge),
        "review": bool(cell.review),
        "frame": bool(cell.frame),
    }


def _failed_values(reason: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "status": "failed",
        "error": reason[:2000],
        "rbc_count": None,
        "wbc_count": None,
        "platelet_count": None,
        "rbc_frame_count": None,
        "wbc_frame_count": None,
        "platelet_frame_count": None,
        "warnings": None,
        "overlay_key": None,
        "finished_at": now,
        "updated_at": now,
    }


def _finish_failed(res: Resources, slide_id: str, claim: Claim, reason: str) -> str:
    with res.sessions.begin() as session:
        updated = session.execute(
            _UPDATE_CLAIMED, {"b_id": slide_id, "b_token": claim.token, **_failed_values(reason)}
        )
        if updated.rowcount != 1:
            session.rollback()
            return "superseded"
        _no_current(session, [slide_id])
    log.info("slide %s failed: %s", slide_id, reason)
    return "failed"


def _no_current(session, slide_ids: Sequence[str]) -> None:
    """A failed slide reports no counts, so none of its analyses is current."""
    session.execute(
        update(Analysis)
        .where(Analysis.slide_id.in_(slide_ids), Analysis.current.is_(True))
        .values(current=False)
    )


def _note_error(res: Resources, slide_id: str, claim: Claim, reason: str) -> None:
    """Remember a transient error, so a slide that finally gives up says why."""
    try:
        with res.engine.begin() as connection:
            connection.execute(
                _UPDATE_CLAIMED, {"b_id": slide_id, "b_token": claim.token, "error": reason[:2000]}
            )
    # The database may be the thing that is down. Only its errors are swallowed: a time
    # limit firing here must still reach process_slide, which fails the slide with it.
    except SQLAlchemyError:
        log.warning("could not record the error of slide %s", slide_id, exc_info=True)


def mark_failed(res: Resources, slide_id: str, reason: str) -> bool:
    """Fail a slide for good (retries exhausted); False if it had already finished."""
    with res.sessions.begin() as session:
        updated = session.execute(
            update(Slide)
            .where(Slide.id == slide_id, Slide.status.in_(ACTIVE))
            .values(**_failed_values(reason))
        )
        if updated.rowcount:
            _no_current(session, [slide_id])
    return bool(updated.rowcount)


def fail_timed_out(res: Resources, slide_id: str, reason: str, claimed_before: datetime) -> bool:
    """Fail a slide whose worker process was killed at the hard time limit.

    The worker's main process, which kills it, does not know the claim token; it knows
    the killed run claimed the slide about a time limit ago. So the slide is failed only
    while it is still processing under a claim made no later than ``claimed_before``: a
    later claim (another delivery of the slide) is left to finish or fail by itself.
    False if nothing was changed.
    """
    with res.sessions.begin() as session:
        updated = session.execute(
            update(Slide)
            .where(
                Slide.id == slide_id,
                Slide.status == "processing",
                Slide.started_at <= claimed_before,
            )
            .values(**_failed_values(reason))
        )
        if updated.rowcount:
            _no_current(session, [slide_id])
    return bool(updated.rowcount)


@dataclass
class Reconciliation:
    requeued: list[str] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)


def reconcile(
    res: Resources, enqueue: Enqueue, now: datetime | None = None, limit: int = 5000
) -> Reconciliation:
    """Re-send slides stuck queued/processing past ``stuck_after_seconds``; fail the hopeless.

    A message the broker lost, or a worker that died holding one, leaves its slide in
    queued/processing with an old ``updated_at``; this finds it by the (status,
    updated_at) index. Only a slide that workers took and never finished (processing)
    is failed, after ``task_max_retries`` re-sends: a queued slide may simply be waiting
    behind a long queue, and re-sending it is harmless (a finished slide skips its
    duplicate message), so it is re-sent but never given up on.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=res.settings.stuck_after_seconds)
    outcome = Reconciliation()
    with res.sessions.begin() as session:
        rows = session.execute(
            select(Slide.id, Slide.status, Slide.requeues, Slide.error)
            .where(Slide.status.in_(ACTIVE), Slide.updated_at < cutoff)
            .order_by(Slide.updated_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            if row.status == "processing" and row.requeues >= res.settings.task_max_retries:
                reason = f"lost {row.requeues + 1} times (no worker finished it within {res.settings.stuck_after_seconds} s)"
                if row.error:
                    reason += f"; last error: {row.error}"
                outcome.gave_up.append(row.id)
                session.execute(
                    update(Slide).where(Slide.id == row.id).values(**_failed_values(reason))
                )
            else:
                outcome.requeued.append(row.id)
        if outcome.gave_up:
            _no_current(session, outcome.gave_up)
        if outcome.requeued:
            session.execute(
                update(Slide)
                .where(Slide.id.in_(outcome.requeued))
                .values(requeues=Slide.requeues + 1, updated_at=now)
            )
    if outcome.requeued:
        enqueue(outcome.requeued)
        log.warning("reconciler re-sent %d stuck slides", len(outcome.requeued))
    if outcome.gave_up:
        log.warning("reconciler gave up on %d slides", len(outcome.gave_up))
    return outcome
