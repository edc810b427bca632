"""A real Celery worker (``worker.celery_app``, the production tasks) whose Analyzer uses the
stand-in classifier of :mod:`tests.servicekit`: the whole pipeline but the model runs (decode,
OpenCV proposals, crops, NMS, overlay), so fault tests do not depend on a trained model.

Run as ``python -m tests.support.worker_main [celery worker options]``; settings come from
the ``BLOODCOUNT_*`` environment, as for ``bloodcount worker``.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    from bloodcount.analysis import Analyzer
    from bloodcount.services import processing
    from tests.servicekit import StandInClassifier
    from worker.celery_app import app, settings

    # Filled before the pool forks, so every worker process finds it in shared_analyzer().
    processing._analyzers[settings] = Analyzer(settings, classifier=StandInClassifier())
    app.worker_main(
        ["worker", "--without-gossip", "--without-mingle", "--without-heartbeat", *argv]
    )


if __name__ == "__main__":
    main(sys.argv[1:])
