"""An 8-bit LiteRT detector, calibrated on train-side slides, and what it costs on validation.

``python -m training.detector.quantize --weights var/recovered/model.weights.h5 --out DIR
[--keep-float N] [--score]`` converts a detector's Keras weights (``recover`` gets them
from a shipped release) to an int8 LiteRT file with float input and output, so the serving
code does not change. Activation ranges come from the very inputs the shipped pipeline feeds
the network (canonical scale, padded, and their mirror images) on ``--per-source`` slides of
each TXL-PBC source from the train side. ``--keep-float N`` leaves the N operations with the
largest quantisation error (QuantizationDebugger's RMSE over the output's scale) in float,
and writes the debugger's per-layer statistics to ``DIR/layers.csv``.

``--score`` then tunes thresholds on validation as ``ship`` does, at the shipped card's
inference scale and flip averaging, and times one network pass on a BCCD-sized input for
the int8 file and the shipped one. Why this exists: "lighter models" was the study's future
work, and post-training quantisation is the first thing to try; training/README.md records
what it measured. Nothing here ships a model.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import time
from pathlib import Path

import numpy as np


def worst_layers(rows: list[dict[str, str]], n: int) -> list[str]:
    """Tensor names of the ``n`` operations whose int8 error is largest against their step.

    ``rows`` are QuantizationDebugger's layer statistics: the RMSE is divided by the
    quantisation step (``scale``), so a layer is judged by how many steps it is off, not by
    the size of its values. A zero step (an unquantised tensor) counts as no error.
    """

    def steps_off(row: dict[str, str]) -> float:
        scale = float(row["scale"])
        return float(row["mean_squared_error"]) ** 0.5 / scale if scale else 0.0

    return [row["tensor_name"] for row in sorted(rows, key=steps_off, reverse=True)[:n]]


def network_inputs(per_source: int, seed: int = 0) -> list[np.ndarray]:
    """What the shipped detector feeds its network on train-side slides: canonical, padded, mirrored."""
    import cv2

    from bloodcount.vision.dense_detector import DenseDetector
    from bloodcount.vision.detect_dense import detect_cells_dense
    from training.detector.data import txl_records

    detector = DenseDetector.load()
    seen: list[np.ndarray] = []
    run = detector._run

    def recording(image: np.ndarray, member: int = 0) -> np.ndarray:
        # Every pass goes through _run, at whatever scale, tile and flip the pipeline chose.
        seen.append(image.copy())
        return run(image, member)

    detector._run = recording
    by_source: dict[str, list] = {}
    for record in txl_records("train"):
        by_source.setdefault(record.source, []).append(record)
    rng = np.random.default_rng(seed)
    for _, records in sorted(by_source.items()):
        for i in rng.choice(len(records), size=min(per_source, len(records)), replace=False):
            bgr = cv2.imread(str(records[i].image_path), cv2.IMREAD_COLOR)
            detect_cells_dense(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), detector)
    rng.shuffle(seen)
    return seen


def convert(
    weights: Path, inputs: list[np.ndarray], keep_float: int
) -> tuple[bytes, list[str], str]:
    """(int8 LiteRT file, tensors kept in float, the debugger's per-layer CSV or "")."""
    import tensorflow as tf

    from training.detector.export import saved_model
    from training.detector.model import build_detector

    model, _ = build_detector(None)
    model.load_weights(weights)

    def feed(images: list[np.ndarray]):
        return lambda: ([image[None].astype(np.float32)] for image in images)

    with saved_model(model) as tmp:

        def converter():
            c = tf.lite.TFLiteConverter.from_saved_model(tmp)
            c.optimizations = [tf.lite.Optimize.DEFAULT]
            c.representative_dataset = feed(inputs)
            return c

        if keep_float == 0:
            return converter().convert(), [], ""
        # The debugger needs one input shape: the most common one.
        shapes = [image.shape for image in inputs]
        common = max(set(shapes), key=shapes.count)
        debug_data = feed([image for image in inputs if image.shape == common])
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter(), debug_dataset=debug_data
        )
        debugger.run()
        dump = io.StringIO()
        debugger.layer_statistics_dump(dump)
        kept = worst_layers(list(csv.DictReader(io.StringIO(dump.getvalue()))), keep_float)
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=kept)
        mixed = tf.lite.experimental.QuantizationDebugger(
            converter=converter(), debug_dataset=debug_data, debug_options=options
        )
        return mixed.get_nondebug_quantized_model(), kept, dump.getvalue()


def ms_per_pass(model: bytes, shape: tuple[int, int], repeats: int = 50) -> float:
    """Mean milliseconds of one single-threaded pass at ``shape`` (after one warm-up)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=1)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, [1, *shape, 3])
    interpreter.allocate_tensors()
    x = np.random.default_rng(0).uniform(0, 255, (1, *shape, 3)).astype(np.float32)
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    start = time.perf_counter()
    for _ in range(repeats):
        interpreter.set_tensor(index, x)
        interpreter.invoke()
    return (time.perf_counter() - start) / repeats * 1000


def score(model_path: Path) -> dict:
    """Validation macro F1 with thresholds tuned as ``ship`` does, at the shipped card's settings."""
    from bloodcount.evaluation import macro_f1
    from bloodcount.vision.dense_detector import DenseDetector
    from training.detector import ship

    card = DenseDetector.load().card
    peaks = ship.collect(
        model_path,
        "val",
        flip_average=card["flip_average"],
        inference_scale=card["inference_scale"],
    )
    val = ship.suppressed(peaks, card["nms_iou"])
    thresholds = ship.tune(val)
    return {"macro_f1": round(macro_f1(ship.score(val, thresholds)), 4), "thresholds": thresholds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, required=True, help="a detector's Keras weights")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep-float", type=int, default=0, help="operations left in float")
    parser.add_argument("--per-source", type=int, default=30, help="calibration slides per source")
    parser.add_argument("--score", action="store_true", help="validation F1 and speed (above)")
    args = parser.parse_args(argv)
    inputs = network_inputs(args.per_source)
    blob, kept, layers = convert(args.weights, inputs, args.keep_float)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model.tflite").write_bytes(blob)
    if layers:
        (args.out / "layers.csv").write_text(layers)
    log = {
        "weights": str(args.weights),
        "calibration_inputs": len(inputs),
        "per_source": args.per_source,
        "kept_float": kept,
    }
    if args.score:
        from bloodcount.vision.dense_detector import DETECTOR_DIR

        shipped = (Path(DETECTOR_DIR) / "model.tflite").read_bytes()
        shape = (224, 288)  # a 640x480 BCCD slide at the canonical cell scale x 1.15, padded
        log["validation"] = score(args.out / "model.tflite")
        log["ms_per_pass"] = {
            "int8": round(ms_per_pass(blob, shape), 2),
            "shipped": round(ms_per_pass(shipped, shape), 2),
            "shape": list(shape),
        }
    (args.out / "quantize_log.json").write_text(json.dumps(log, indent=1) + "\n")
    print(json.dumps({k: v for k, v in log.items() if k != "kept_float"}))


if __name__ == "__main__":
    main()
