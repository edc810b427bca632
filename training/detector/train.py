"""Train the dense detector on the TRAIN side of the split (TXL-PBC labels only) and export it.

Run (the shipped detector 1.5.0: 24000 steps, about 106 min on 2 cores):
``nice -n 10 .venv/bin/python -m training.detector.train --steps 24000 --out var/detector24k``
then ``python -m training.detector.ship`` (its card lists the exact commands).
Writes ``model.weights.h5``, ``model.tflite`` and ``train_log.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import queue
import threading
import time
from pathlib import Path

from training.model import default_weights_path


def _prefetch(gen, depth: int = 4):
    """Run the numpy augmentation in a thread so it overlaps the TF step."""
    q: queue.Queue = queue.Queue(depth)

    def fill():
        for item in gen:
            q.put(item)

    threading.Thread(target=fill, daemon=True).start()
    while True:
        yield q.get()


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
):
    """Train for ``steps`` steps (cosine learning rate, warm-up) and export; return the Keras model."""
    import numpy as np
    import tensorflow as tf

    from training.detector import data
    from training.detector.export import export_tflite
    from training.detector.model import build_detector, losses

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    records = data.txl_records("train", data_dir)[:limit]
    slides = [data.load_slide(r) for r in records]
    print(f"{len(slides)} train slides at canonical scale in {time.time() - t0:.0f}s", flush=True)
    model, _ = build_detector(weights, seed=seed)
    warmup = min(100, steps // 10 + 1)
    schedule = tf.keras.optimizers.schedules.CosineDecay(
        lr * 0.1, steps - warmup, alpha=0.01, warmup_target=lr, warmup_steps=warmup
    )
    opt = tf.keras.optimizers.Adam(schedule)

    @tf.function
    def step(x, heat, reg, mask):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            focal, size, offset = losses(pred, heat, reg, mask)
            loss = focal + 0.1 * size + offset
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return focal, size, offset

    log, window = [], []
    gen = _prefetch(data.batches(slides, batch, crop, seed))
    t0 = time.time()
    for i in range(1, steps + 1):
        window.append([float(v) for v in step(*next(gen))])
        if i % log_every == 0 or i == steps:
            mean = np.mean(window, axis=0).round(4).tolist()
            log.append(
                {
                    "step": i,
                    "focal": mean[0],
                    "size": mean[1],
                    "offset": mean[2],
                    "seconds": round(time.time() - t0, 1),
                }
            )
            print(json.dumps(log[-1]), flush=True)
            window = []
        if i % 500 == 0:
            model.save_weights(out / "model.weights.h5")
    model.save_weights(out / "model.weights.h5")
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
                "seconds": round(time.time() - t0, 1),
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
    args = parser.parse_args(argv)
    train(
        args.out, args.steps, args.batch, args.crop, args.lr, args.seed, args.weights, args.threads
    )


if __name__ == "__main__":
    main()
