"""Housekeeping: remove originals that a crashed upload left without a batch.

Submitting writes the images to the store before the rows commit (so a committed slide
always has its image). If the API dies in between, or the clean-up delete fails, the
images stay with no batch row: nobody can reach them (keys come only from rows), but they
take space. This sweep deletes them once they are old enough that no upload can still be
in flight.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from sqlalchemy import select

from bloodcount.db.models import Batch
from bloodcount.db.types import utcnow
from bloodcount.resources import Resources

log = logging.getLogger(__name__)

# Keys the service writes: labs/<lab id>/batches/<batch id>/<slide id>[suffix]
_BATCH_KEY = re.compile(r"^labs/\d+/batches/([0-9a-f-]{36})/")
_CHUNK = 500


def sweep_orphans(res: Resources, now: datetime | None = None) -> list[str]:
    """Delete objects under ``labs/`` whose batch has no row and that are older than
    ``orphan_after_seconds``; return the deleted keys."""
    cutoff = (now or utcnow()) - timedelta(seconds=res.settings.orphan_after_seconds)
    candidates: dict[str, list[str]] = {}
    for info in res.store.list_info("labs/"):
        match = _BATCH_KEY.match(info.key)
        if match and info.modified is not None and info.modified < cutoff:
            candidates.setdefault(match.group(1), []).append(info.key)

    deleted: list[str] = []
    batch_ids = list(candidates)
    for start in range(0, len(batch_ids), _CHUNK):
        chunk = batch_ids[start : start + _CHUNK]
        with res.sessions() as session:
            known = set(session.scalars(select(Batch.id).where(Batch.id.in_(chunk))))
        for batch_id in chunk:
            if batch_id not in known:
                for key in candidates[batch_id]:
                    res.store.delete(key)
                    deleted.append(key)
    if deleted:
        log.warning("removed %d orphaned objects left by interrupted uploads", len(deleted))
    return deleted
