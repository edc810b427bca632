"""Deleting a batch: its rows at once, then its images from the store.

A lab deletes a batch it submitted by mistake, or one it may no longer keep (the images
come from patients). The rows go in one transaction (slides, analyses and cells follow by
the foreign keys' ON DELETE CASCADE), so the batch leaves every list, report and the
``count_report`` view at the same moment. Its objects (originals, overlays, display
images) are deleted next. If the store fails part-way, what is left has no batch row: the
housekeeping sweep (:mod:`bloodcount.services.housekeeping`) deletes such objects once they
are older than ``BLOODCOUNT_ORPHAN_AFTER_SECONDS``, and the answer says how many are left.

A worker still analysing one of the batch's slides finds its claim gone when it writes,
and discards the result; an overlay it stored just before is such an orphan too.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, func, select

from bloodcount.db.models import Batch, Slide
from bloodcount.resources import Resources
from bloodcount.services.batches import batch_prefix, owned_batch
from bloodcount.storage import StorageError

log = logging.getLogger(__name__)


def delete_batch(res: Resources, lab_id: int, batch_id: str) -> dict[str, Any]:
    """Delete one of the lab's batches with its slides, results and images; say what went."""
    with res.sessions.begin() as session:
        owned_batch(session, lab_id, batch_id)  # NotFound for unknown or another lab's ids
        slides = session.scalar(
            select(func.count()).select_from(Slide).where(Slide.batch_id == batch_id)
        )
        session.execute(delete(Batch).where(Batch.id == batch_id, Batch.lab_id == lab_id))
    deleted, left = 0, 0
    try:
        keys = list(res.store.list(batch_prefix(lab_id, batch_id)))
    except (StorageError, OSError):
        log.warning("batch %s deleted; its objects could not be listed", batch_id, exc_info=True)
        keys, left = [], None
    for key in keys:
        try:
            res.store.delete(key)
            deleted += 1
        except (StorageError, OSError):
            log.warning("could not delete %s; the orphan sweep will", key, exc_info=True)
            left += 1
    log.info("lab %s deleted batch %s: %d slides, %d objects", lab_id, batch_id, slides, deleted)
    return {
        "id": batch_id,
        "slides_deleted": slides,
        "objects_deleted": deleted,
        # None: the store could not be listed, so how many remain is unknown.
        "objects_left": left,
    }
