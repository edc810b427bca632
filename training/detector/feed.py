"""Endless streams of training batches for the detector: a thread here, or a forked pool.

One core cannot feed a GPU, so ``workers > 0`` makes the batches in forked processes.
Batches are seeded by their index (:func:`training.detector.data.batch_at`), so both
streams are the same whatever the worker count.
"""

from __future__ import annotations

import collections
import multiprocessing
import queue
import threading


def _prefetch(gen, depth: int = 4):
    """Run the numpy augmentation in a thread so it overlaps the training step.

    Closing the generator stops and joins the thread: one left inside OpenCV while the
    interpreter shuts down can abort the process after a finished run.
    """
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def fill():
        for item in gen:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return

    thread = threading.Thread(target=fill, daemon=True)
    thread.start()
    try:
        while True:
            yield q.get()
    finally:
        stop.set()
        thread.join(timeout=30)


_POOL_ARGS: tuple = ()
BATCH_TIMEOUT = 300  # seconds; a batch of 64 crops takes about 0.2 s on one core here


def _pool_batch(index: int):
    from training.detector.data import batch_at

    *args, platelet_focus, degrade, source_weights = _POOL_ARGS
    return batch_at(*args, index, platelet_focus, degrade, source_weights)


def batches(
    slides,
    batch: int,
    crop: int,
    seed: int,
    workers: int,
    platelet_focus: float = 0.0,
    degrade: float = 0.0,
    source_weights: dict[str, float] | None = None,
):
    """Endless (float32 images, packed targets): in this process, or from ``workers`` forks.

    The pool keeps a bounded number of batches in flight, so memory stays flat however far
    the workers run ahead of the training step.
    """
    from training.detector.data import batch_at

    def as_float(item):
        return item[0].astype("float32"), item[1]

    if workers <= 0:

        def serial():
            index = 0
            while True:
                yield as_float(
                    batch_at(
                        slides, batch, crop, seed, index, platelet_focus, degrade, source_weights
                    )
                )
                index += 1

        yield from _prefetch(serial())
        return
    global _POOL_ARGS
    _POOL_ARGS = (slides, batch, crop, seed, platelet_focus, degrade, source_weights)
    # fork: the workers share the decoded slides without copying them. Fork before a Keras
    # backend starts its threads (training.detector.train does): forked after a TensorFlow run, workers were
    # seen to hang on a lock held at fork time, which the timeout below turns into an error.
    pool = multiprocessing.get_context("fork").Pool(workers)
    pending = collections.deque(pool.apply_async(_pool_batch, (i,)) for i in range(2 * workers))
    index, hung = len(pending), False
    try:
        while True:
            try:
                item = pending.popleft().get(timeout=BATCH_TIMEOUT)
            except multiprocessing.TimeoutError:
                hung = True
                raise RuntimeError(
                    f"no batch from the {workers} batch workers in {BATCH_TIMEOUT} s: were they "
                    "forked after the backend started its threads?"
                ) from None
            pending.append(pool.apply_async(_pool_batch, (index,)))
            index += 1
            yield as_float(item)
    finally:
        if hung:
            pool.terminate()
        else:
            # Let the batches in flight finish, then close: Pool.terminate() with tasks
            # still queued was seen to deadlock (2 closes in 15).
            for task in pending:
                task.wait(BATCH_TIMEOUT)
            pool.close()
            pool.join()
