"""Train the dense detector on the TRAIN side of the split (TXL-PBC labels only) and export it.

Run (the recipe of the shipped detector: 24000 steps, about 106 min on 2 cores of the machine
1.5.0 was trained on, from 65 min to about 8 h on the VMs measured since: time 100 steps
first; 1.6.0 is seed 2 of it, trained under JAX on a GPU in about 6 min):
``nice -n 10 .venv/bin/python -m training.detector.train --steps 24000 --out var/detector24k``
then ``python -m training.detector.ship`` (the card lists the exact commands).
Writes ``model.weights.h5``, ``model.tflite`` and ``train_log.json`` to ``--out`` (with
``--ema``, also ``model.raw.weights.h5``: the final weights before averaging).

The loop is Keras's own ``fit`` on backend-neutral ops, so the same command trains under
``KERAS_BACKEND=jax`` on a GPU; ``--workers N`` then makes the augmented batches in N
processes (forked before the backend starts), since one core cannot feed a GPU. Batches
are seeded by their index, so the data stream does not depend on the worker count.
``--no-export`` skips the LiteRT export where TensorFlow is not installed; export later
with ``python -m training.detector.export --run DIR``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from training.detector.feed import batches
from training.model import default_weights_path


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
    ema: float | None = None,
    platelet_focus: float = 0.0,
    partial: Path | None = None,
    degrade: float = 0.0,
    freeze_bn: bool = False,
    source_weights: list[str] | None = None,
):
    """Train for ``steps`` steps (cosine learning rate, warm-up) and export; return the Keras model.

    With ``ema`` (a momentum such as 0.998) the saved and exported weights are the moving
    average of the trainable weights over roughly the last 1 / (1 - ema) steps, which
    smooths out where the last few batches happened to push them; the plain final weights
    are kept as ``model.raw.weights.h5`` so the two can be compared on validation.

    With ``partial`` (a file of :mod:`training.detector.partial`) the train side's BCCD-only
    slides join the TXL-PBC ones, teaching white cells and platelets only.
    """
    from training.detector import data

    if steps % log_every:
        raise ValueError(f"--steps {steps} must be a multiple of the log interval {log_every}")
    weights_by_source = data.parse_source_weights(source_weights or [], data.COMPLETE_SOURCES)
    recovered_file = None if init is None else init.parent / "recovered.json"
    recovered = (
        json.loads(recovered_file.read_text())
        if recovered_file and recovered_file.is_file()
        else None
    )
    if recovered is not None and not freeze_bn:
        raise ValueError(
            f"{init} was recovered from a LiteRT file (training.detector.recover): its "
            "BatchNorms are exact only in inference mode; fine-tune it with --freeze-bn"
        )
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    records = data.txl_records("train", data_dir)[:limit]
    slides = [data.load_slide(r) for r in records]
    if partial is not None:
        from training.detector.partial import partial_slides

        slides += partial_slides(partial, data_dir)[:limit]
    print(f"{len(slides)} train slides at canonical scale in {time.time() - t0:.0f}s", flush=True)
    stream = batches(slides, batch, crop, seed, workers, platelet_focus, degrade, weights_by_source)
    first = next(stream)  # starts the pool (forks) before Keras loads its backend

    import keras

    from training.detector.model import (
        build_detector,
        every_layer,
        focal,
        offset,
        packed_loss,
        size,
    )

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow already ran in this process (tests): keep its thread pools
    model, _ = build_detector(weights, seed=seed)
    if init is not None:
        # Fine-tune from an earlier run: its weights replace the ImageNet start.
        model.load_weights(init)
    if freeze_bn:
        # A frozen BatchNorm normalises with its stored statistics, in training too.
        for layer in every_layer(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    warmup = min(100, steps // 10 + 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        lr * 0.1, steps - warmup, alpha=0.01, warmup_target=lr, warmup_steps=warmup
    )
    model.compile(
        optimizer=keras.optimizers.Adam(
            schedule, use_ema=ema is not None, ema_momentum=ema or 0.99
        ),
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
            if ema is not None and done == steps:
                # fit replaces the weights with their average after this last callback.
                model.save_weights(out / "model.raw.weights.h5")

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
                "init_recovered": recovered,
                "ema": ema,
                "platelet_focus": platelet_focus,
                "partial": None if partial is None else str(partial),
                "degrade": degrade,
                "freeze_bn": freeze_bn,
                "source_weights": weights_by_source,
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
    parser.add_argument(
        "--ema",
        type=float,
        help="keep a moving average of the weights with this momentum (e.g. 0.998) and ship it",
    )
    parser.add_argument(
        "--platelet-focus",
        type=float,
        default=0.0,
        metavar="P",
        help="share of crops from slides with platelets drawn around one of them (default 0)",
    )
    parser.add_argument(
        "--partial",
        type=Path,
        metavar="FILE",
        help="add the BCCD-only slides, white cells and platelets only "
        "(FILE from python -m training.detector.partial --out)",
    )
    parser.add_argument(
        "--degrade",
        type=float,
        default=0.0,
        metavar="P",
        help="share of crops blurred or JPEG-compressed (default 0)",
    )
    parser.add_argument(
        "--freeze-bn",
        action="store_true",
        help="keep every BatchNorm in inference mode (needed to fine-tune recovered weights)",
    )
    parser.add_argument(
        "--source-weight",
        action="append",
        default=[],
        metavar="SOURCE=W",
        help="draw slides of SOURCE (txl-bccd, txl-pbc, txl-raabin) W times as often; repeatable",
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
        ema=args.ema,
        platelet_focus=args.platelet_focus,
        partial=args.partial,
        degrade=args.degrade,
        freeze_bn=args.freeze_bn,
        source_weights=args.source_weight,
    )


if __name__ == "__main__":
    main()
