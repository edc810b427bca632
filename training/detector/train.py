"""Train the dense detector on the TRAIN side of the split (TXL-PBC labels only) and export it.

Run (the shipped detector 1.5.0: 24000 steps, about 106 min on 2 cores):
``nice -n 10 .venv/bin/python -m training.detector.train --steps 24000 --out var/detector24k``
then ``python -m training.detector.ship`` (its card lists the exact commands).
Writes ``model.weights.h5``, ``model.tflite`` and ``train_log.json`` to ``--out``.

The loop is Keras's own ``fit`` on backend-neutral ops, so the same command trains under
``KERAS_BACKEND=jax`` on a GPU; ``--workers N`` then makes the augmented batches in N
processes (forked before the backend starts), since one core cannot feed a GPU. Batches
are seeded by their index, so the data stream does not depend on the worker count.
``--no-export`` skips the LiteRT export where TensorFlow is not installed; export later
with ``python -m training.detector.export --run DIR``.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import queue
import threading
import time
from pathlib import Path

from training.model import default_weights_path


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

    return batch_at(*_POOL_ARGS, index)


def _batches(slides, batch: int, crop: int, seed: int, workers: int):
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
                yield as_float(batch_at(slides, batch, crop, seed, index))
                index += 1

        yield from _prefetch(serial())
        return
    global _POOL_ARGS
    _POOL_ARGS = (slides, batch, crop, seed)
    # fork: the workers share the decoded slides without copying them. Fork before a Keras
    # backend starts its threads (train() does): forked after a TensorFlow run, workers were
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


def _device(backend: str, workers: int) -> str:
    """What the run trained on, for the card: the accelerator's name, else the CPU count."""
    import os

    name = f"{os.cpu_count()} CPU cores"
    if backend == "jax":
        import jax

        if jax.devices()[0].platform == "gpu":
            name = f"one {jax.devices()[0].device_kind} GPU, {name}"
    return f"{name}, {workers} batch workers" if workers else name


def train(
    out: Path,
    steps: int,
    batch: int,
    crop: int,
    lr: float,
    seed: int,
    weights: Path | None,
    threads: int = 2,
    data_dir: Path | None = None,
    limit: int | None = None,
    log_every: int = 50,
    workers: int = 0,
    export: bool = True,
    init: Path | None = None,
):
    """Train for ``steps`` steps (cosine learning rate, warm-up) and export; return the Keras model."""
    from training.detector import data

    if steps % log_every:
        raise ValueError(f"--steps {steps} must be a multiple of the log interval {log_every}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    records = data.txl_records("train", data_dir)[:limit]
    slides = [data.load_slide(r) for r in records]
    print(f"{len(slides)} train slides at canonical scale in {time.time() - t0:.0f}s", flush=True)
    stream = _batches(slides, batch, crop, seed, workers)
    first = next(stream)  # starts the pool (forks) before Keras loads its backend

    import keras

    from training.detector.model import build_detector, focal, offset, packed_loss, size

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    model, _ = build_detector(weights, seed=seed)
    if init is not None:
        # Fine-tune from an earlier run: its weights replace the ImageNet start.
        model.load_weights(init)
    warmup = min(100, steps // 10 + 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        lr * 0.1, steps - warmup, alpha=0.01, warmup_target=lr, warmup_steps=warmup
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=packed_loss,
        metrics=[focal, size, offset],
    )

    log: list[dict] = []
    t0 = time.time()

    class Progress(keras.callbacks.Callback):
        # One Keras "epoch" is one log interval, so its metrics are that window's means.
        def on_epoch_end(self, epoch, logs=None):
            done = (epoch + 1) * log_every
            entry = {"step": done}
            entry.update({k: round(float(logs[k]), 4) for k in ("focal", "size", "offset")})
            entry["seconds"] = round(time.time() - t0, 1)
            log.append(entry)
            print(json.dumps(entry), flush=True)
            if done % 500 == 0:
                model.save_weights(out / "model.weights.h5")

    def feed():
        yield first
        yield from stream

    model.fit(
        feed(),
        steps_per_epoch=log_every,
        epochs=steps // log_every,
        callbacks=[Progress()],
        shuffle=False,  # batches are already random draws
        verbose=0,
    )
    seconds = round(time.time() - t0, 1)
    stream.close()  # stops the batch thread or pool
    model.save_weights(out / "model.weights.h5")
    if export:
        from training.detector.export import export_tflite

        export_tflite(model, out / "model.tflite")
    (out / "train_log.json").write_text(
        json.dumps(
            {
                "steps": steps,
                "batch": batch,
                "crop": crop,
                "lr": lr,
                "seed": seed,
                "train_slides": len(slides),
                "backend": backend,
                "workers": workers,
                "init": None if init is None else str(init),
                "device": _device(backend, workers),
                "seconds": seconds,
                "log": log,
            },
            indent=1,
        )
    )
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("var/detector"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=default_weights_path())
    parser.add_argument(
        "--workers", type=int, default=0, help="processes making batches (0: a thread here)"
    )
    parser.add_argument("--no-export", action="store_true", help="skip the LiteRT export")
    parser.add_argument(
        "--init", type=Path, help="start from this run's model.weights.h5 (fine-tuning)"
    )
    args = parser.parse_args(argv)
    train(
        args.out,
        args.steps,
        args.batch,
        args.crop,
        args.lr,
        args.seed,
        args.weights,
        args.threads,
        workers=args.workers,
        export=not args.no_export,
        init=args.init,
    )


if __name__ == "__main__":
    main()
