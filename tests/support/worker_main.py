"""A real Celery worker (``worker.celery_app``, the production tasks) whose Analyzer uses the
stand-in classifier of :mod:`tests.servicekit`: the whole pipeline but the model runs (decode,
OpenCV proposals, crops, NMS, overlay), so fault tests do not depend on a trained model.

Run as ``python -m tests.support.worker_main [celery worker options]``; settings come from
the ``BLOODCOUNT_*`` environment, as for ``bloodcount worker``.

With ``STANDIN_HANG_SECONDS`` set (not a ``BLOODCOUNT_*`` variable: the settings refuse
unknown ones), a slide whose file name contains ``hang`` sleeps that long before its
analysis, in Python (the soft time limit interrupts it); one whose name contains ``stuck``
sleeps deaf to the soft limit's signal, as native code is (only the hard limit ends it).
"""

from __future__ import annotations

import os
import sys
import time

HANG_ENV = "STANDIN_HANG_SECONDS"


def stall(name: str) -> None:
    """Sleep as ``STANDIN_HANG_SECONDS`` asks for a slide called ``name``."""
    seconds = float(os.environ.get(HANG_ENV) or 0)
    if seconds <= 0:
        return
    if "stuck" in name:
        import signal

        from billiard.pool import SIG_SOFT_TIMEOUT

        # Ignored, the soft limit's signal never reaches Python: like a native call, the
        # slide runs on until the hard limit kills its process.
        previous = signal.signal(SIG_SOFT_TIMEOUT, signal.SIG_IGN)
        try:
            time.sleep(seconds)
        finally:
            signal.signal(SIG_SOFT_TIMEOUT, previous)
    elif "hang" in name:
        time.sleep(seconds)


def main(argv: list[str]) -> None:
    from bloodcount.analysis import Analyzer
    from bloodcount.services import processing
    from tests.servicekit import StandInClassifier
    from worker.celery_app import app, settings

    class StallingAnalyzer(Analyzer):
        def analyze_bytes(self, data, name, *args, **kwargs):
            stall(name)
            return super().analyze_bytes(data, name, *args, **kwargs)

    # Filled before the pool forks, so every worker process finds it in shared_analyzer().
    processing._analyzers[settings] = StallingAnalyzer(settings, classifier=StandInClassifier())
    app.worker_main(
        ["worker", "--without-gossip", "--without-mingle", "--without-heartbeat", *argv]
    )


if __name__ == "__main__":
    main(sys.argv[1:])
