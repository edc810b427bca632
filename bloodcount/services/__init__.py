"""The use cases of the batch service, called by the API, the Celery tasks and the CLI.

Submodules hold one concern each: ``batches`` (submit, status, list, retry, reprocess),
``slides`` (one slide in full), ``processing`` (the worker's side: analyse one slide,
reconcile), ``deletion`` (a batch and its images), ``housekeeping`` (orphaned uploads),
``reports``, ``uploads`` (sniffing and zip archives), ``errors``. Importing
this package never loads the classifier or OpenCV; only ``process_slide`` does, lazily.
"""

from bloodcount.csv_text import to_csv
from bloodcount.services.batches import (
    Enqueue,
    Submission,
    batch_summary,
    create_upload_batch,
    list_batches,
    list_slides,
    reprocess,
    retry_failed,
    submit_batch,
    submit_uploaded,
)
from bloodcount.services.deletion import delete_batch
from bloodcount.services.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    NotSupported,
    ServiceError,
    TooLarge,
    TransientError,
)
from bloodcount.services.housekeeping import sweep_orphans
from bloodcount.services.paging import Page, PageRequest
from bloodcount.services.processing import mark_failed, process_slide, reconcile
from bloodcount.services.reports import batch_report, counts_report
from bloodcount.services.slides import slide_detail, slide_object
from bloodcount.services.uploads import SlideFile, expand_uploads

__all__ = [
    "Conflict",
    "Enqueue",
    "InvalidRequest",
    "NotFound",
    "NotSupported",
    "Page",
    "PageRequest",
    "ServiceError",
    "SlideFile",
    "Submission",
    "TooLarge",
    "TransientError",
    "batch_report",
    "batch_summary",
    "counts_report",
    "create_upload_batch",
    "delete_batch",
    "expand_uploads",
    "list_batches",
    "list_slides",
    "mark_failed",
    "process_slide",
    "reconcile",
    "reprocess",
    "retry_failed",
    "slide_detail",
    "slide_object",
    "submit_batch",
    "submit_uploaded",
    "sweep_orphans",
    "to_csv",
]
